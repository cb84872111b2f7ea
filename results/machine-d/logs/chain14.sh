#!/bin/bash
# Machine D, session 10, after chain13 (nothing else on the machine), frozen copy of cc01011: the onnxruntime
# 2.5x cell again (session 9's search weights were not kept, so it had no zoo entry), then its search published.
while ! grep -q "CHAIN13 DONE" /work/main/results/machine-d/logs/chain13.log; do sleep 10; done
source /work/venv2/bin/activate
export COMPACTNET_DATA=/work/shared/data/cifar10-jpeg.npz
export COMPACTNET_HOME=/work/scratch/home-d9
cd /work/frozen
export RESULTS=results/machine-d
echo "$(date +%T) ort-cpu-fp32-t1 2.5"
PLATFORMS=ort-cpu-fp32-t1 SPEEDUPS=2.5 bash benchmarks/reproduce.sh table5 || echo "$(date +%T) CELL FAILED"
d=results/machine-d/table5/ort-2p5x/search
if python -c "import json,sys; sys.exit(0 if json.load(open('$d/report.json'))['measured']['reached'] else 1)"; then
  echo "$(date +%T) publish $d"; compactnet zoo publish $d --index zoo/index.json --replace || echo "PUBLISH FAILED $d"
else
  echo "$(date +%T) publish $d --measured-name"; compactnet zoo publish $d --index zoo/index.json --replace --measured-name || echo "PUBLISH FAILED $d"
fi
echo "$(date +%T) CHAIN14 DONE"
