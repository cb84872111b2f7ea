#!/bin/bash
# Machine D (AMD EPYC, AVX-512): the README's first command on a fresh COMPACTNET_HOME, nothing else on the
# machine, from a frozen copy of the committed tree (measurements in the worker process); output in first-command-1.txt.
set -e
source /work/venv2/bin/activate
export COMPACTNET_HOME=/work/scratch/home-d1
export COMPACTNET_DATA=/work/shared/data/cifar10-jpeg.npz
rm -rf "$COMPACTNET_HOME" /work/scratch/first-run-d1 && mkdir -p /work/scratch/first-run-d1 && cd /work/scratch/first-run-d1
lscpu | grep "Model name"
start=$(date +%s)
compactnet optimize --speedup 1.5 2>&1
echo "WALL $(( $(date +%s) - start )) s"
