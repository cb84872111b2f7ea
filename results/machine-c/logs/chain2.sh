#!/usr/bin/env bash
# Session 5, machine C, after chain1: the README's first command on a fresh home, the sample stores
# (layer samples as reproduce.sh's profile/prior steps take them, and the 300 sobol samples a second
# time), the predictors' test and development sets -- all by the minimum protocol, nothing else running.
set -u
cd /work/frozen
export PATH=/work/venv2/bin:$PATH
export COMPACTNET_DATA=/work/shared/data/cifar10-jpeg.npz
R=/work/main/results/machine-c
L=$R/logs
# 1. the README's first command, fresh COMPACTNET_HOME, from an empty folder (FIRST=1; done once at 09:32)
if [[ -n "${FIRST:-}" ]]; then
  rm -rf /tmp/cn-first && mkdir -p /tmp/cn-first && cd /tmp/cn-first
  export COMPACTNET_HOME=/tmp/cn-first/home
  { /usr/bin/time -v compactnet optimize --speedup 1.5 ; } > $L/first-command.txt 2>&1
  unset COMPACTNET_HOME
  cd /work/frozen
fi
# (restarted at 09:38 after a fix: the load check now judges windows of at least 0.25 s; the ort vgg16
#  prior batch had been refused four times as "0.67 cores busy" over a few clock ticks)
# 2. layer samples (profile + prior steps of reproduce.sh) and a repeat of the sobol samples
for p in ort-cpu-fp32-t1 openvino-cpu-fp32-t1 ncnn-cpu-fp32-t1; do
  { time compactnet -v profile --platform $p --strategy sobol --samples 300 --store $R/samples.sqlite --context isolated ; } >> $L/profile-$p.log 2>&1
  for ms in mobilenetv2:700 resnet20:200 vgg16:200; do
    { time compactnet -v profile --platform $p --strategy prior --model ${ms%%:*} --samples ${ms##*:} \
        --store $R/samples.sqlite --context isolated --seed 1 ; } >> $L/profile-$p.log 2>&1
  done
  { time compactnet -v profile --platform $p --strategy sobol --samples 300 --store $R/samples-repeat.sqlite --context isolated ; } >> $L/profile-repeat-$p.log 2>&1
done
python benchmarks/repeatability_bench.py --layers $R/samples-repeat.sqlite $R/samples.sqlite > $R/layers-repeatability.txt 2>&1
# 3. the test set and the development set (twice)
python benchmarks/measure_testset.py --store $R/samples.sqlite --out $R/testset --platforms > $L/testset.log 2>&1
python benchmarks/measure_testset.py --store $R/samples.sqlite --out $R/devset --seed 1 --mobilenetv2 40 \
  --resnet20 10 --vgg 10 --candidate-sets 0 --exclude $R/testset/testset.json >> $L/testset.log 2>&1
python benchmarks/measure_testset.py --store $R/samples.sqlite --out $R/testset >> $L/testset.log 2>&1
python benchmarks/measure_testset.py --store $R/samples.sqlite --out $R/devset --seed 1 --results results-repeat.json >> $L/testset.log 2>&1
echo chain2 main done > $L/chain2.done
# 4. the window: the same coverage check with rounds spread over 0.5 s and 8 s (3 s above)
for w in 0.5 8; do
  python benchmarks/repeatability_bench.py --platforms ort-cpu-fp32-t1 ncnn-cpu-fp32-t1 --pairs 4 --repeats 8 \
    --window $w --out $R/window-$w.json > $L/window-$w.log 2>&1
done
echo chain2 window done >> $L/chain2.done
