"""Does measuring inside a training process move the search's figures? In-process vs the worker process.

A search measures the original and the trimmed network between training phases. This benchmark
reproduces that situation: one process holds the CIFAR-10 training set and trains MobileNetV2 in
channels-last for ``--train-s`` seconds between measurements (as fine-tuning does), then compares
the same two ONNX networks (the untrimmed model and a trimmed one, by default the zoo's onnxruntime
1.8x entry) by the protocol twice, side by side in time:

* ``in-process``: :func:`compactnet.measure.compare` in the training process (the search before);
* ``worker``: :func:`compactnet.isolated.compare_isolated`, a small process that never trains and
  locks its memory in RAM (:func:`compactnet.isolated.lock_memory`);
* ``worker-unlocked`` (with ``--modes``): the same worker without the memory lock.

The orders rotate from pair to pair. Printed per mode: the original's and the trimmed
network's minimum latency over the pairs (range), the measured speedup's range and standard
deviation, and the median width of the stated 95% interval. The first row is one in-process
measurement before any training (a quiet process, for reference).

Usage::

    python benchmarks/isolation_bench.py --out results/machine-d/isolation.txt
    python benchmarks/isolation_bench.py --quick     # 2 pairs, 3 s of training, 7 rounds
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TRIMMED = "zoo/models/mobilenetv2.cifar10.ort-cpu-fp32-t1.s1p8x"
DEFAULT_ORIGINAL = "zoo/models/mobilenetv2.cifar10.ort-cpu-fp32-t1.base"


def _first_onnx(folder: Path) -> Path:
    found = sorted(folder.rglob("model.onnx"))
    if not found:
        raise SystemExit(f"no model.onnx under {folder}: pass --original/--trimmed ONNX files")
    return found[0]


def _trainer(seconds_per_call: float, batch: int = 128):
    """A closure training MobileNetV2 on CIFAR-10 (or random images without the data) for a while."""
    import torch
    import torch.nn.functional as F

    from compactnet.models import create_model
    from compactnet.train import batches, setup_threads

    setup_threads()
    model = create_model("mobilenetv2").to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    try:
        from compactnet.data import load_cifar10

        split = load_cifar10().train
    except Exception as exc:  # noqa: BLE001 - the benchmark still shows the effect without the data
        logging.warning("CIFAR-10 not available (%s): training on random images", exc)
        split = None
    gen = torch.Generator().manual_seed(0)

    def stream():
        while True:
            if split is None:
                yield torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last), \
                    torch.randint(0, 10, (batch,))
            else:
                yield from batches(split, batch, shuffle=True, gen=gen, do_augment=True)

    it = stream()

    def train() -> int:
        steps, end = 0, time.perf_counter() + seconds_per_call
        while time.perf_counter() < end:
            x, y = next(it)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
            steps += 1
        return steps

    return train


def _row(mode: str, pair: int, comp) -> dict:
    ratio, low, high = comp.speedups[1]
    return {"mode": mode, "pair": pair, "original_ms": comp.latencies[0].value_ms,
            "trimmed_ms": comp.latencies[1].value_ms, "speedup": ratio, "low": low, "high": high,
            "load": comp.load, "when": comp.when, "original_rounds": list(comp.latencies[0].rounds)}


def _summary(rows: list[dict], mode: str) -> str:
    r = [x for x in rows if x["mode"] == mode]
    if not r:
        return f"{mode}: no rows"
    sp = [x["speedup"] for x in r]
    o = [x["original_ms"] for x in r]
    t = [x["trimmed_ms"] for x in r]
    widths = [x["high"] - x["low"] for x in r]
    best = min(min(x["original_rounds"]) for x in rows)
    rounds = [v for x in r for v in x["original_rounds"]]
    slow = 100.0 * sum(v > 1.1 * best for v in rounds) / max(1, len(rounds))
    sd = statistics.pstdev(sp) if len(sp) > 1 else 0.0
    return (f"{mode:<15} n={len(r):<2} original {min(o):.4f}-{max(o):.4f} ms  trimmed {min(t):.4f}-{max(t):.4f} ms  "
            f"speedup {min(sp):.3f}-{max(sp):.3f}x (sd {sd:.3f}, {100 * sd / statistics.mean(sp):.1f}%)  "
            f"median 95% interval width {statistics.median(widths):.3f}  original's rounds >10% above the best: {slow:.0f}%")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--platform", default="ort-cpu-fp32-t1")
    ap.add_argument("--original", type=Path, help="ONNX of the untrimmed network (default: the zoo's base)")
    ap.add_argument("--trimmed", type=Path, help="ONNX of a trimmed network (default: the zoo's ort 1.8x entry)")
    ap.add_argument("--pairs", type=int, default=6, help="measurements per mode")
    ap.add_argument("--train-s", type=float, default=20.0, help="seconds of training before each pair")
    ap.add_argument("--rounds", type=int, default=10, help="protocol rounds per comparison")
    ap.add_argument("--out", type=Path, help="text summary here (and the rows as OUT.json)")
    ap.add_argument("--modes", default="in-process,worker",
                    help="comma-separated among in-process, worker, worker-unlocked")
    ap.add_argument("--quick", action="store_true", help="2 pairs, 3 s of training, 7 rounds")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.quick:
        args.pairs, args.train_s, args.rounds = 2, 3.0, 7
    from compactnet import isolated
    from compactnet import measure as protocol
    from compactnet.runtimes import get_runner

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = sorted(set(modes) - {"in-process", "worker", "worker-unlocked"})
    if bad or not modes:
        raise SystemExit(f"--modes: unknown {', '.join(bad) or '(none)'}; choose among in-process, worker, "
                         "worker-unlocked")
    workers = {m: isolated._Worker() for m in modes if m != "in-process"}  # one process per mode

    original = args.original or _first_onnx(ROOT / DEFAULT_ORIGINAL)
    trimmed = args.trimmed or _first_onnx(ROOT / DEFAULT_TRIMMED)
    files = [original.read_bytes(), trimmed.read_bytes()]
    kw = {"names": ["original", "trimmed"], "rounds": args.rounds}
    rows = [_row("quiet", 0, protocol.compare(files, args.platform, **kw))]
    train = _trainer(args.train_s)
    for pair in range(1, args.pairs + 1):
        steps = train()
        order = modes[pair % len(modes):] + modes[:pair % len(modes)]
        for mode in order:
            if mode == "in-process":
                comp = protocol.compare(files, args.platform, **kw)
            else:
                comp = workers[mode].call(files, args.platform, {**kw, "estimator": protocol.default_estimator()},
                                          lock=mode == "worker")
            rows.append(_row(mode, pair, comp))
        print(f"pair {pair}: {steps} training steps; " + "; ".join(
            f"{x['mode']} {x['speedup']:.3f}x [{x['low']:.3f}, {x['high']:.3f}] original {x['original_ms']:.4f} ms"
            for x in rows[-len(modes):]), flush=True)
    for w in workers.values():
        w.close()
    runner = get_runner(args.platform)
    import torch
    head = (f"# {runner.platform.describe()}; torch {torch.__version__}; {args.pairs} pairs, {args.train_s:g} s of "
            f"training before each, {args.rounds} rounds per comparison\n# original {original.relative_to(ROOT) if original.is_relative_to(ROOT) else original.name}, "
            f"trimmed {trimmed.relative_to(ROOT) if trimmed.is_relative_to(ROOT) else trimmed.name}")
    text = "\n".join([head] + [_summary(rows, m) for m in ["quiet", *modes]])
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
