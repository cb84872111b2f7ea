#!/bin/bash
# Machine D, after chain3 (nothing else on the machine): (1) does locking the measuring worker's memory in RAM
# change the slow rounds? worker with and without mlockall, and in-process, after 20 s of training before each
# triple (main tree, editable install); (2) issue 15's accuracy benchmark on onnxruntime from the frozen copy,
# with the first command's own predictor (fresh home of chain3) tested on the same held-out networks.
set -e
while ! grep -q "CHAIN3 DONE" /work/main/results/machine-d/logs/chain3.log; do sleep 5; done
export COMPACTNET_DATA=/work/shared/data/cifar10-jpeg.npz
echo "$(date +%T) lock experiment"
source /work/venv/bin/activate
cd /work/main
python benchmarks/isolation_bench.py --modes worker,worker-unlocked,in-process --pairs 6 \
  --out results/machine-d/isolation-lock.txt
deactivate
source /work/venv2/bin/activate
cd /work/frozen
R=results/machine-d
P=/work/scratch/home-d2/predictors/ort-cpu-fp32-t1
echo "$(date +%T) context measure"
python benchmarks/context_bench.py measure --store $R/space.sqlite --out $R/families --platforms ort-cpu-fp32-t1
echo "$(date +%T) context evaluate"
python benchmarks/context_bench.py evaluate --store $R/space.sqlite --out $R/families --platforms ort-cpu-fp32-t1 \
  --json $R/context.json --figure $R/figures/predicted-vs-measured.png --predictor $P
echo "$(date +%T) CHAIN5 DONE"
