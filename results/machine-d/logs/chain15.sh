#!/bin/bash
# Machine D, session 10, nothing else on the machine: onnxruntime 1.5x and 2.0x search results published with
# the zoo's measurement now the search's (worker, disturbed comparisons repeated); chain13's in-process
# single comparisons read lower bounds of 1.27 and 1.79 for them and refused the entries.
source /work/venv2/bin/activate
export COMPACTNET_DATA=/work/shared/data/cifar10-jpeg.npz
cd /work/frozen
for d in results/machine-d/table5/ort-1p5x/search results/machine-d/table5/ort-2p0x/search; do
  if python -c "import json,sys; sys.exit(0 if json.load(open('$d/report.json'))['measured']['reached'] else 1)"; then
    echo "$(date +%T) publish $d"; compactnet -v zoo publish $d --index zoo/index.json --replace || echo "PUBLISH FAILED $d"
  else
    echo "$(date +%T) publish $d --measured-name"; compactnet -v zoo publish $d --index zoo/index.json --replace --measured-name || echo "PUBLISH FAILED $d"
  fi
done
echo "$(date +%T) CHAIN15 DONE"
