#!/bin/bash
# Machine D, nothing else on the machine, main tree with the memory lock (editable install): the zoo's
# done-when journey against the repository's index, then the README's first command on a fresh COMPACTNET_HOME.
set -e
source /work/venv/bin/activate
export COMPACTNET_DATA=/work/shared/data/cifar10-jpeg.npz
L=/work/main/results/machine-d/logs
cd /work/main
echo "$(date +%T) zoo journey"
Z=$(mktemp -d /tmp/zoo-cache.XXXXXX)
{
  echo '$ compactnet zoo best --platform ort-cpu-fp32-t1 --speedup 1.8'
  compactnet zoo best --platform ort-cpu-fp32-t1 --speedup 1.8
  NAME=$(compactnet zoo best --platform ort-cpu-fp32-t1 --speedup 1.8 --json | python -c "import json,sys; print(json.load(sys.stdin)['entry'])")
  echo "\$ compactnet zoo pull $NAME"
  compactnet zoo pull $NAME --cache $Z --json > $Z/pull.json
  compactnet zoo pull $NAME --cache $Z
  CH=$(python -c "import json; print(json.load(open('$Z/pull.json'))['channels'])")
  W=$(python -c "import json; print(json.load(open('$Z/pull.json'))['weights'])")
  echo "\$ compactnet evaluate --model mobilenetv2 --channels .../channels.json --weights .../weights.safetensors --platform ort-cpu-fp32-t1"
  compactnet evaluate --model mobilenetv2 --channels $CH --weights $W --platform ort-cpu-fp32-t1
} 2>&1 | sed "s|$Z|...|g" | tee $L/zoo-journey-d.txt
echo "$(date +%T) first command, fresh home"
export COMPACTNET_HOME=/work/scratch/home-d3
rm -rf "$COMPACTNET_HOME" /work/scratch/first-run-d3 && mkdir -p /work/scratch/first-run-d3
( cd /work/scratch/first-run-d3 && start=$(date +%s) && compactnet optimize --speedup 1.5 2>&1 && echo "WALL $(( $(date +%s) - start )) s" ) > $L/first-command-3.txt 2>&1 || echo "FIRST COMMAND FAILED"
echo "$(date +%T) CHAIN6 DONE"
