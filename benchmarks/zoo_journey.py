"""The zoo as a user meets it: choose by budget, pull, and check that the claims hold.

For every platform and speedup budget asked, this script does what the README's zoo journey does
by hand: ``zoo best`` (the most accurate entry meeting the budget on this hardware), ``zoo pull``
into a fresh cache (SHA-256 checked, from the index's own location, so ``file://`` or loopback), then
evaluates the pulled weights on the test split and compares the top-1 with the entry's card. With
``--latency`` the pulled ONNX file is also compared with the zoo's untrimmed entry on the platform
(the measurement protocol, side by side) and the measured speedup set beside the card's.

Printed: one row per (platform, budget): the chosen entry, whether it was measured on this hardware
(or ranked by the predictor), its claimed and re-measured top-1, and with ``--latency`` the card's
and the re-measured speedup. Exit status 1 when a re-measured top-1 differs from its card by more
than ``--tolerance`` points, or when ``--require-local`` is given and an entry was not measured here.

Usage::

    python benchmarks/zoo_journey.py --platforms ort-cpu-fp32-t1 --speedups 1.5,1.8 --require-local
    python benchmarks/zoo_journey.py --latency --out results/machine-d/zoo-journey.md
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLATFORMS = ("ort-cpu-fp32-t1", "openvino-cpu-fp32-t1", "ncnn-cpu-fp32-t1")
log = logging.getLogger("zoo_journey")


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--index", default=str(ROOT / "zoo" / "index.json"), help="Zoo index (path or URL).")
    p.add_argument("--platforms", default=",".join(PLATFORMS), help="Comma-separated platform keys.")
    p.add_argument("--speedups", default="1.5,1.8,2.0,2.5", help="Comma-separated speedup budgets.")
    p.add_argument("--hardware", default=None, help="Hardware to select for (default: this machine's).")
    p.add_argument("--latency", action="store_true", help="Also re-measure the speedup against the base entry.")
    p.add_argument("--tolerance", type=float, default=0.0, help="Points of top-1 a re-evaluation may differ by.")
    p.add_argument("--require-local", action="store_true",
                   help="Fail when a budget's entry was not measured on this hardware.")
    p.add_argument("--data", default=None, help="CIFAR-10 copy (default: COMPACTNET_DATA / the usual places).")
    p.add_argument("--out", default=None, help="Also write the table (markdown) and a .json beside it.")
    return p.parse_args(argv)


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"--{what}: comma-separated numbers, e.g. 1.5,1.8 (got {text!r})") from None


def _speedup(index, files, platform: str, cache: Path) -> dict | None:
    """The pulled entry vs the zoo's untrimmed entry, measured side by side as publishing measures them
    (:func:`compactnet.zoo.publish.protocol_latency`; None: no base entry)."""
    from compactnet.zoo import pull
    from compactnet.zoo.entry import make_name
    from compactnet.zoo.publish import protocol_latency

    base_name = make_name(files.entry.architecture, files.entry.dataset, platform)
    try:
        base = pull(base_name, index.source, cache, progress=False, hardware=files.entry.hardware)
    except Exception as exc:  # noqa: BLE001 - reported in the row, the journey goes on
        log.warning("no base entry to compare with (%s)", exc)
        return None
    lat = protocol_latency()(files.onnx, base.onnx, platform)
    return {"speedup": float(lat.speedup), "low": float(lat.speedup_low), "high": float(lat.speedup_high)}


def journey(args: argparse.Namespace) -> list[dict]:
    """One row per (platform, budget)."""
    from compactnet.data import load_cifar10
    from compactnet.spec import hardware_id
    from compactnet.train import evaluate
    from compactnet.zoo import best, fetch_index, load

    hw = args.hardware or hardware_id()
    test = load_cifar10(args.data).test
    rows = []
    with tempfile.TemporaryDirectory(prefix="zoo-journey-") as tmp:
        cache = Path(tmp)
        index = fetch_index(args.index, cache)
        for platform in [p for p in args.platforms.split(",") if p]:
            for s in _floats(args.speedups, "speedups"):
                sel = best(index, platform, speedup=s, hardware=hw)
                row = {"platform": platform, "budget": s, "entry": None, "message": sel.message}
                rows.append(row)
                if sel.entry is None:
                    continue
                c = sel.chosen
                # what a user's `zoo pull` + load does: hashes checked, the ONNX file checked against
                # the entry, the torch model built from the weights
                files = load(sel.entry.name, args.index, cache, progress=False, build_model=True,
                             hardware=sel.entry.hardware)
                row.update(entry=sel.entry.name, hardware=sel.entry.hardware, local=sel.entry.hardware == hw,
                           predicted=sel.predicted, claimed_top1=c.top1, card_speedup=c.speedup,
                           card_speedup_low=c.speedup_low, top1=float(evaluate(files.model, test)))
                if args.latency:
                    row["measured"] = _speedup(index, files, platform, cache)
                log.info("%s at %.2fx: %s", platform, s, row)
    return rows


def _fmt(v, spec: str = "{:.2f}") -> str:
    return "—" if v is None else spec.format(v)


def table(rows: list[dict], hw: str) -> str:
    """Markdown table of the rows."""
    out = [f"Zoo journey on {hw}: `zoo best --speedup S`, `zoo pull` (SHA-256 checked), test top-1 re-evaluated.",
           "", "| platform | budget | entry | measured here | card top-1 | re-evaluated top-1 | card speedup "
           "[low] | re-measured speedup [95% CI] |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["entry"] is None:
            out.append(f"| {r['platform']} | {r['budget']:g}x | none: {r['message']} | | | | | |")
            continue
        m = r.get("measured")
        meas = f"{m['speedup']:.2f}x [{m['low']:.2f}, {m['high']:.2f}]" if m else "—"
        out.append(f"| {r['platform']} | {r['budget']:g}x | {r['entry']} | "
                   f"{'yes' if r['local'] else 'no (' + r['hardware'] + ')'} | {_fmt(r['claimed_top1'])} | "
                   f"{_fmt(r['top1'])} | {_fmt(r['card_speedup'], '{:.2f}x')} [{_fmt(r['card_speedup_low'])}] | "
                   f"{meas} |")
    return "\n".join(out)


def failures(rows: list[dict], tolerance: float, require_local: bool) -> list[str]:
    """What the journey found wrong (empty: every claim held)."""
    bad = []
    for r in rows:
        where = f"{r['platform']} at {r['budget']:g}x"
        if r["entry"] is None:
            if require_local:
                bad.append(f"{where}: no entry ({r['message']})")
            continue
        if require_local and not r["local"]:
            bad.append(f"{where}: {r['entry']} was measured on {r['hardware']}, not here")
        if r["claimed_top1"] is not None and abs(r["top1"] - r["claimed_top1"]) > tolerance:
            bad.append(f"{where}: {r['entry']} re-evaluates at {r['top1']:.2f}%, its card says "
                       f"{r['claimed_top1']:.2f}%")
    return bad


def main(argv: list[str] | None = None) -> int:
    from compactnet.spec import hardware_id

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = _args(argv)
    rows = journey(args)
    text = table(rows, args.hardware or hardware_id())
    bad = failures(rows, args.tolerance, args.require_local)
    text += "\n\n" + ("\n".join("FAILED: " + b for b in bad) if bad else "every claim checked held")
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
        out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
