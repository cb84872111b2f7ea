#!/usr/bin/env bash
# Reproduce every figure CompactNet publishes, on this machine, by the measurement protocol.
#
# Run it on a quiet machine (no training, test suite or other CPU-heavy job): measurements taken
# while another process loads the CPU are refused. Every step resumes where it stopped, so a
# killed run is simply started again. Outputs go to results/ (committed).
#
#   bash benchmarks/reproduce.sh [STEP ...]     steps: baseline repeatability context cost profile prior fit
#                                               testset composition predictors search table5 zoo journey notebooks
#
# The baseline every search starts from and the zoo's "base" entry are the same weights: the bundled
# compactnet/assets/mobilenetv2.cifar10.safetensors (with its card), or, when the optional "baseline"
# step runs (or BASELINE_DIR names a `compactnet train` output folder), that folder's model.
set -euo pipefail
cd "$(dirname "$0")/.."
R=${RESULTS:-results}
PLATFORMS=${PLATFORMS:-"ort-cpu-fp32-t1 openvino-cpu-fp32-t1 ncnn-cpu-fp32-t1"}
STEPS=${*:-"repeatability context cost profile prior fit testset predictors table5 zoo journey notebooks"}
# Measuring context of the layer samples. DESIGN asks for the network's cache state ("rotation");
# on this machine the rotation loop's Figure-7 sums read 56-150% above the prefix networks while
# "isolated" read 11% below on average (see results/profilers_bench.txt), so isolated samples plus a
# whole-network calibration (fit --calibrate) are used until the rotation loop is fixed.
CONTEXT=${CONTEXT:-isolated}
BUSY=${BUSY:-refuse}   # refuse | flag: what a sample taken while other processes load the CPU becomes
mkdir -p "$R"
has() { [[ " $STEPS " == *" $1 "* ]]; }

if has baseline; then  # ~45 min on 2 cores: retrain the baseline instead of using the bundled one
  BASELINE_DIR=${BASELINE_DIR:-runs/mobilenetv2-baseline}
  compactnet -v train --model mobilenetv2 --recipe default --epochs 20 --out "$BASELINE_DIR"
fi
if has search || has zoo || has table5; then  # all start from the same baseline weights
  if [[ -z "${BASELINE_DIR:-}" ]]; then
    # the bundled baseline, laid out as `compactnet zoo publish DIR` reads a trained baseline folder
    # (card.json + mobilenetv2.safetensors); removed on exit
    ASSETS="$PWD/compactnet/assets"
    for f in mobilenetv2.cifar10.safetensors mobilenetv2.cifar10.card.json; do
      [[ -f "$ASSETS/$f" ]] || { echo "missing $ASSETS/$f: run the 'baseline' step or set BASELINE_DIR" >&2; exit 1; }
    done
    BASELINE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/compactnet-baseline.XXXXXX")
    trap 'rm -rf "$BASELINE_DIR"' EXIT
    ln -s "$ASSETS/mobilenetv2.cifar10.safetensors" "$BASELINE_DIR/mobilenetv2.safetensors"
    ln -s "$ASSETS/mobilenetv2.cifar10.card.json" "$BASELINE_DIR/card.json"
  fi
  BASELINE_WEIGHTS="$BASELINE_DIR/mobilenetv2.safetensors"
  [[ -f "$BASELINE_WEIGHTS" && -f "$BASELINE_DIR/card.json" ]] || {
    echo "$BASELINE_DIR must hold card.json and mobilenetv2.safetensors (a compactnet train output)" >&2; exit 1; }
fi
if has repeatability; then  # issue 14: does the protocol repeat? >= 100 networks measured twice, both estimators
  python benchmarks/repeatability_bench.py --platforms $PLATFORMS --networks ${REPEAT_NETWORKS:-120} --gap 120 \
    --out "$R/repeatability.json.gz"   # also writes repeatability.txt
  # the speedup intervals' coverage: four pairs compared 15 times each (writes coverage.txt)
  python benchmarks/repeatability_bench.py --platforms $PLATFORMS --pairs 4 --repeats 15 --out "$R/coverage.json.gz"
fi
if has context; then  # issue 15: the space prior's layers, 80 calibration and 200 test networks of the latency
  # families per runtime, then accuracy per family, leave-one-family-out, interval coverage and speed
  python benchmarks/context_bench.py measure --store "$R/space.sqlite" --out "$R/families" --platforms $PLATFORMS \
    --busy "$BUSY"
  python benchmarks/context_bench.py evaluate --store "$R/space.sqlite" --out "$R/families" --platforms $PLATFORMS \
    --ranking "$R/testset" --json "$R/context.json" --figure "$R/figures/predicted-vs-measured.png"  # + context.txt
