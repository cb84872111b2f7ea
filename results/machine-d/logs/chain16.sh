#!/bin/bash
# Machine D, session 10, nothing else on the machine: the first command's one-time profiling with the new
# calibration default (100 networks, a fifth trims of the model; reference level = minimum) on a fresh
# COMPACTNET_HOME (main tree), then every predictor tested on chain12's 200 networks (offline).
export COMPACTNET_DATA=/work/shared/data/cifar10-jpeg.npz
export COMPACTNET_HOME=/work/scratch/home-d11
rm -rf $COMPACTNET_HOME
source /work/venv/bin/activate
cd /tmp
s=$(date +%s)
python -c "import logging; logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s'); from compactnet.cli import auto_fit_predictor as f; f('ort-cpu-fp32-t1', 'mobilenetv2')" \
  > /work/main/results/machine-d/logs/autofit-100.txt 2>&1
echo "WALL $(( $(date +%s) - s )) s" >> /work/main/results/machine-d/logs/autofit-100.txt
cd /work/main
python benchmarks/context_bench.py evaluate --store /work/scratch/space-d.sqlite --out results/machine-d/families-s10 \
  --platforms ort-cpu-fp32-t1 --predictor /work/scratch/home-d11/predictors/ort-cpu-fp32-t1 \
  --json results/machine-d/context-s10.json > results/machine-d/logs/chain16-context.txt 2>&1
echo "$(date +%T) CHAIN16 DONE"
