#!/bin/bash
# Machine D, session 9, after chain9 (nothing else on the machine): the zoo re-published from chain9's Table-5
# cells (bases on every runtime, every reached search result, measured anew) from the frozen copy, then the
# zoo journey of every runtime and budget (choose, pull, re-evaluate, re-measure) with the main tree's script.
set -e
while ! grep -q "CHAIN9 DONE" /work/main/results/machine-d/logs/chain9.log; do sleep 10; done
L=/work/main/results/machine-d/logs
export COMPACTNET_DATA=/work/shared/data/cifar10-jpeg.npz
export COMPACTNET_HOME=/work/scratch/home-d9
source /work/venv2/bin/activate
cd /work/frozen
echo "$(date +%T) zoo"
RESULTS=results/machine-d bash benchmarks/reproduce.sh zoo || echo "$(date +%T) ZOO STEP FAILED"
# search results whose own final decision missed the target by the width of the noise: published under the
# name of the lower bound measured anew (rounded down to 0.1x), as a user with that result would
for d in results/machine-d/table5/*/search; do
  python -c "import json,sys; sys.exit(0 if not json.load(open('$d/report.json'))['measured']['reached'] else 1)" || continue
  echo "$(date +%T) publish $d --measured-name"
  compactnet zoo publish $d --index zoo/index.json --replace --measured-name || echo "PUBLISH FAILED $d"
done
deactivate
source /work/venv/bin/activate
echo "$(date +%T) journey"
python /work/main/benchmarks/zoo_journey.py --index /work/frozen/zoo/index.json --latency \
  --out /work/main/results/machine-d/zoo-journey.md || echo "$(date +%T) JOURNEY FOUND PROBLEMS"
echo "$(date +%T) CHAIN10 DONE"
