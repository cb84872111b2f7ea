#!/bin/bash
# Machine D, nothing else running: the first command's auto-fit with 100 calibration networks (issue 15's
# budget maximum) instead of 60, into a fresh home, then tested on the 200 held-out family networks.
set -e
source /work/venv/bin/activate
export COMPACTNET_DATA=/work/shared/data/cifar10-jpeg.npz
export COMPACTNET_HOME=/work/scratch/home-d5
rm -rf $COMPACTNET_HOME
cd /tmp
echo "$(date +%T) auto-fit, 100 networks"
python -c "
import logging; logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
from compactnet.cli import auto_fit_predictor as f; f('ort-cpu-fp32-t1', 'mobilenetv2', n_calibrate=100)" 2>&1 | grep -v "re-measuring\|sample/s\|testset:"
cd /work/main
echo "$(date +%T) evaluate"
python benchmarks/context_bench.py evaluate --store results/machine-d/space.sqlite --out results/machine-d/families \
  --platforms ort-cpu-fp32-t1 --json /work/scratch/s8/context-100.json --predictor $COMPACTNET_HOME/predictors/ort-cpu-fp32-t1
echo "$(date +%T) CHAIN8 DONE"
