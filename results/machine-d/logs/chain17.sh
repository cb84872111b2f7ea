#!/bin/bash
# Machine D, session 10, after the clean-clone CI (nothing else on the machine), main tree: OpenVINO on D for
# issue 15: the space prior's 1,200 layers and the 80 calibration + 200 test networks (same draws as onnxruntime),
# the first command's one-time profiling of OpenVINO on a fresh home (100 networks), then the evaluation.
export COMPACTNET_DATA=/work/shared/data/cifar10-jpeg.npz
source /work/venv/bin/activate
cd /work/main
L=results/machine-d/logs
K=openvino-cpu-fp32-t1
echo "$(date +%T) context measure $K"
python benchmarks/context_bench.py measure --store results/machine-d/space.sqlite --out results/machine-d/families-s10 \
  --platforms $K --busy refuse > $L/chain17-measure.txt 2>&1 || echo "MEASURE FAILED"
echo "$(date +%T) autofit $K"
export COMPACTNET_HOME=/work/scratch/home-d11
s=$(date +%s)
(cd /tmp && python -c "import logging; logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s'); from compactnet.cli import auto_fit_predictor as f; f('$K', 'mobilenetv2')") \
  > $L/autofit-100-openvino.txt 2>&1 || echo "AUTOFIT FAILED"
echo "WALL $(( $(date +%s) - s )) s" >> $L/autofit-100-openvino.txt
echo "$(date +%T) evaluate"
python benchmarks/context_bench.py evaluate --store results/machine-d/space.sqlite --out results/machine-d/families-s10 \
  --platforms $K --predictor /work/scratch/home-d11/predictors/$K --json results/machine-d/context-s10-openvino.json \
  > $L/chain17-context.txt 2>&1 || echo "EVALUATE FAILED"
echo "$(date +%T) CHAIN17 DONE"
