#!/bin/bash
# Issue 16 item 4 and issue 17 item 1, after chain6 (nothing else running): publish the untrimmed baseline
# for each local runtime and every Table-5 search result into zoo/ (measured anew on this hardware), then
# run the four notebooks once in their full setting.
set -e
source /work/venv/bin/activate
cd /work/main
export COMPACTNET_DATA=/work/shared/data/cifar10-jpeg.npz
# chain6 wrote results/table5/c-RUNTIME-TARGET: the cells live under the machine's folder
if [ -d results/table5 ]; then
  mkdir -p results/machine-c/table5
  for d in results/table5/*; do n=$(basename $d); mv $d results/machine-c/table5/${n#c-}; done
  rmdir results/table5
fi
BASE=$(mktemp -d /tmp/compactnet-baseline.XXXXXX)
ln -s $PWD/compactnet/assets/mobilenetv2.cifar10.safetensors $BASE/mobilenetv2.safetensors
ln -s $PWD/compactnet/assets/mobilenetv2.cifar10.card.json $BASE/card.json
if [ -z "$SKIP_ZOO" ]; then
for p in ort-cpu-fp32-t1 openvino-cpu-fp32-t1 ncnn-cpu-fp32-t1; do
  echo "$(date +%T) base $p"
  compactnet zoo publish $BASE --platform $p --index zoo/index.json --replace
done
for d in results/machine-c/table5/*-*x/search results/baselines/c-ort-2p5x-default/search; do
  echo "$(date +%T) publish $d"
  compactnet zoo publish $d --index zoo/index.json --replace || echo "FAILED $d"
done
fi
# the check: the best entry at 1.8x on this hardware is one measured here, and pull + evaluate
# reproduce its top-1 exactly
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
} 2>&1 | sed "s|$Z|...|g" | tee results/machine-c/logs/zoo-journey-c.txt
echo "$(date +%T) notebooks"
python benchmarks/run_notebooks.py --out /tmp/nb-out
echo "$(date +%T) CHAIN7 DONE"
