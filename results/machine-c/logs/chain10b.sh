#!/bin/bash
# chain10.sh's first attempt profiled the platform into a fresh COMPACTNET_HOME (158.9 s, first-command-18.txt)
# and then stopped: a sed slip made it run in the previous run's folder, whose checkpoint (no stopping margin)
# the search rightly refused. The same command again in a fresh folder, with that home's predictor.
set -e
source /work/venv2/bin/activate
export COMPACTNET_HOME=/work/scratch/home-first4
export COMPACTNET_DATA=/work/shared/data/cifar10-jpeg.npz
rm -rf /work/scratch/first-run4 && mkdir -p /work/scratch/first-run4 && cd /work/scratch/first-run4
start=$(date +%s)
compactnet optimize --speedup 1.5 2>&1
echo "WALL $(( $(date +%s) - start )) s"
