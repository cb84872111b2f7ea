#!/bin/bash
# Machine D, nothing else on the machine, from the frozen copy of 08cc290 (worker-process measurements,
# repeated-and-pooled wide comparisons, the winner fine-tune guard): Table 5 on onnxruntime at 1.8x and 1.5x
# (search, random filters; the control trained once by chain2, its weights do not depend on the code changed
# since), the zoo (baselines and reached search results published anew) and its done-when journey, the README's
# first command on a fresh COMPACTNET_HOME, then the 2.5x and 2.0x cells and their zoo entries.
set -e
source /work/venv2/bin/activate
export COMPACTNET_HOME=/work/scratch/home-d1
export COMPACTNET_DATA=/work/shared/data/cifar10-jpeg.npz
L=/work/main/results/machine-d/logs
cd /work/frozen
export RESULTS=results/machine-d
echo "$(date +%T) ort 1.8x and 1.5x cells"
PLATFORMS=ort-cpu-fp32-t1 SPEEDUPS="1.8 1.5" bash benchmarks/reproduce.sh table5
echo "$(date +%T) zoo"
bash benchmarks/reproduce.sh zoo || echo "ZOO STEP FAILED"
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
export COMPACTNET_HOME=/work/scratch/home-d2
rm -rf "$COMPACTNET_HOME" /work/scratch/first-run-d2 && mkdir -p /work/scratch/first-run-d2
( cd /work/scratch/first-run-d2 && start=$(date +%s) && compactnet optimize --speedup 1.5 2>&1 && echo "WALL $(( $(date +%s) - start )) s" ) > $L/first-command-2.txt 2>&1 || echo "FIRST COMMAND FAILED"
export COMPACTNET_HOME=/work/scratch/home-d1
echo "$(date +%T) ort 2.5x and 2.0x cells"
PLATFORMS=ort-cpu-fp32-t1 SPEEDUPS="2.5 2.0" bash benchmarks/reproduce.sh table5
python benchmarks/tradeoff_figure.py $RESULTS/table5/*-*x/ --figure $RESULTS/figures/accuracy-vs-speedup.png \
  --markdown $RESULTS/table5/table5.md
for d in $RESULTS/table5/ort-2p5x/search $RESULTS/table5/ort-2x/search; do
  echo "$(date +%T) publish $d"
  compactnet zoo publish $d --index zoo/index.json --replace || echo "PUBLISH FAILED $d"
done
echo "$(date +%T) CHAIN3 DONE"
