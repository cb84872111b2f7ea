#!/usr/bin/env bash
# Session 4 (machine B): layer samples for the three runtimes, the test set, a development set measured twice.
set -u
cd /work/pipeline && source /work/venv-pipe/bin/activate
S=results/amd/samples.sqlite; L=results/amd/logs; C=$L/chain5.txt
PL="ort-cpu-fp32-t1 openvino-cpu-fp32-t1 ncnn-cpu-fp32-t1"
log(){ echo "=== $(date +%T) $*" >> $C; }
log start
for p in $PL; do
  compactnet profile --platform $p --strategy sobol --samples 300 --seed 0 --store $S --context isolated >> $L/s4-profile.out 2>> $L/s4-profile.log; log "sobol $p rc=$?"
  for ms in mobilenetv2:700 resnet20:200 vgg16:200; do
    compactnet profile --platform $p --strategy prior --model ${ms%%:*} --samples ${ms##*:} --seed 1 --store $S --context isolated >> $L/s4-profile.out 2>> $L/s4-profile.log; log "prior $p $ms rc=$?"
  done
done
python benchmarks/measure_testset.py --store $S --out results/amd/testset --platforms >> $L/s4-testset.out 2>> $L/s4-testset.log; log "testset generated rc=$?"
python benchmarks/measure_testset.py --store $S --out results/amd/devset --seed 1 --mobilenetv2 40 --resnet20 10 --vgg 10 --candidate-sets 0 --exclude results/amd/testset/testset.json --platforms $PL >> $L/s4-devset.out 2>> $L/s4-devset.log; log "devset pass 1 rc=$?"
python benchmarks/measure_testset.py --store $S --out results/amd/testset --platforms $PL >> $L/s4-testset.out 2>> $L/s4-testset.log; log "testset measured rc=$?"
python benchmarks/measure_testset.py --store $S --out results/amd/devset --seed 1 --results results-repeat.json --platforms $PL >> $L/s4-devset.out 2>> $L/s4-devset.log; log "devset pass 2 rc=$?"
log done
