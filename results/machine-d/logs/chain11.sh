#!/bin/bash
# Machine D, session 10, nothing else on the machine: the README's first command on a fresh COMPACTNET_HOME
# from a frozen copy of cc01011 (repeat pause 5k s, margin cap), to validate them on the device.
L=/work/main/results/machine-d/logs
export COMPACTNET_DATA=/work/shared/data/cifar10-jpeg.npz
export COMPACTNET_HOME=/work/scratch/home-d10
rm -rf $COMPACTNET_HOME
source /work/venv2/bin/activate
cd /work/scratch && rm -rf fc10 && mkdir fc10 && cd fc10
s=$(date +%s)
compactnet optimize --speedup 1.5 > $L/first-command-6.txt 2>&1
echo "WALL $(( $(date +%s) - s )) s" >> $L/first-command-6.txt
echo "$(date +%T) CHAIN11 DONE"
