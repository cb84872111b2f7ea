"""Run the journey notebooks once in their full setting and keep their outputs in the files.

Each notebook runs top to bottom in a fresh kernel (nbclient) with ``COMPACTNET_NB_CI`` unset (the
real budgets: onnxruntime and OpenVINO timing, CIFAR-10, the MobileNetV2 search), in order, since
later notebooks read what earlier ones wrote under ``COMPACTNET_NB_OUT`` (a temporary folder unless
``--out`` is given). A notebook that fails is left unchanged and the run stops with its error.

Run it on a quiet machine: the notebooks measure latency.

Usage::

    python benchmarks/run_notebooks.py [notebooks/01-profile-new-platform.ipynb ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(path: Path, out: Path, timeout: int) -> float:
    """Execute one notebook in place; returns its wall time (s)."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    env = {"COMPACTNET_NB_OUT": str(out), "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    old = {k: os.environ.get(k) for k in (*env, "COMPACTNET_NB_CI")}
    os.environ.update(env)
    os.environ.pop("COMPACTNET_NB_CI", None)
    try:
        t0 = time.perf_counter()
        nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}}).execute()
        wall = time.perf_counter() - t0
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    nbformat.write(nb, path)
    return wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", type=Path, nargs="*", help="default: every notebook in notebooks/, in order")
    ap.add_argument("--out", type=Path, default=None, help="COMPACTNET_NB_OUT (default: a temporary folder)")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    args = ap.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    out = (args.out or Path(tempfile.mkdtemp(prefix="compactnet-notebooks-"))).resolve()  # the kernel runs in notebooks/
    for p in paths:
        print(f"{p.name}: running (full setting, outputs under {out}) ...", flush=True)
        print(f"{p.name}: done in {run(p, out, args.timeout) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
