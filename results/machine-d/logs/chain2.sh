#!/bin/bash
# Machine D, after chain1 (nothing else on the machine), from the frozen copy: Table 5 on onnxruntime at
# 1.8x, 1.5x, 2.5x and 2.0x (search, random filters, control trained once), then OpenVINO and ncnn at 1.8x
# (their predictors profiled and fitted first, into the same COMPACTNET_HOME as the first command's),
# then the zoo: baselines and every reached search result published anew, and the done-when journey.
set -e
while ! grep -q "^WALL" /work/main/results/machine-d/logs/first-command-1.txt; do sleep 10; done
source /work/venv2/bin/activate
export COMPACTNET_HOME=/work/scratch/home-d1
export COMPACTNET_DATA=/work/shared/data/cifar10-jpeg.npz
cd /work/frozen
export RESULTS=results/machine-d
echo "$(date +%T) ort cells"
PLATFORMS=ort-cpu-fp32-t1 SPEEDUPS="1.8 1.5 2.5 2.0" bash benchmarks/reproduce.sh table5
echo "$(date +%T) OpenVINO and ncnn at 1.8x"
PLATFORMS="openvino-cpu-fp32-t1 ncnn-cpu-fp32-t1" SPEEDUPS="1.8" bash benchmarks/reproduce.sh table5
python benchmarks/tradeoff_figure.py $RESULTS/table5/*-*x/ --figure $RESULTS/figures/accuracy-vs-speedup.png \
  --markdown $RESULTS/table5/table5.md
echo "$(date +%T) zoo"
bash benchmarks/reproduce.sh zoo || echo "ZOO STEP FAILED"
echo "$(date +%T) CHAIN2 DONE"
