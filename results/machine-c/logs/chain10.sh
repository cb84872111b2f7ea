#!/bin/bash
# The README's first command with tracking and its 4% stopping margin on a fresh COMPACTNET_HOME, nothing
# else on the machine, from a frozen copy of the committed tree; output in first-command-18.txt.
set -e
source /work/venv2/bin/activate
export COMPACTNET_HOME=/work/scratch/home-first4
export COMPACTNET_DATA=/work/shared/data/cifar10-jpeg.npz
rm -rf "$COMPACTNET_HOME" /work/scratch/first-run4 && mkdir -p /work/scratch/first-run4 && cd /work/scratch/first-run4
start=$(date +%s)
compactnet optimize --speedup 1.5 2>&1
echo "WALL $(( $(date +%s) - start )) s"
