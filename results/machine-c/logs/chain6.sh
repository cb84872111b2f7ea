#!/bin/bash
# Issue 16 item 2: Table 5 on machine C with the default preset (tracking on): search and random filter
# selection per runtime and target, one control (the unpruned model given the same training; its weights
# do not depend on the runtime) trained once and measured beside every cell. Nothing else running; from a
# frozen copy. Predictors: the ones the README's first command fits (auto_fit_predictor) in one home.
set -e
source /work/venv2/bin/activate
cd /work/frozen
export COMPACTNET_DATA=/work/shared/data/cifar10-jpeg.npz
export COMPACTNET_HOME=/work/scratch/home-first2
OUT=/work/main/results/table5
cell() {  # runtime-key tag speedup
  local key=$1 tag=$2 x=$3 rt=${1%%-*}
  local out=$OUT/c-$rt-$tag
  if [ ! -f $COMPACTNET_HOME/predictors/$key/predictor.json ] && [ ! -d $COMPACTNET_HOME/predictors/$key ]; then
    echo "$(date +%T) fitting $key"
    python -c "import logging; logging.basicConfig(level=logging.INFO); from compactnet.cli import auto_fit_predictor; auto_fit_predictor('$key', 'mobilenetv2')"
  fi
  mkdir -p $out
  if [ -d $OUT/control ] && [ ! -d $out/control ]; then cp -r $OUT/control $out/control; fi
  echo "$(date +%T) cell $key $x"
  python benchmarks/baselines_bench.py --platform $key --speedup $x --preset default \
    --predictor $COMPACTNET_HOME/predictors/$key --variants search,random,control --out $out --quiet
  if [ ! -d $OUT/control ]; then cp -r $out/control $OUT/control; fi
  echo "$(date +%T) cell $key $x done"
}
for c in ${CELLS:-ort-cpu-fp32-t1:1p8x:1.8 ort-cpu-fp32-t1:1p5x:1.5 openvino-cpu-fp32-t1:1p8x:1.8 ncnn-cpu-fp32-t1:1p8x:1.8 ort-cpu-fp32-t1:2p5x:2.5 ort-cpu-fp32-t1:2p0x:2.0 openvino-cpu-fp32-t1:2p5x:2.5 ncnn-cpu-fp32-t1:2p5x:2.5 openvino-cpu-fp32-t1:1p5x:1.5 ncnn-cpu-fp32-t1:1p5x:1.5 openvino-cpu-fp32-t1:2p0x:2.0 ncnn-cpu-fp32-t1:2p0x:2.0}; do
  IFS=: read key tag x <<< "$c"
  cell $key $tag $x
done
echo CHAIN6 DONE