fi
if has cost; then  # issue 17: whole-network error vs layer samples (GBDT, lookup table, FLOPs); no timing
  python benchmarks/cost_bench.py --store "$R/space.sqlite" --out "$R/families" --platforms $PLATFORMS \
    --json "$R/cost.json" --figure "$R/figures/error-vs-cost.png"   # + cost.txt
fi
if has profile; then   # issue 3: noise floor, dense vs sparse, Figure 7; sparse samples feed the predictors
  python benchmarks/profilers_bench.py --platforms $PLATFORMS --dense-step 32 --samples 300 \
    --store "$R/samples.sqlite" --dense-store "$R/dense.sqlite" --context "$CONTEXT" --busy "$BUSY" --json "$R/profilers_bench.json" --no-progress \
    | tee "$R/profilers_bench.txt"
fi
if has prior; then     # issue 4: samples around the networks users trim (and their trims), within 1,500 per platform
  # PRIOR: model:samples pairs; with the 300 sobol samples of "profile" the total stays under 1,500
  for p in $PLATFORMS; do
    for ms in ${PRIOR:-"mobilenetv2:700 resnet20:200 vgg16:200"}; do
      compactnet profile --platform "$p" --strategy prior --model "${ms%%:*}" --samples "${ms##*:}" \
        --store "$R/samples.sqlite" --context "$CONTEXT" --busy "$BUSY" --seed 1
    done
  done
fi
if has fit; then       # one portable (pickle-free) GBDT predictor per platform
  for p in $PLATFORMS; do
    compactnet fit --platform "$p" --store "$R/samples.sqlite" --context "$CONTEXT" --out "$R/predictors/$p" \
      --calibrate ${CALIBRATE:-8} --calibrate-with resnet20,vgg16
  done
fi
if has testset; then   # the fixed predictor test set, measured for real
  python benchmarks/measure_testset.py --store "$R/samples.sqlite" --out "$R/testset" --platforms \
    --mobilenetv2 ${TEST_MBV2:-200} --resnet20 ${TEST_RESNET:-30} --vgg ${TEST_VGG:-30}   # generate only
  # a development set (another seed, no test network): whole networks predictors are calibrated on,
  # measured twice (the second pass gives the protocol's repeatability)
  python benchmarks/measure_testset.py --store "$R/samples.sqlite" --out "$R/devset" --seed 1 --mobilenetv2 40 \
    --resnet20 10 --vgg 10 --candidate-sets 0 --exclude "$R/testset/testset.json" --platforms $PLATFORMS
  python benchmarks/measure_testset.py --store "$R/samples.sqlite" --out "$R/testset" --platforms $PLATFORMS
  python benchmarks/measure_testset.py --store "$R/samples.sqlite" --out "$R/devset" --seed 1 \
    --results results-repeat.json --platforms $PLATFORMS
fi
if has composition; then  # the floor under any layer-sum predictor: layer sums vs whole networks, drift removed
  python benchmarks/composition_bench.py --set "$R/devset" --platforms $PLATFORMS --networks 8 --context "$CONTEXT" \
    --json "$R/composition.json" | tee "$R/composition.txt"
fi
if has predictors; then
  python benchmarks/predictors_bench.py --store "$R/samples.sqlite" --dense-store "$R/dense.sqlite" --context "$CONTEXT" \
    --platforms "${PLATFORMS// /,}" \
    --testset "$R/testset/testset.json" --results "$R/testset/results.json" --shipped "$R/predictors" \
    --truth normalized --devset "$R/devset" --repeat results-repeat.json \
    | tee "$R/predictors_bench.txt"
