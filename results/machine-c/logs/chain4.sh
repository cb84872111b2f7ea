#!/bin/bash
# The README's first command on machine C with a fresh COMPACTNET_HOME (nothing else on the machine),
# from a frozen copy of the tree; its output goes to results/machine-c/logs/first-command-16.txt.
set -e
source /work/venv2/bin/activate
export COMPACTNET_HOME=/work/scratch/home-first2
export COMPACTNET_DATA=/work/shared/data/cifar10-jpeg.npz
rm -rf "$COMPACTNET_HOME" /work/scratch/first-run2 && mkdir -p /work/scratch/first-run2 && cd /work/scratch/first-run2
start=$(date +%s)
compactnet optimize --speedup 1.5 2>&1
echo "WALL $(( $(date +%s) - start )) s"
