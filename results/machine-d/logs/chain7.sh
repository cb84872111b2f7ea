#!/bin/bash
# Machine D, nothing else on the machine, main tree as committed next (memory lock; the narrowest of repeated
# comparisons kept instead of pooling them): the README's first command, reusing the predictor chain6's fresh
# home fitted (its one-time profiling is in first-command-3.txt).
set -e
source /work/venv/bin/activate
export COMPACTNET_DATA=/work/shared/data/cifar10-jpeg.npz
export COMPACTNET_HOME=/work/scratch/home-d3
L=/work/main/results/machine-d/logs
rm -rf /work/scratch/first-run-d4 && mkdir -p /work/scratch/first-run-d4 && cd /work/scratch/first-run-d4
start=$(date +%s)
compactnet optimize --speedup 1.5 > $L/first-command-4.txt 2>&1 || echo "FAILED"
echo "WALL $(( $(date +%s) - start )) s" >> $L/first-command-4.txt
echo "$(date +%T) CHAIN7 DONE"
