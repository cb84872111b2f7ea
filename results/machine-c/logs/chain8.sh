#!/bin/bash
# Table 5, onnxruntime 2.0x (search, random, the shared control), default preset with tracking, from a
# frozen copy of the committed tree; nothing else running. Then its search is published into the zoo.
set -e
source /work/venv2/bin/activate
cd /work/frozen
export COMPACTNET_DATA=/work/shared/data/cifar10-jpeg.npz
export COMPACTNET_HOME=/work/scratch/home-first2
T=/work/main/results/machine-c/table5
out=$T/ort-2p0x
mkdir -p $out
[ -d $out/control ] || cp -r $T/control $out/control
echo "$(date +%T) cell ort 2.0"
python benchmarks/baselines_bench.py --platform ort-cpu-fp32-t1 --speedup 2.0 --preset default \
  --predictor $COMPACTNET_HOME/predictors/ort-cpu-fp32-t1 --variants search,random,control --out $out --quiet
echo "$(date +%T) publish"
source /work/venv/bin/activate
cd /work/main
compactnet zoo publish $out/search --index zoo/index.json --replace || compactnet zoo publish $out/search --index zoo/index.json --replace --measured-name
echo "$(date +%T) CHAIN8 DONE"
