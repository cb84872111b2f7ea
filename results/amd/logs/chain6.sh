#!/usr/bin/env bash
set -u
cd /work/pipeline && source /work/venv-pipe/bin/activate
S=results/amd/samples.sqlite; L=results/amd/logs; C=$L/chain5.txt
PL="ort-cpu-fp32-t1 openvino-cpu-fp32-t1 ncnn-cpu-fp32-t1"
log(){ echo "=== $(date +%T) $*" >> $C; }
log "restart (testset and the development set's repeat pass)"
python benchmarks/measure_testset.py --store $S --out results/amd/testset --platforms $PL >> $L/s4-testset.out 2>> $L/s4-testset.log; log "testset measured rc=$?"
python benchmarks/measure_testset.py --store $S --out results/amd/devset --seed 1 --results results-repeat.json --platforms $PL >> $L/s4-devset.out 2>> $L/s4-devset.log; log "devset pass 2 rc=$?"
log done
