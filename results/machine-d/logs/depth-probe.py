"""How much latency does removing residual blocks save on this CPU, vs trimming channels? (ort, 32 px)"""
import json, sys
import torch
from torch import nn
from compactnet.models import create_model
from compactnet.measure import compare
from compactnet.export import export_onnx
import compactnet.models.mobilenetv2 as mv

def _exp(model):
    import tempfile, os
    f = tempfile.NamedTemporaryFile(suffix=".onnx", delete=False).name
    export_onnx(model, f)
    return f

plat = sys.argv[1] if len(sys.argv) > 1 else "ort-cpu-fp32-t1"
base = create_model("mobilenetv2")
res_idx = [i + 1 for i, blk in enumerate(base.features[1:-1]) if getattr(blk, "residual", False) or getattr(blk, "use_res", False)]
print("residual blocks (features index):", res_idx)
variants = {"original": base}
def drop(idx):
    m = create_model("mobilenetv2")
    for i in idx:
        m.features[i] = nn.Identity()
    return m
# drop the last residual block of each stage, then all residual blocks
stages = {}
for i in res_idx:
    stages.setdefault(mv.block_plan()[i - 1][2], []).append(i)
print("by stage:", stages)
variants["drop-last-per-stage"] = drop([v[-1] for v in stages.values()])
variants["drop-all-residual"] = drop(res_idx)
ch = json.load(open("results/machine-d/table5/ort-1p8x/search/channels.json"))
variants["ort-1p8x-trim"] = create_model("mobilenetv2", ch)
files = [_exp(m) for m in variants.values()]
c = compare(files, plat, names=list(variants), rounds=15)
for n, l, s in zip(c.names, c.latencies, c.speedups):
    print(f"{n:24s} {l.value_ms:.4f} ms  speedup {s[0]:.2f} [{s[1]:.2f}, {s[2]:.2f}]  params {sum(p.numel() for p in variants[n].parameters()):,}")
