#!/usr/bin/env bash
# Session 4 (machine B): the same layer samples profiled again with anchor layers in every batch; the composition floor.
set -u
cd /work/pipeline && source /work/venv-pipe/bin/activate
S=results/amd/samples-anchored.sqlite; L=results/amd/logs; C=$L/chain7.txt
PL="ort-cpu-fp32-t1 openvino-cpu-fp32-t1 ncnn-cpu-fp32-t1"
log(){ echo "=== $(date +%T) $*" >> $C; }
log start
for p in $PL; do
  compactnet profile --platform $p --strategy sobol --samples 300 --seed 0 --store $S --context isolated >> $L/s4-anchored.out 2>> $L/s4-anchored.log; log "sobol $p rc=$?"
  for ms in mobilenetv2:700 resnet20:200 vgg16:200; do
    compactnet profile --platform $p --strategy prior --model ${ms%%:*} --samples ${ms##*:} --seed 1 --store $S --context isolated >> $L/s4-anchored.out 2>> $L/s4-anchored.log; log "prior $p $ms rc=$?"
  done
done
python benchmarks/composition_bench.py --set results/amd/devset --platforms $PL --networks 8 --context isolated --json results/amd/composition.json > $L/s4-composition.out 2> $L/s4-composition.log; log "composition rc=$?"
log done
