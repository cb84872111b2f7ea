"""Same-day test set (families-s10): what calibration gives the first command's predictor >= 95% within 10%?"""
import copy, sys
from pathlib import Path
import numpy as np
sys.path.insert(0, "/work/main/benchmarks")
from context_bench import layer_predictor, _stats, family
from compactnet.predictors.testset import TestSet, reference_figures, load_results

K = "ort-cpu-fp32-t1"
FAM = Path("/work/main/results/machine-d/families-s10")
H = Path("/work/scratch/home-d10")
test = TestSet.load(FAM / "test/testset.json"); cal = TestSet.load(FAM / "calibration/testset.json")
hts = TestSet.load(H / "calibration" / K / "testset.json")

def load(ts, res, mode="median"):
    refs = reference_figures(res, K)
    ref = {"median": float(np.median(refs)), "min": float(np.min(refs))}[mode]
    r = load_results(res, K, normalized=True, reference_ms=ref)
    nets = [n for n in ts.all_networks() if n.id in r]
    return nets, [n.spec() for n in nets], np.array([r[n.id] for n in nets])

def report(name, p, ts_, truth, tn):
    e = p.predict_many(ts_) / truth - 1
    s = _stats(e)
    lat = [p.predict(x) for x in ts_]
    cov = np.mean([l.low_ms <= y <= l.high_ms for l, y in zip(lat, truth)])
    print(f"{name:58s} ±10 {s['within10']:.3f} ±5 {s['within5']:.3f} med {s['median']:+.3f} cov {cov:.2f}", flush=True)

for mode in ("median", "min"):
    tn, ts_, tm = load(test, FAM / "test/results.json", mode)
    cn, cs, cm = load(cal, FAM / "calibration/results.json", mode)
    hn, hs, hm = load(hts, H / "calibration" / K / "results.json", mode)
    print(f"-- reference {mode}: test ref {np.median(reference_figures(FAM / 'test/results.json', K)):.4f}/{np.min(reference_figures(FAM / 'test/results.json', K)):.4f}, "
          f"home ref {np.median(reference_figures(H / 'calibration' / K / 'results.json', K)):.4f}/{np.min(reference_figures(H / 'calibration' / K / 'results.json', K)):.4f}")
    own = layer_predictor(H / "samples.sqlite", K)
    space = layer_predictor(Path("/work/scratch/space-d.sqlite"), K)
    trims = [i for i, n in enumerate(hn) if "trim" in n.id or "untrimmed" in n.id]
    fams = [i for i in range(len(hn)) if i not in trims]
    R = lambda name, p: report(name, p, ts_, tm, tn)
    R("home store + own 60 (what the first command fits)", copy.deepcopy(own).calibrate(hs, hm, mode="context"))
    R("home store + same-day families 80", copy.deepcopy(own).calibrate(cs, cm, mode="context"))
    R("space store + own 60", copy.deepcopy(space).calibrate(hs, hm, mode="context"))
    R("home store + own families only (40)", copy.deepcopy(own).calibrate([hs[i] for i in fams], hm[fams], mode="context"))
    R("home store + own trims 20 + families-s10 60", copy.deepcopy(own).calibrate([hs[i] for i in trims] + cs[:60], np.concatenate([hm[trims], cm[:60]]), mode="context"))
    R("home store + own 60 + families-s10 40", copy.deepcopy(own).calibrate(hs + cs[:40], np.concatenate([hm, cm[:40]]), mode="context"))
    R("home store + own 60 + families-s10 80", copy.deepcopy(own).calibrate(hs + cs, np.concatenate([hm, cm]), mode="context"))
