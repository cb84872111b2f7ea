#!/bin/bash
# Issue 16 item 2, first rows: the default preset at 1.8x on onnxruntime beside random filter selection
# and the control (the unpruned model given the same training), one interleaved measurement; machine C,
# nothing else running, from a frozen copy. The predictor is the one the README's first command fitted.
set -e
source /work/venv2/bin/activate
cd /work/frozen
export COMPACTNET_DATA=/work/shared/data/cifar10-jpeg.npz
python benchmarks/baselines_bench.py --platform ort-cpu-fp32-t1 --speedup ${SPEEDUP:-1.8} --preset default \
  --predictor /work/scratch/home-first2/predictors/ort-cpu-fp32-t1 --variants search,random,control \
  --out /work/main/results/baselines/c-ort-${TAG:-1p8x}-default --quiet
echo CHAIN5 DONE
