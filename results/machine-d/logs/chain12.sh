#!/bin/bash
# Machine D, session 10, nothing else on the machine: the 80 calibration and 200 test networks of the latency
# families measured again on onnxruntime (same draws as session 8), so that the first command's own predictor
# (fitted in chain11's home, this session) is tested on networks measured the same day.
export COMPACTNET_DATA=/work/shared/data/cifar10-jpeg.npz
source /work/venv2/bin/activate
cd /work/frozen
echo "$(date +%T) context measure"
python benchmarks/context_bench.py measure --store /work/scratch/space-d.sqlite --out /work/main/results/machine-d/families-s10 \
  --platforms ort-cpu-fp32-t1 --busy refuse > /work/main/results/machine-d/logs/chain12-measure.txt 2>&1
echo "$(date +%T) CHAIN12 DONE"
