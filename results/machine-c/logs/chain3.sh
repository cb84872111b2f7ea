#!/bin/bash
# Issue 15 campaign on machine C, from a frozen copy of the tree (nothing else on the machine):
# the space prior's layers, the calibration set and the held-out test set, per runtime.
set -e
source /work/venv2/bin/activate
cd /work/frozen
R=/work/main/results/machine-c
for k in ${PLATFORMS:-ort-cpu-fp32-t1 openvino-cpu-fp32-t1 ncnn-cpu-fp32-t1}; do
  python benchmarks/context_bench.py measure --store $R/space.sqlite --out $R/families --platforms $k \
      --samples 1200 --calibration 80 --test 200
done
echo CHAIN3 DONE
