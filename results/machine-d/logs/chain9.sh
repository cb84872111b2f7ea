#!/bin/bash
# Machine D, session 9, nothing else on the machine, from a frozen copy of commit 338e32e (clipped search
# fine-tunes, extra iterations cut no more than the miss needs): (1) the README's first command on a fresh
# COMPACTNET_HOME; (2) Table 5 with that home's predictors: onnxruntime 1.8x and 2.5x, then OpenVINO and ncnn
# at 1.5/1.8/2.0/2.5x (their predictors profiled and fitted first, into the same home), then onnxruntime
# 1.5x and 2.0x; the control trained once in the first cell.
set -e
L=/work/main/results/machine-d/logs
source /work/venv2/bin/activate
export COMPACTNET_DATA=/work/shared/data/cifar10-jpeg.npz
export COMPACTNET_HOME=/work/scratch/home-d9
rm -rf $COMPACTNET_HOME /work/scratch/first-run-d9 && mkdir -p /work/scratch/first-run-d9 && cd /work/scratch/first-run-d9
echo "$(date +%T) first command"
start=$(date +%s)
compactnet optimize --speedup 1.5 > $L/first-command-5.txt 2>&1 || echo "FAILED"
echo "WALL $(( $(date +%s) - start )) s" >> $L/first-command-5.txt
cd /work/frozen
export RESULTS=results/machine-d
cell() { echo "$(date +%T) $1 $2"; PLATFORMS="$1" SPEEDUPS="$2" bash benchmarks/reproduce.sh table5 || echo "$(date +%T) CELL $1 $2 FAILED"; }
cell ort-cpu-fp32-t1 "1.8 2.5"
cell openvino-cpu-fp32-t1 "1.8 1.5"
cell ncnn-cpu-fp32-t1 "1.8 1.5"
cell openvino-cpu-fp32-t1 "2.0 2.5"
cell ncnn-cpu-fp32-t1 "2.0 2.5"
cell ort-cpu-fp32-t1 "1.5 2.0"
echo "$(date +%T) CHAIN9 DONE"
