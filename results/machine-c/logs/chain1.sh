#!/usr/bin/env bash
# Session 5, machine C: the protocol's repeatability and interval coverage on three runtimes (nothing else running).
set -u
cd /work/frozen
PY=/work/venv2/bin/python
OUT=/work/main/results/machine-c
$PY benchmarks/repeatability_bench.py --networks 120 --gap 120 --out $OUT/repeatability.json > $OUT/logs/repeatability.log 2>&1
$PY benchmarks/repeatability_bench.py --pairs 4 --repeats 15 --out $OUT/coverage.json > $OUT/logs/coverage.log 2>&1
echo chain1 done > $OUT/logs/chain1.done