fi
if has search; then    # issue 5: the CompactNet loop, stopped on measured speedup
  mkdir -p "$R/search"
  # PROGRESSIVE="2.0:1.5,1.8" (final target : snapshot thresholds): one progressive search per platform of
  # PLATFORMS instead of one search per SPEEDUPS value; every snapshot is retrained by the final recipe
  # into a folder `zoo publish` reads (results/search/mobilenetv2-<platform>-progressive/snapshots/s1p5x ...)
  if [[ -n "${PROGRESSIVE:-}" ]]; then
    final=${PROGRESSIVE%%:*}
    snaps=${PROGRESSIVE#*:}
    [[ "$PROGRESSIVE" == *:* && -n "$final" && -n "$snaps" ]] || {
      echo "PROGRESSIVE must read FINAL:SNAPSHOTS, e.g. 2.0:1.5,1.8 (got '$PROGRESSIVE')" >&2; exit 1; }
    for p in $PLATFORMS; do
      out="$R/search/mobilenetv2-$p-progressive"
      compactnet optimize --model mobilenetv2 --weights "$BASELINE_WEIGHTS" --platform "$p" --speedup "$final" \
        --snapshots "$snaps" --predictor "$R/predictors/$p" --preset ${PRESET:-quick} --out "$out" \
        | tee "$out.txt"
    done
  else
    for s in ${SPEEDUPS:-1.5 1.8}; do
      tag=s${s/./p}x
      for p in ${SEARCH_PLATFORMS:-ort-cpu-fp32-t1}; do
        compactnet optimize --model mobilenetv2 --weights "$BASELINE_WEIGHTS" --platform "$p" --speedup "$s" \
          --predictor "$R/predictors/$p" --preset ${PRESET:-quick} --out "$R/search/mobilenetv2-$p-$tag" \
          | tee "$R/search/mobilenetv2-$p-$tag.txt"
      done
    done
  fi
fi
if has table5; then    # issue 16: Table 5 with the default preset: search, random filters and the control per cell
  # (runtime x target), measured side by side; the control (unpruned, same training) is trained once and
  # measured in every cell. The predictor per runtime is the one the README's first command fits
  # (COMPACTNET_HOME/predictors/KEY, fitted here when missing).
  for p in $PLATFORMS; do
    [[ -d "${COMPACTNET_HOME:-$HOME/.compactnet}/predictors/$p" ]] || \
      (cd "${TMPDIR:-/tmp}" && python -c "from compactnet.cli import auto_fit_predictor as f; f('$p', 'mobilenetv2')")
    for s in ${SPEEDUPS:-1.5 1.8 2.0 2.5}; do
      out="$R/table5/${p%%-*}-${s/./p}x"
      mkdir -p "$out"
      [[ -d "$R/table5/control" && ! -d "$out/control" ]] && cp -r "$R/table5/control" "$out/control"
      python benchmarks/baselines_bench.py --platform "$p" --speedup "$s" --preset default --weights "$BASELINE_WEIGHTS" \
        --predictor "${COMPACTNET_HOME:-$HOME/.compactnet}/predictors/$p" --variants search,random,control --out "$out" \
        --quiet
      [[ -d "$R/table5/control" ]] || cp -r "$out/control" "$R/table5/control"
    done
  done
  python benchmarks/tradeoff_figure.py "$R"/table5/*-*x/ --figure "$R/figures/accuracy-vs-speedup.png" \
    --markdown "$R/table5/table5.md"
fi
if has zoo; then       # issue 6: publish the baseline and the search results (measured anew)
  for p in $PLATFORMS; do
    compactnet zoo publish "$BASELINE_DIR" --platform "$p" --index zoo/index.json --replace
  done
  # every search result and every retrained snapshot whose report says its target was reached (the
  # final result: on the worst of its repeated comparisons); the others are skipped with a message, and
  # a publish that fails (e.g. the new measurement misses the target) does not stop the others
  reached() {  # prints why a result folder is not publishable, or nothing
    python - "$1" <<'PY'
import json, sys
from pathlib import Path
d = Path(sys.argv[1])
try:
    r = json.loads((d / "report.json").read_text())
except (OSError, ValueError):
    print("no report.json (not retrained or not finished)"); sys.exit()
m = r.get("measured") or {}
if not m:
    print("never measured"); sys.exit()
if not m.get("reached"):
    print(f"target {r.get('target_speedup')}x not reached (measured {m.get('speedup', 0):.2f}x, "
          f"lower bound {m.get('low', 0):.2f})")
PY
  }
  failed=()
  for d in "$R"/table5/*/search/; do
    [[ -d "$d" ]] || continue                       # no search results yet
    [[ -f "$d/report.json" || -f "$d/measured.json" ]] || continue  # not a result folder
    why=$(reached "$d")
    if [[ -n "$why" ]]; then
      echo "zoo: skipping $d: $why" >&2
      continue
    fi
    compactnet zoo publish "$d" --index zoo/index.json --replace || {
      echo "zoo: publishing $d failed (see above); continuing with the others" >&2; failed+=("$d"); }
  done
  if (( ${#failed[@]} )); then
    echo "zoo: not published: ${failed[*]}" >&2
    exit 1
  fi
fi
if has journey; then   # issue 16: every runtime and budget: zoo best, pull, top-1 re-evaluated, speedup re-measured
  python benchmarks/zoo_journey.py --platforms "${PLATFORMS// /,}" --latency --out "$R/zoo-journey.md"
fi
if has notebooks; then  # issue 17: the journey notebooks run once in their full setting, outputs kept
  python benchmarks/run_notebooks.py
fi
