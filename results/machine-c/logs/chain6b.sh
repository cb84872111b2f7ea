#!/bin/bash
# chain6 continued with the order changed for the session's time (16.8 min per cell with the control,
# ~11.5 without): the 1.8x cells of OpenVINO and ncnn with uniform width scaling and the FLOPs-driven loop
# besides search/random/control (issue 17's accuracy-vs-speedup figure), the same two variants added to
# the onnxruntime 1.8x cell, then onnxruntime 2.5x and 2.0x. Nothing else running; from the frozen copy.
set -e
source /work/venv2/bin/activate
cd /work/frozen
export COMPACTNET_DATA=/work/shared/data/cifar10-jpeg.npz
export COMPACTNET_HOME=/work/scratch/home-first2
OUT=/work/main/results/table5
cell() {  # runtime-key tag speedup variants
  local key=$1 tag=$2 x=$3 variants=$4 rt=${1%%-*}
  local out=$OUT/c-$rt-$tag
  if [ ! -d $COMPACTNET_HOME/predictors/$key ]; then
    echo "$(date +%T) fitting $key"
    (cd /tmp && python -c "import logging; logging.basicConfig(level=logging.INFO); from compactnet.cli import auto_fit_predictor; auto_fit_predictor('$key', 'mobilenetv2')")
  fi
  mkdir -p $out
  if [ -d $OUT/control ] && [ ! -d $out/control ]; then cp -r $OUT/control $out/control; fi
  echo "$(date +%T) cell $key $x $variants"
  python benchmarks/baselines_bench.py --platform $key --speedup $x --preset default \
    --predictor $COMPACTNET_HOME/predictors/$key --variants $variants --out $out --quiet
  echo "$(date +%T) cell $key $x done"
}
ALL=search,random,uniform,flops,control
for c in ${CELLS:-openvino-cpu-fp32-t1:1p8x:1.8:$ALL ncnn-cpu-fp32-t1:1p8x:1.8:$ALL ort-cpu-fp32-t1:1p8x:1.8:$ALL ort-cpu-fp32-t1:2p5x:2.5:search,random,control ort-cpu-fp32-t1:2p0x:2.0:search,random,control openvino-cpu-fp32-t1:2p5x:2.5:search,random,control ncnn-cpu-fp32-t1:2p5x:2.5:search,random,control}; do
  IFS=: read key tag x variants <<< "$c"
  cell $key $tag $x $variants
done
echo CHAIN6B DONE
