#!/bin/bash
# Machine D, session 10, after chain12 and an offline evaluation of its networks (nothing else on the machine), frozen copy of cc01011: the Table-5 cells
# session 9 did not run (onnxruntime 1.5x and 2.0x, ncnn 2.5x) with session 9's predictors (home-d9), the
# control retrained once in the first cell; then their search results published to the zoo (measured anew;
# a result whose own final decision missed is published under the name of its measured lower bound).
while ! grep -q "CHAIN12 DONE" /work/main/results/machine-d/logs/chain12.log; do sleep 10; done
L=/work/main/results/machine-d/logs
source /work/venv2/bin/activate
export COMPACTNET_DATA=/work/shared/data/cifar10-jpeg.npz
export COMPACTNET_HOME=/work/scratch/home-d9
cd /work/frozen
# the in-context predictor and the first command's own ones (home-d10: this session; home-d9: session 9) on
# the networks chain12 measured (offline: nothing is timed)
echo "$(date +%T) context evaluate"
python benchmarks/context_bench.py evaluate --store /work/scratch/space-d.sqlite --out /work/main/results/machine-d/families-s10 \
  --platforms ort-cpu-fp32-t1 --predictor /work/scratch/home-d10/predictors/ort-cpu-fp32-t1 \
  --json /work/main/results/machine-d/context-s10.json > $L/chain13-context.txt 2>&1 || echo "EVALUATE FAILED"
mkdir -p results/machine-d/table5
export RESULTS=results/machine-d
cell() { echo "$(date +%T) $1 $2"; PLATFORMS="$1" SPEEDUPS="$2" bash benchmarks/reproduce.sh table5 || echo "$(date +%T) CELL $1 $2 FAILED"; }
cell ort-cpu-fp32-t1 "1.5 2.0"
cell ncnn-cpu-fp32-t1 "2.5"
for d in results/machine-d/table5/*/search; do
  if python -c "import json,sys; sys.exit(0 if json.load(open('$d/report.json'))['measured']['reached'] else 1)"; then
    echo "$(date +%T) publish $d"; compactnet zoo publish $d --index zoo/index.json --replace || echo "PUBLISH FAILED $d"
  else
    echo "$(date +%T) publish $d --measured-name"; compactnet zoo publish $d --index zoo/index.json --replace --measured-name || echo "PUBLISH FAILED $d"
  fi
done
echo "$(date +%T) CHAIN13 DONE"
