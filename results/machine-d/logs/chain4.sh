#!/bin/bash
# Machine D, after chain3 (nothing else on the machine), from the frozen copy: issue 15's accuracy benchmark
# on onnxruntime (1,200 space layers, 80 calibration and 200 test networks of the latency families), and the
# first command's own auto-fitted predictor (fresh home of chain3) tested on the same held-out networks.
set -e
while ! grep -q "CHAIN3 DONE" /work/main/results/machine-d/logs/chain3.log; do sleep 10; done
source /work/venv2/bin/activate
export COMPACTNET_DATA=/work/shared/data/cifar10-jpeg.npz
cd /work/frozen
R=results/machine-d
P=/work/scratch/home-d2/predictors/ort-cpu-fp32-t1
[ -d $P ] || P=/work/scratch/home-d1/predictors/ort-cpu-fp32-t1
echo "$(date +%T) measure"
python benchmarks/context_bench.py measure --store $R/space.sqlite --out $R/families --platforms ort-cpu-fp32-t1
echo "$(date +%T) evaluate"
python benchmarks/context_bench.py evaluate --store $R/space.sqlite --out $R/families --platforms ort-cpu-fp32-t1 \
  --json $R/context.json --figure $R/figures/predicted-vs-measured.png --predictor $P
echo "$(date +%T) CHAIN4 DONE"
