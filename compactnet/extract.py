"""Extract a :class:`~compactnet.spec.NetworkSpec` from a torch module or an ONNX file.

Both extractors lower their graph to the same small list of primitive operations (conv, batch
norm, activation, linear, add, concat, pools, reshapes) and hand it to one shared assembler, which
fuses batch-norm and activations into the layer before them, drops reshapes, and finds the coupled
channel groups. The two therefore agree layer by layer on our models (see :func:`same_layers`).

Conventions, shared by both extractors:

* Layers are what a runtime executes after fusion: ``conv``/``dwconv`` (with the batch-norm and
  activation after them), ``linear``, ``add`` (a residual add, with the activation after it),
  ``concat``, ``gap``, ``avgpool``, ``maxpool``. Flatten, reshape, dropout and identity are
  skipped. ``h``/``w`` are the layer's *input* size (1 x 1 for ``linear``).
* A conv's per-channel affine is recorded as ``bn=True, bias=False``, whether it comes from a
  batch-norm, from the conv's own bias, or both: runtimes execute these identically, and
  ``torch.onnx.export`` folds an eval-mode batch-norm into the conv's bias, so an exported file no
  longer tells them apart. For ``linear`` layers ``bias`` keeps its meaning.
* A ``dwconv`` is a conv with ``groups == cin == cout`` (so a 1-channel plain conv also reads as
  one: a degenerate case).

Channel groups (union-find over tensor channel dimensions): a conv or linear output starts a
dimension; a ``dwconv`` ties its input and output; an ``add`` ties its inputs and output;
batch-norm, activations, pools and ``gap`` keep it; a ``concat`` starts a new one. A group is named
after the first layer (in network order) producing it; the network input's group is ``input``.
Fixed groups (``NetworkSpec.fixed``): the network input, every network output (the classifier), and
groups :meth:`NetworkSpec.with_channels` cannot follow in this version: a ``concat`` output and
every group feeding a concat (the concat's width is a sum; its members are the layers its
``inputs`` name), both sides of a grouped (non-depthwise) conv, and a tensor flattened with a
spatial size above 1 together with the features it becomes.

Use :func:`spec_for` to get the spec of a registered model at some channel configuration without
building torch modules (cached; what predictors and the search call), and
:func:`mobilenetv2_units` for the paper's per-block units of the Table-1 MobileNetV2.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from dataclasses import MISSING, Field, dataclass, field, fields, make_dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from compactnet.errors import ConfigError, ModelFileError, UnsupportedOpError, bad_value
from compactnet.spec import LayerSpec, NetworkSpec

log = logging.getLogger(__name__)

INPUT_GROUP = "input"
_ACT_KINDS = ("relu", "relu6", "sigmoid", "hardswish")


# ======================================================================================
# Shared intermediate form and assembler
# ======================================================================================
@dataclass
class _Prim:
    """One primitive operation on activation tensors.

    ``kind`` is one of conv, linear, bn, act, bias, add, concat, gap, avgpool, maxpool, alias.
    """

    name: str
    op_type: str
    kind: str
    inputs: tuple[str, ...]
    output: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    attrs: dict = field(default_factory=dict)


def _draft_field(f: Field) -> tuple:
    """A mutable copy of one :class:`LayerSpec` field (same name, type and default)."""
    if f.default is not MISSING:
        return f.name, f.type, field(default=f.default)
    if f.default_factory is not MISSING:
        return f.name, f.type, field(default_factory=f.default_factory)
    return f.name, f.type


_SPEC_FIELDS = tuple(f.name for f in fields(LayerSpec))


def _draft_to_spec(self: Any, **overrides: Any) -> LayerSpec:
    """The frozen :class:`LayerSpec` of this draft, with ``overrides`` replacing some of its fields."""
    values = {n: getattr(self, n) for n in _SPEC_FIELDS}
    values.update(overrides)
    return LayerSpec(**values)


#: A layer being assembled (mutable until fusion is over): every :class:`LayerSpec` field, derived
#: from it so the two cannot drift, plus the assembler's bookkeeping — ``in_dim``/``out_dim``
#: (channel-dimension ids), ``tail`` (tensor currently holding this layer's fused output) and
#: ``bn_folded``.
_Draft = make_dataclass(
    "_Draft",
    [*map(_draft_field, fields(LayerSpec)),
     ("in_dim", int, field(default=-1)),
     ("out_dim", int, field(default=-1)),
     ("tail", str, field(default="")),
     ("bn_folded", bool, field(default=False))],
    namespace={"to_spec": _draft_to_spec,
               "__doc__": "A layer being assembled (mutable until fusion is over).",
               "__module__": __name__},
)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []

    def new(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # keep the older dimension as root so naming stays in network order
            ra, rb = min(ra, rb), max(ra, rb)
            self.parent[rb] = ra
        return ra


def _spatial(shape: Sequence[int]) -> int:
    return int(math.prod(shape[2:])) if len(shape) > 2 else 1


def _where(p: _Prim, source: str) -> str:
    return f"{source} op {p.op_type!r} at node {p.name!r}"


def _assemble(prims: Sequence[_Prim], input_tensor: str, input_shape: Sequence[int], outputs: Iterable[str],
              architecture: str, source: str) -> NetworkSpec:
    """Fuse, drop reshapes, find channel groups and build the NetworkSpec."""
    consumers: dict[str, int] = {}
    for p in prims:
        for t in p.inputs:
            consumers[t] = consumers.get(t, 0) + 1
    outputs = list(outputs)
    for t in outputs:
        consumers[t] = consumers.get(t, 0) + 1

    uf = _UnionFind()
    input_dim = uf.new()
    tensor_dim: dict[str, int] = {input_tensor: input_dim}
    tensor_layer: dict[str, int] = {input_tensor: -1}
    fixed_dims: set[int] = {input_dim}
    drafts: list[_Draft] = []
    used_names: dict[str, int] = {}

    def unique(name: str) -> str:
        if name not in used_names:
            used_names[name] = 0
            return name
        used_names[name] += 1
        return unique(f"{name}@{used_names[name]}")

    def dim_of(p: _Prim, t: str) -> int:
        if t not in tensor_dim:
            raise UnsupportedOpError(f"{_where(p, source)}: its input {t!r} does not come from the network input "
                                     "through supported layers")
        return tensor_dim[t]

    def producers(ts: Iterable[str]) -> tuple[str, ...]:
        names = []
        for t in ts:
            li = tensor_layer.get(t, -1)
            if li >= 0 and drafts[li].name not in names:
                names.append(drafts[li].name)
        return tuple(names)

    for p in prims:
        k = p.kind
        src = p.inputs[0]
        d_in = dim_of(p, src)
        if k == "alias":
            keeps = (len(p.out_shape) >= 2 and len(p.in_shape) >= 2 and p.out_shape[1] == p.in_shape[1]
                     and _spatial(p.out_shape) == _spatial(p.in_shape))
            if keeps:
                tensor_dim[p.output] = d_in
            else:  # e.g. flatten of a C x H x W map: features are not one channel dimension any more
                d_out = uf.new()
                tensor_dim[p.output] = d_out
                fixed_dims.update((d_in, d_out))
            li = tensor_layer[src]
            tensor_layer[p.output] = li
            if li >= 0 and drafts[li].tail == src and consumers.get(src, 0) == 1:
                drafts[li].tail = p.output
            continue
        if k in ("bn", "act", "bias"):
            li = tensor_layer[src]
            d = drafts[li] if li >= 0 else None
            ok = d is not None and d.tail == src and consumers.get(src, 0) == 1 and d.act is None
            what = {"bn": "a batch-norm", "act": "an activation", "bias": "a bias add"}[k]
            if k in ("bn", "bias"):
                ok = ok and d.op in ("conv", "dwconv", "linear")
            if k == "bn":
                ok = ok and not d.bn_folded
            if not ok:
                raise UnsupportedOpError(
                    f"{_where(p, source)} is {what} that cannot be fused: it must directly follow the only use of "
                    f"a {'conv or linear layer' if k != 'act' else 'layer without an activation'}")
            if k == "bn":
                d.bn = d.bn_folded = True
            elif k == "bias":
                if d.op == "linear":
                    if d.bias:
                        raise UnsupportedOpError(f"{_where(p, source)} adds a second bias to a linear layer")
                    d.bias = True
                else:
                    d.bn = True
            else:
                d.act = p.attrs["act"]
            d.tail = p.output
            tensor_dim[p.output] = d_in
            tensor_layer[p.output] = li
            continue

        # ---- a layer ----
        shp = p.in_shape
        name = unique(p.name)
        if k == "conv":
            cin, cout, g = int(shp[1]), int(p.out_shape[1]), int(p.attrs["groups"])
            op = "dwconv" if g == cin == cout else "conv"
            if op == "dwconv":
                d_out = d_in
            else:
                d_out = uf.new()
                if g != 1:
                    fixed_dims.update((d_in, d_out))
            d = _Draft(name, op, cin, cout, int(shp[2]), int(shp[3]), p.attrs["kernel"], p.attrs["stride"],
                       p.attrs["padding"], g, bn=bool(p.attrs["bias"]), in_dim=d_in, out_dim=d_out)
        elif k == "linear":
            if len(shp) != 2:
                raise UnsupportedOpError(f"{_where(p, source)}: a linear layer on a {len(shp)}-D tensor "
                                         f"{tuple(shp)} (only [batch, features] is supported)")
            d_out = uf.new()
            d = _Draft(name, "linear", int(shp[1]), int(p.out_shape[-1]), 1, 1, bias=bool(p.attrs["bias"]),
                       in_dim=d_in, out_dim=d_out)
        elif k == "add":
            if len(p.inputs) < 2:
                raise UnsupportedOpError(f"{_where(p, source)}: an add needs two network tensors")
            shapes = p.attrs.get("shapes", [shp])
            if any(tuple(s) != tuple(p.out_shape) for s in shapes):
                raise UnsupportedOpError(f"{_where(p, source)}: a broadcasting add of shapes "
                                         f"{[tuple(s) for s in shapes]} is not a residual add")
            for t in p.inputs[1:]:
                d_in = uf.union(d_in, dim_of(p, t))
            h, w = (int(shp[2]), int(shp[3])) if len(shp) == 4 else (1, 1)
            d = _Draft(name, "add", int(shp[1]), int(shp[1]), h, w, in_dim=d_in, out_dim=d_in)
        elif k == "concat":
            for t in p.inputs:
                fixed_dims.add(dim_of(p, t))
            d_out = uf.new()
            fixed_dims.add(d_out)
            os_ = p.out_shape
            h, w = (int(os_[2]), int(os_[3])) if len(os_) == 4 else (1, 1)
            d = _Draft(name, "concat", int(os_[1]), int(os_[1]), h, w, in_dim=d_out, out_dim=d_out)
        elif k in ("gap", "avgpool", "maxpool"):
            if len(shp) != 4:
                raise UnsupportedOpError(f"{_where(p, source)}: pooling a {len(shp)}-D tensor is not supported")
            c = int(shp[1])
            d = _Draft(name, k, c, c, int(shp[2]), int(shp[3]), p.attrs.get("kernel", (1, 1)),
                       p.attrs.get("stride", (1, 1)), p.attrs.get("padding", (0, 0)), in_dim=d_in, out_dim=d_in)
        else:  # pragma: no cover - the lowerers only emit the kinds above
            raise UnsupportedOpError(f"{_where(p, source)} has unknown kind {k!r}")
        d.inputs = producers(p.inputs)
        d.tail = p.output
        drafts.append(d)
        tensor_dim[p.output] = d.out_dim
        tensor_layer[p.output] = len(drafts) - 1

    for t in outputs:
        if t not in tensor_dim:
            raise UnsupportedOpError(f"{source} output {t!r} does not come from the network input through "
                                     "supported layers")
        fixed_dims.add(tensor_dim[t])
    if not drafts:
        raise UnsupportedOpError(f"{source} graph holds no layer CompactNet can describe")

    # ---- name the groups in network order, check widths ----
    names: dict[int, str] = {uf.find(input_dim): INPUT_GROUP}
    widths: dict[str, int] = {INPUT_GROUP: int(input_shape[1])}
    order = [INPUT_GROUP]

    def group(dim: int, width: int, proposed: str) -> str:
        r = uf.find(dim)
        if r not in names:
            base, n = proposed, 0
            while proposed in widths:
                n += 1
                proposed = f"{base}@{n}"
            names[r] = proposed
            widths[proposed] = width
            order.append(proposed)
        g = names[r]
        if widths[g] != width:
            raise UnsupportedOpError(f"{source} graph couples tensors of {widths[g]} and {width} channels in "
                                     f"group {g!r}")
        return g

    layers = []
    for d in drafts:
        in_g = group(d.in_dim, d.cin, f"{d.name}.in")  # only a reshape's output is new here
        out_g = group(d.out_dim, d.cout, d.name)
        layers.append(d.to_spec(bias=d.bias if d.op == "linear" else False, in_group=in_g, out_group=out_g))
    fixed_roots = {uf.find(x) for x in fixed_dims}
    fixed = tuple(g for g in order if any(names.get(r) == g for r in fixed_roots))
    return NetworkSpec(architecture=architecture, input_shape=tuple(int(v) for v in input_shape),
                       layers=tuple(layers), groups=tuple((g, widths[g]) for g in order), fixed=fixed)


# ======================================================================================
# torch
# ======================================================================================
def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        return (int(v[0]), int(v[-1])) if len(v) else (0, 0)
    return int(v), int(v)


def _conv_padding(padding: Any, kernel: tuple[int, int], where: str) -> tuple[int, int]:
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0)
        if padding == "same" and kernel[0] % 2 and kernel[1] % 2:
            return (kernel[0] // 2, kernel[1] // 2)
        raise UnsupportedOpError(f"{where}: padding {padding!r} with kernel {kernel} is not symmetric")
    return _pair(padding)


_TORCH_ALIAS = {"flatten", "view", "reshape", "contiguous", "dropout", "dropout1d", "dropout2d", "dropout3d",
                "alpha_dropout", "feature_alpha_dropout", "identity", "clone", "detach", "squeeze", "unsqueeze"}


def _torch_act(name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str | None:
    """Activation kind of a functional/method call, or None if it is not one we fuse."""
    n = name.rstrip("_")
    if n == "relu":
        return "relu"
    if n in ("relu6", "sigmoid", "hardswish"):
        return n
    if n in ("hardtanh", "clamp", "clip"):
        lo_key, hi_key = ("min_val", "max_val") if n == "hardtanh" else ("min", "max")
        lo = kwargs.get(lo_key, args[1] if len(args) > 1 else (-1.0 if n == "hardtanh" else None))
        hi = kwargs.get(hi_key, args[2] if len(args) > 2 else (1.0 if n == "hardtanh" else None))
        if lo == 0 and hi == 6:
            return "relu6"
        if lo == 0 and hi is None:
            return "relu"
    return None


def _torch_prims(gm: Any) -> tuple[list[_Prim], str, list[str]]:
    """Lower a shape-propagated fx GraphModule to primitives."""
    import torch
    from torch import nn
    from torch.fx.passes.shape_prop import TensorMetadata

    modules = dict(gm.named_modules())
    active: dict[str, tuple[int, ...]] = {}
    consts: set[str] = set()
    prims: list[_Prim] = []
    input_tensor = ""
    outputs: list[str] = []

    def shape_of(node: Any) -> tuple[int, ...] | None:
        meta = node.meta.get("tensor_meta")
        return tuple(int(s) for s in meta.shape) if isinstance(meta, TensorMetadata) else None

    def scope(node: Any, kind: str) -> str:
        stack = node.meta.get("nn_module_stack") or {}
        if stack:
            last = list(stack.values())[-1]
            path = last[0] if isinstance(last, tuple) else list(stack)[-1].split("@")[0]
            return f"{path}.{kind}" if path else kind
        return node.name

    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if input_tensor:
                raise UnsupportedOpError(f"torch model takes more than one input ({node.name!r}); "
                                         "only single-image-input networks are supported")
            input_tensor = node.name
            active[node.name] = shape_of(node) or ()
            continue
        if node.op == "get_attr":
            consts.add(node.name)
            continue
        if node.op == "output":
            def collect(a: Any) -> None:
                if isinstance(a, (list, tuple)):
                    for x in a:
                        collect(x)
                elif isinstance(a, dict):
                    for x in a.values():
                        collect(x)
                elif hasattr(a, "name") and a.name in active:
                    outputs.append(a.name)
            collect(node.args)
            continue

        act_in = [a.name for a in node.all_input_nodes if a.name in active]
        if not act_in:
            consts.add(node.name)  # shape arithmetic or constants
            continue
        out_shape = shape_of(node)
        if node.op == "call_module":
            mod = modules[node.target]
            op_type = type(mod).__name__
            target_name = str(node.target)
        else:
            mod = None
            target = node.target
            op_type = target if isinstance(target, str) else getattr(target, "__name__", str(target))
            target_name = op_type
        where = (f"torch op {op_type!r} at module {target_name!r} (fx node {node.name!r})" if mod is not None
                 else f"torch op {op_type!r} at node {node.name!r}")
        if out_shape is None:
            if node.op == "call_method" and node.target in ("size", "dim") or op_type in ("getattr",):
                continue  # shape queries
            raise UnsupportedOpError(f"{where}: it does not return one tensor (tuple outputs are not supported)")
        in_shape = active[act_in[0]]
        args = list(node.args)
        kwargs = dict(node.kwargs)
        kind: str | None = None
        attrs: dict = {}
        name = scope(node, op_type.lower()) if mod is None else target_name

        if mod is not None:
            if isinstance(mod, nn.Conv2d):
                if tuple(mod.dilation) != (1, 1):
                    raise UnsupportedOpError(f"{where}: dilated convolutions are not supported")
                if mod.padding_mode != "zeros":
                    raise UnsupportedOpError(f"{where}: padding mode {mod.padding_mode!r} is not supported")
                kernel = _pair(mod.kernel_size)
                kind, attrs = "conv", {"kernel": kernel, "stride": _pair(mod.stride),
                                       "padding": _conv_padding(mod.padding, kernel, where),
                                       "groups": int(mod.groups), "bias": mod.bias is not None}
            elif isinstance(mod, (nn.BatchNorm2d, nn.BatchNorm1d)):
                kind = "bn"
            elif isinstance(mod, nn.ReLU):
                kind, attrs = "act", {"act": "relu"}
            elif isinstance(mod, nn.ReLU6):
                kind, attrs = "act", {"act": "relu6"}
            elif isinstance(mod, nn.Hardtanh) and mod.min_val == 0 and mod.max_val == 6:
                kind, attrs = "act", {"act": "relu6"}
            elif isinstance(mod, nn.Sigmoid):
                kind, attrs = "act", {"act": "sigmoid"}
            elif isinstance(mod, nn.Hardswish):
                kind, attrs = "act", {"act": "hardswish"}
            elif isinstance(mod, nn.Linear):
                kind, attrs = "linear", {"bias": mod.bias is not None}
            elif isinstance(mod, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
                out_hw = tuple(out_shape[2:])
                if out_hw == (1, 1):
                    if isinstance(mod, nn.AdaptiveAvgPool2d):
                        kind = "gap"
                    else:
                        kind, attrs = "maxpool", {"kernel": tuple(in_shape[2:4]), "stride": tuple(in_shape[2:4])}
                elif out_hw == tuple(in_shape[2:]):
                    kind = "alias"
                else:
                    raise UnsupportedOpError(f"{where}: adaptive pooling to {out_hw} is not supported "
                                             "(only to 1x1)")
            elif isinstance(mod, (nn.AvgPool2d, nn.MaxPool2d)):
                if isinstance(mod, nn.MaxPool2d) and _pair(mod.dilation) != (1, 1):
                    raise UnsupportedOpError(f"{where}: dilated pooling is not supported")
                kernel = _pair(mod.kernel_size)
                kind = "avgpool" if isinstance(mod, nn.AvgPool2d) else "maxpool"
                attrs = {"kernel": kernel, "stride": _pair(mod.stride or kernel), "padding": _pair(mod.padding)}
            elif isinstance(mod, (nn.Flatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                                  nn.AlphaDropout, nn.Identity)):
                kind = "alias"
        else:
            fname = op_type
            base = fname.rstrip("_")
            if fname in ("add", "iadd", "add_") or target_name == "add":
                if len(act_in) >= 2:
                    kind = "add"
                    attrs = {"shapes": [active[t] for t in act_in]}
                elif any(getattr(a, "name", None) in consts for a in node.all_input_nodes):
                    kind = "bias"
                name = scope(node, "add")
            elif base in ("cat", "concat", "concatenate"):
                dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
                if dim < 0:
                    dim += len(out_shape)
                if dim != 1 or len(act_in) != len(node.all_input_nodes):
                    raise UnsupportedOpError(f"{where}: only channel concatenation of network tensors is "
                                             f"supported (got dim={dim})")
                kind = "concat"
                name = scope(node, "cat")
            elif base in _TORCH_ALIAS:
                kind = "alias"
            elif _torch_act(fname, args, kwargs):
                kind, attrs = "act", {"act": _torch_act(fname, args, kwargs)}
            elif base == "adaptive_avg_pool2d":
                if tuple(out_shape[2:]) == (1, 1):
                    kind = "gap"
                elif tuple(out_shape[2:]) == tuple(in_shape[2:]):
                    kind = "alias"
            elif base == "mean":
                dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
                dims = {int(x) % len(in_shape) for x in (dims if isinstance(dims, (list, tuple)) else [dims])} \
                    if dims is not None else set()
                if len(in_shape) == 4 and dims == {2, 3}:
                    kind = "gap"
                    name = scope(node, "mean")
            elif base in ("avg_pool2d", "max_pool2d"):
                ks = _pair(kwargs.get("kernel_size", args[1] if len(args) > 1 else 1))
                st = kwargs.get("stride", args[2] if len(args) > 2 else None)
                pd = kwargs.get("padding", args[3] if len(args) > 3 else 0)
                kind = "avgpool" if base.startswith("avg") else "maxpool"
                attrs = {"kernel": ks, "stride": _pair(st) if st else ks, "padding": _pair(pd)}
            elif base == "linear":
                kind = "linear"
                attrs = {"bias": (len(args) > 2 and args[2] is not None) or kwargs.get("bias") is not None}
        if kind is None:
            raise UnsupportedOpError(f"{where} cannot be described as a layer (supported: Conv2d, BatchNorm, "
                                     "ReLU/ReLU6/Sigmoid/Hardswish, Linear, add, cat, pools, global mean, "
                                     "flatten/reshape/dropout/identity)")
        inputs = tuple(act_in) if kind in ("add", "concat") else (act_in[0],)
        prims.append(_Prim(name, op_type, kind, inputs, node.name, in_shape, out_shape, attrs))
        active[node.name] = out_shape
    if not input_tensor:
        raise UnsupportedOpError("torch model has no input")
    return prims, input_tensor, outputs


def network_spec_from_torch(model: Any, input_shape: Sequence[int] = (1, 3, 32, 32),
                            architecture: str | None = None) -> NetworkSpec:
    """Extract the fused layers and channel groups of a torch module by tracing it.

    Traces with ``torch.fx.symbolic_trace`` and propagates shapes with ``ShapeProp`` on a zero
    input (in eval mode and without gradients; the module's training flag is restored).

    Args:
        model: An ``nn.Module`` taking one NCHW image tensor.
        input_shape: NCHW input shape.
        architecture: Name recorded in the spec; default: the registry name of a registered model,
            else the class name in lower case.

    Returns:
        The network's :class:`NetworkSpec`.

    Raises:
        UnsupportedOpError: An operation the spec cannot describe (naming the op and the fx node),
            or a model torch.fx cannot trace.
    """
    import torch
    from torch import fx
    from torch.fx.passes.shape_prop import ShapeProp

    if architecture is None:
        from compactnet.models import model_name_of

        try:
            architecture = model_name_of(model)
        except ConfigError:
            architecture = type(model).__name__.lower()
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 4 or min(shape) < 1:
        raise bad_value("input_shape", "an NCHW shape of positive sizes, e.g. (1, 3, 32, 32)", input_shape)
    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:  # fx raises TraceError, TypeError, NotImplementedError, ... on dynamic code
        raise UnsupportedOpError(f"torch.fx cannot trace {type(model).__name__}: {exc}") from exc
    try:
        param = next(model.parameters())
        device, dtype = param.device, param.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    was_training = model.training
    model.eval()
    gm.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(torch.zeros(shape, device=device, dtype=dtype))
    except RuntimeError as exc:
        raise ConfigError(f"{type(model).__name__} does not run on input_shape {shape}: {exc}") from exc
    finally:
        model.train(was_training)
    prims, input_tensor, outputs = _torch_prims(gm)
    return _assemble(prims, input_tensor, shape, outputs, architecture, "torch")


# ======================================================================================
# ONNX
# ======================================================================================
def _load_onnx(path_or_model: Any) -> Any:
    import onnx
    from google.protobuf.message import DecodeError

    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model, "ONNX model"
    if isinstance(path_or_model, (bytes, bytearray)):
        data, where = bytes(path_or_model), "ONNX bytes"
    else:
        p = Path(os.fspath(path_or_model))
        where = f"ONNX file {p}"
        if not p.is_file():
            raise ModelFileError(f"{where} does not exist")
        data = p.read_bytes()
    if not data:
        raise ModelFileError(f"{where} is empty")
    try:
        model = onnx.load_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{where} is not a readable ONNX model (truncated or corrupt: {exc})") from exc
    if not model.graph.node:
        raise ModelFileError(f"{where} holds no graph (truncated or not an ONNX file)")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelFileError(f"{where} is not a valid ONNX model (truncated or corrupt: {first})") from exc
    return model, where


def _attr(node: Any, name: str, default: Any = None) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _sym_pads(pads: Sequence[int] | None, where: str) -> tuple[int, int]:
    if not pads:
        return (0, 0)
    pads = [int(x) for x in pads]
    if len(pads) != 4 or pads[0] != pads[2] or pads[1] != pads[3]:
        raise UnsupportedOpError(f"{where}: asymmetric padding {pads} is not supported")
    return (pads[0], pads[1])


def _auto_pads(node: Any, in_hw: Sequence[int], kernel: Sequence[int], stride: Sequence[int], where: str,
               pads: Sequence[int] | None) -> tuple[int, int]:
    mode = _attr(node, "auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if mode in ("NOTSET", ""):
        return _sym_pads(pads, where)
    if mode == "VALID":
        return (0, 0)
    out = []
    for i, k, s in zip(in_hw, kernel, stride):
        total = max((math.ceil(i / s) - 1) * s + k - i, 0)
        if total % 2:
            raise UnsupportedOpError(f"{where}: auto_pad {mode} gives asymmetric padding")
        out.append(total // 2)
    return (out[0], out[1])


def network_spec_from_onnx(path_or_model: Any, architecture: str | None = None) -> NetworkSpec:
    """Extract the fused layers and channel groups of an ONNX graph after shape inference.

    BatchNormalization is folded into the conv or linear before it, Relu / Clip(0, 6) / Sigmoid /
    HardSwish into the layer before them; Gemm and MatMul (+ a constant Add) become ``linear``;
    GlobalAveragePool and ReduceMean over H, W become ``gap``; Flatten, Reshape, Identity, Dropout,
    Squeeze and Unsqueeze are skipped; constant and shape sub-graphs are ignored.

    Args:
        path_or_model: Path of an ``.onnx`` file, its bytes, or an ``onnx.ModelProto``.
        architecture: Name recorded in the spec; default: the model's ``architecture`` metadata
            entry if it has one, else ``onnx``.

    Returns:
        The network's :class:`NetworkSpec`.

    Raises:
        ModelFileError: The file is missing, truncated, corrupt or its shapes cannot be inferred.
        UnsupportedOpError: A node the spec cannot describe (naming its op type and node name).
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model, where_file = _load_onnx(path_or_model)
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError) as exc:
        raise ModelFileError(f"{where_file}: shape inference failed ({exc})") from exc
    g = model.graph
    if architecture is None:
        meta = {p.key: p.value for p in model.metadata_props}
        architecture = meta.get("architecture") or meta.get("compactnet.architecture") or "onnx"

    def dims(vi: Any) -> tuple[int, ...] | None:
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            return None
        return tuple(int(d.dim_value) if d.HasField("dim_value") else 1 for d in t.shape.dim)

    shapes: dict[str, tuple[int, ...]] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        s = dims(vi)
        if s is not None:
            shapes[vi.name] = s
    values: dict[str, Any] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    consts: set[str] = set(values)
    image_inputs = [vi for vi in g.input if vi.name not in consts]
    if len(image_inputs) != 1:
        raise ModelFileError(f"{where_file} has {len(image_inputs)} non-constant inputs; "
                             "only single-image-input networks are supported")
    input_name = image_inputs[0].name
    input_shape = shapes.get(input_name)
    if input_shape is None or len(input_shape) != 4:
        raise ModelFileError(f"{where_file}: input {input_name!r} is not an NCHW tensor (shape {input_shape})")
    active: set[str] = {input_name}
    prims: list[_Prim] = []

    def const_value(name: str) -> Any:
        return values.get(name)

    for idx, node in enumerate(g.node):
        nname = node.name or f"{node.op_type}_{idx}"
        op = node.op_type
        where = f"ONNX op {op!r} at node {nname!r}"
        act_in = [i for i in node.input if i in active]
        if not act_in:
            # constant sub-graph: keep values we can read (Constant, Identity of a constant)
            if op == "Constant":
                t = _attr(node, "value")
                if t is not None:
                    values[node.output[0]] = numpy_helper.to_array(t)
            elif op == "Identity" and node.input and node.input[0] in values:
                values[node.output[0]] = values[node.input[0]]
            consts.update(o for o in node.output if o)
            continue
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedOpError(f"{where} (domain {node.domain!r}) cannot be described as a layer")
        if op in ("Shape", "Size"):
            consts.update(node.output)
            continue
        out = node.output[0]
        if out not in shapes:
            raise ModelFileError(f"{where_file}: shape inference did not give the shape of {out!r} ({where})")
        out_shape = shapes[out]
        in_shape = shapes.get(act_in[0])
        if in_shape is None:
            raise ModelFileError(f"{where_file}: shape inference did not give the shape of {act_in[0]!r}")
        kind: str | None = None
        attrs: dict = {}
        inputs: tuple[str, ...] = (act_in[0],)

        if op == "Conv":
            if len(in_shape) != 4 or node.input[0] != act_in[0] or node.input[1] in active:
                raise UnsupportedOpError(f"{where}: only 2-D convolutions with constant weights are supported")
            kernel_attr = _attr(node, "kernel_shape")
            if kernel_attr:
                kernel = tuple(int(k) for k in kernel_attr)
            else:
                w_value = const_value(node.input[1])
                w_shape = shapes.get(node.input[1]) or (tuple(np.shape(w_value)) if w_value is not None else None)
                if not w_shape or len(w_shape) != 4:
                    raise UnsupportedOpError(
                        f"{where}: the kernel size is unknown (no kernel_shape attribute, and weight "
                        f"{node.input[1]!r} has neither an inferred shape nor a constant value)")
                kernel = tuple(int(k) for k in w_shape[2:])
            stride = tuple(int(s) for s in (_attr(node, "strides") or (1, 1)))
            if any(int(d) != 1 for d in (_attr(node, "dilations") or ())):
                raise UnsupportedOpError(f"{where}: dilated convolutions are not supported")
            kind = "conv"
            attrs = {"kernel": kernel, "stride": stride,
                     "padding": _auto_pads(node, in_shape[2:], kernel, stride, where, _attr(node, "pads")),
                     "groups": int(_attr(node, "group", 1)), "bias": len(node.input) > 2 and bool(node.input[2])}
        elif op == "BatchNormalization":
            kind = "bn"
        elif op == "Relu":
            kind, attrs = "act", {"act": "relu"}
        elif op == "Sigmoid":
            kind, attrs = "act", {"act": "sigmoid"}
        elif op == "HardSwish":
            kind, attrs = "act", {"act": "hardswish"}
        elif op == "Clip":
            lo = _attr(node, "min")
            hi = _attr(node, "max")
            if len(node.input) > 1 and node.input[1]:
                v = const_value(node.input[1])
                lo = None if v is None else float(np.asarray(v).reshape(-1)[0])
            if len(node.input) > 2 and node.input[2]:
                v = const_value(node.input[2])
                hi = None if v is None else float(np.asarray(v).reshape(-1)[0])
            if lo == 0 and hi == 6:
                kind, attrs = "act", {"act": "relu6"}
            elif lo == 0 and hi is None:
                kind, attrs = "act", {"act": "relu"}
            else:
                raise UnsupportedOpError(f"{where}: Clip({lo}, {hi}) is not a supported activation "
                                         "(only Clip(0, 6) = ReLU6)")
        elif op == "Gemm":
            if int(_attr(node, "transA", 0)) or node.input[0] != act_in[0] or node.input[1] in active:
                raise UnsupportedOpError(f"{where}: only x @ W (+ b) with constant weights is supported")
            kind, attrs = "linear", {"bias": len(node.input) > 2 and bool(node.input[2])}
        elif op == "MatMul":
            if node.input[0] != act_in[0] or node.input[1] in active or len(in_shape) != 2:
                raise UnsupportedOpError(f"{where}: only a [batch, features] x constant-matrix MatMul is supported")
            kind, attrs = "linear", {"bias": False}
        elif op in ("Add", "Sum"):
            if len(act_in) >= 2:
                kind, inputs = "add", tuple(act_in)
                attrs = {"shapes": [shapes.get(t, ()) for t in act_in]}
            elif op == "Add":
                kind = "bias"
        elif op == "Concat":
            axis = int(_attr(node, "axis", 1))
            if axis < 0:
                axis += len(out_shape)
            if axis != 1 or len(act_in) != len([i for i in node.input if i]):
                raise UnsupportedOpError(f"{where}: only channel concatenation of network tensors is supported "
                                         f"(axis {axis})")
            kind, inputs = "concat", tuple(act_in)
        elif op == "GlobalAveragePool":
            kind = "gap"
        elif op == "GlobalMaxPool":
            kind, attrs = "maxpool", {"kernel": tuple(in_shape[2:4]), "stride": tuple(in_shape[2:4])}
        elif op == "ReduceMean":
            axes = _attr(node, "axes")
            if axes is None and len(node.input) > 1 and node.input[1]:
                v = const_value(node.input[1])
                axes = None if v is None else [int(a) for a in np.asarray(v).reshape(-1)]
            if axes is not None and len(in_shape) == 4 and {int(a) % 4 for a in axes} == {2, 3}:
                kind = "gap"
            else:
                raise UnsupportedOpError(f"{where}: ReduceMean over axes {axes} is not a global average pool")
        elif op in ("AveragePool", "MaxPool"):
            if len(in_shape) != 4:
                raise UnsupportedOpError(f"{where}: only 2-D pooling is supported")
            if any(int(d) != 1 for d in (_attr(node, "dilations") or ())):
                raise UnsupportedOpError(f"{where}: dilated pooling is not supported")
            kernel = tuple(int(k) for k in _attr(node, "kernel_shape"))
            stride = tuple(int(s) for s in (_attr(node, "strides") or (1, 1)))
            kind = "avgpool" if op == "AveragePool" else "maxpool"
            attrs = {"kernel": kernel, "stride": stride,
                     "padding": _auto_pads(node, in_shape[2:], kernel, stride, where, _attr(node, "pads"))}
        elif op in ("Flatten", "Reshape", "Identity", "Dropout", "Squeeze", "Unsqueeze"):
            kind = "alias"
        if kind is None:
            raise UnsupportedOpError(f"{where} cannot be described as a layer (supported: Conv, "
                                     "BatchNormalization, Relu, Clip(0,6), Sigmoid, HardSwish, Gemm, MatMul(+Add), "
                                     "Add, Concat, GlobalAveragePool, ReduceMean over H,W, AveragePool, MaxPool, "
                                     "Flatten/Reshape/Identity/Dropout)")
        prims.append(_Prim(nname, op, kind, inputs, out, tuple(in_shape), tuple(out_shape), attrs))
        active.add(out)
    outputs = [o.name for o in g.output if o.name in active]
    return _assemble(prims, input_name, input_shape, outputs, architecture, "ONNX")


def network_spec(source: Any, **kwargs: Any) -> NetworkSpec:
    """Dispatch: a torch module to :func:`network_spec_from_torch`, anything else to :func:`network_spec_from_onnx`."""
    try:
        from torch import nn
    except ImportError:  # pragma: no cover
        nn = None
    if nn is not None and isinstance(source, nn.Module):
        return network_spec_from_torch(source, **kwargs)
    return network_spec_from_onnx(source, **kwargs)


# ======================================================================================
# Comparing specs
# ======================================================================================
def layer_differences(a: NetworkSpec, b: NetworkSpec) -> list[str]:
    """Differences between two specs' layers, ignoring layer and group *names*.

    Compares, in order: every layer's :meth:`LayerSpec.key` (op, channels, input size, kernel,
    stride, padding, groups, expansion, bn, act, bias, residual); the wiring (``inputs`` as layer
    positions); and the group structure: the group names of one spec must map one-to-one onto the
    other's (for in/out/hidden groups alike), with the same widths and the same fixed set.

    Returns:
        Human-readable differences (empty when the specs describe the same network).
    """
    diffs: list[str] = []
    if tuple(a.input_shape) != tuple(b.input_shape):
        diffs.append(f"input shape {a.input_shape} != {b.input_shape}")
    if len(a.layers) != len(b.layers):
        diffs.append(f"{len(a.layers)} layers != {len(b.layers)} layers")
    pos_a = {l.name: i for i, l in enumerate(a.layers)}
    pos_b = {l.name: i for i, l in enumerate(b.layers)}
    fwd: dict[str, str] = {}
    back: dict[str, str] = {}
    wa, wb = a.group_widths, b.group_widths

    def tie(ga: str, gb: str, where: str) -> None:
        if not ga and not gb:
            return
        if fwd.setdefault(ga, gb) != gb or back.setdefault(gb, ga) != ga:
            diffs.append(f"{where}: group {ga!r} pairs with both {fwd[ga]!r} and {gb!r} (or {back[gb]!r})")
        elif wa.get(ga) != wb.get(gb):
            diffs.append(f"{where}: group width {wa.get(ga)} != {wb.get(gb)}")

    for i, (la, lb) in enumerate(zip(a.layers, b.layers)):
        where = f"layer {i} ({la.name} / {lb.name})"
        if la.key() != lb.key():
            diffs.append(f"{where}: {la.key()} != {lb.key()}")
        ia = tuple(pos_a.get(n, -1) for n in la.inputs)
        ib = tuple(pos_b.get(n, -1) for n in lb.inputs)
        if ia != ib:
            diffs.append(f"{where}: fed by layers {ia} != {ib}")
        for attr in ("in_group", "out_group", "hidden_group"):
            tie(getattr(la, attr), getattr(lb, attr), f"{where} {attr}")
    fa = {fwd.get(g, "?" + g) for g in a.fixed}
    if fa != set(b.fixed):
        diffs.append(f"fixed groups {sorted(a.fixed)} do not correspond to {sorted(b.fixed)}")
    if len(wa) != len(wb):
        diffs.append(f"{len(wa)} groups != {len(wb)} groups")
    return diffs


def same_layers(a: NetworkSpec, b: NetworkSpec) -> bool:
    """Whether two specs describe the same network up to layer and group names (see :func:`layer_differences`)."""
    return not layer_differences(a, b)


# ======================================================================================
# Channel configurations of the registered models -> group widths
# ======================================================================================
def _convs(spec: NetworkSpec, model_name: str, expected: int) -> list[LayerSpec]:
    convs = [l for l in spec.layers if l.op == "conv"]
    if len(convs) != expected:
        raise ConfigError(f"the spec ({spec.architecture}, {len(convs)} plain convs) does not have the layer "
                          f"structure of {model_name} ({expected} plain convs)")
    return convs


def _check_classifier(spec: NetworkSpec, num_classes: int) -> None:
    linear = [l for l in spec.layers if l.op == "linear"]
    if linear and linear[-1].cout != int(num_classes):
        raise bad_value("num_classes", f"{linear[-1].cout} (the spec's classifier output is fixed)", num_classes)


def _assign(out: dict[str, int], group: str, width: int, what: str) -> None:
    if out.get(group, width) != width:
        raise ConfigError(f"channel configuration gives group {group!r} two widths ({out[group]} and {width}) at "
                          f"{what}; layers joined by residual adds must share one width")
    out[group] = int(width)


def groups_for_config(model_name: str, spec: NetworkSpec, config: Any = None) -> dict[str, int]:
    """Map a registered model's channel configuration onto the group widths of its spec.

    The spec must have been extracted from that model (any configuration, torch or ONNX): the
    mapping follows its layer order, so ``spec.with_channels(groups_for_config(name, spec, cfg))``
    equals the spec extracted from ``create_model(name, cfg)``.

    * ``mobilenetv2``: stem conv -> ``widths[0]``; block i's projection -> ``widths[i+1]``; block i's
      expansion conv -> ``hidden_widths()[i]`` (6x its input width unless ``hidden`` is given);
      the 1x1 conv -> ``last``.
    * ``resnet20``: stem conv and each block's second conv (and shortcut) -> its stage width;
      each block's first conv -> its ``inner`` width.
    * ``vgg16``: conv i -> ``widths[i]``.

    Args:
        model_name: Registry name.
        spec: A spec of that model.
        config: Anything :func:`compactnet.models.parse_channels` accepts (None: the default).

    Returns:
        ``{group name: width}`` for every trimmable group the configuration determines.

    Raises:
        ConfigError: The configuration does not fit the model, or the spec is not of that model.
    """
    from compactnet.models import get_entry, parse_channels

    entry = get_entry(model_name)
    cfg = parse_channels(entry.name, config)
    out: dict[str, int] = {}
    if entry.name == "mobilenetv2":
        from compactnet.models.mobilenetv2 import block_plan

        plan = block_plan()
        n_exp = sum(1 for t, _s, _st in plan if t != 1)
        convs = _convs(spec, entry.name, 1 + len(plan) + n_exp + 1)
        hidden = cfg.hidden_widths()
        _assign(out, convs[0].out_group, cfg.widths[0], convs[0].name)
        i = 1
        for b, (t, _s, _st) in enumerate(plan):
            if t != 1:
                _assign(out, convs[i].out_group, hidden[b], convs[i].name)
                i += 1
            _assign(out, convs[i].out_group, cfg.widths[b + 1], convs[i].name)
            i += 1
        _assign(out, convs[i].out_group, cfg.last, convs[i].name)
    elif entry.name == "resnet20":
        from compactnet.models.resnet import BLOCKS_PER_STAGE

        n_blocks = len(cfg.stages) * BLOCKS_PER_STAGE
        convs = _convs(spec, entry.name, 1 + 2 * n_blocks + (len(cfg.stages) - 1))
        inner = cfg.inner_widths()
        _assign(out, convs[0].out_group, cfg.stages[0], convs[0].name)
        i = 1
        for s, width in enumerate(cfg.stages):
            for b in range(BLOCKS_PER_STAGE):
                _assign(out, convs[i].out_group, inner[s * BLOCKS_PER_STAGE + b], convs[i].name)
                _assign(out, convs[i + 1].out_group, width, convs[i + 1].name)
                i += 2
                if s > 0 and b == 0:  # projection shortcut
                    _assign(out, convs[i].out_group, width, convs[i].name)
                    i += 1
    elif entry.name == "vgg16":
        convs = _convs(spec, entry.name, len(cfg.widths))
        for layer, width in zip(convs, cfg.widths):
            _assign(out, layer.out_group, width, layer.name)
    else:  # pragma: no cover - every registered model is handled above
        raise bad_value("model_name", "mobilenetv2, resnet20 or vgg16", model_name)
    _check_classifier(spec, getattr(cfg, "num_classes", 10))
    fixed = set(spec.fixed)
    widths = spec.group_widths
    for g, w in out.items():
        if g in fixed and widths[g] != w:
            raise ConfigError(f"channel configuration changes group {g!r} to {w}, but it is fixed at {widths[g]}")
    return {g: w for g, w in out.items() if g not in fixed}


def random_config(model_name: str, rng: Any = None, low: float = 0.3, high: float = 1.0, base: Any = None) -> Any:
    """A random valid trim of a registered model's channel configuration.

    Each independent width of ``base`` (default: the untrimmed model) is scaled by a factor drawn
    uniformly from ``[low, high]`` and rounded (at least 1): per stage for MobileNetV2's block widths
    (blocks of a stage share one width) and its last conv, expansion widths derived as in the paper;
    per stage and per block inner width for ResNet-20; per conv for VGG-16. Used to pick networks
    spanning the sizes a search visits, e.g. to calibrate a latency predictor on whole networks.

    Args:
        model_name: Registry name.
        rng: A ``numpy.random.Generator`` or a seed.
        low: Smallest width factor (0 < low <= high <= 1).
        high: Largest width factor.
        base: Configuration to trim (anything :func:`compactnet.models.parse_channels` accepts).

    Returns:
        The model's configuration object (e.g. a ``MobileNetV2Config``).

    Raises:
        ConfigError: An unknown model or factors outside ``0 < low <= high``.
    """
    import numpy as np

    from compactnet.models import get_entry, parse_channels

    if not 0 < low <= high:
        raise bad_value("low/high", "0 < low <= high", (low, high))
    entry = get_entry(model_name)
    cfg = parse_channels(entry.name, base)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)

    def scaled(widths: Sequence[int], factors: Sequence[float]) -> tuple[int, ...]:
        return tuple(max(1, int(round(w * f))) for w, f in zip(widths, factors))

    if entry.name == "mobilenetv2":
        from compactnet.models.mobilenetv2 import stage_of_width_index

        stages = stage_of_width_index()
        per_stage = {st: float(gen.uniform(low, high)) for st in sorted(set(stages))}
        return replace(cfg, widths=scaled(cfg.widths, [per_stage[st] for st in stages]), hidden=None,
                        last=max(1, int(round(cfg.last * gen.uniform(low, high)))))
    if entry.name == "resnet20":
        inner = cfg.inner_widths()
        return replace(cfg, stages=scaled(cfg.stages, gen.uniform(low, high, len(cfg.stages))),
                        inner=scaled(inner, gen.uniform(low, high, len(inner))))
    if entry.name == "vgg16":
        return replace(cfg, widths=scaled(cfg.widths, gen.uniform(low, high, len(cfg.widths))))
    raise bad_value("model_name", "mobilenetv2, resnet20 or vgg16", model_name)  # pragma: no cover


@functools.lru_cache(maxsize=16)
def _base_spec(name: str, num_classes: int) -> NetworkSpec:
    from compactnet.models import create_model, get_entry

    entry = get_entry(name)
    cfg = entry.config_cls(num_classes=num_classes)
    return network_spec_from_torch(create_model(entry.name, cfg), entry.input_shape, architecture=entry.name)


@functools.lru_cache(maxsize=4096)
def _spec_for_config(name: str, cfg: Any) -> NetworkSpec:
    base = _base_spec(name, int(getattr(cfg, "num_classes", 10)))
    return base.with_channels(groups_for_config(name, base, cfg))


def spec_for(model_name: str, channels: Any = None) -> NetworkSpec:
    """Spec of a registered model at a channel configuration, without building its torch modules.

    The default model is traced once per process (and per ``num_classes``); a configuration is then
    applied with :meth:`NetworkSpec.with_channels`. Results are cached per configuration.

    Args:
        model_name: Registry name (``mobilenetv2``, ``resnet20``, ``vgg16``).
        channels: Anything :func:`compactnet.models.parse_channels` accepts (None: the default).

    Raises:
        ConfigError: Unknown model or a configuration that does not fit it.
    """
    from compactnet.models import get_entry, parse_channels

    entry = get_entry(model_name)
    cfg = parse_channels(entry.name, channels)
    try:
        hash(cfg)
    except TypeError:  # pragma: no cover - the registered configs are frozen dataclasses of tuples
        base = _base_spec(entry.name, int(getattr(cfg, "num_classes", 10)))
        return base.with_channels(groups_for_config(entry.name, base, cfg))
    return _spec_for_config(entry.name, cfg)


# ======================================================================================
# MobileNetV2 units (the paper's 18 layers)
# ======================================================================================
def mobilenetv2_units(spec_or_config: Any = None, include_last: bool = True,
                      include_head: bool = False) -> tuple[LayerSpec, ...]:
    """The paper's units of the Table-1 MobileNetV2: the stem conv and the 17 inverted-residual blocks.

    Each block is one ``block`` LayerSpec: ``cin``/``cout`` its input/output widths, ``h``/``w``
    its input size, ``stride`` its depthwise stride, ``expansion`` its hidden width (for block 1,
    which has no expansion conv, the hidden width equals ``cin``), ``residual`` whether it ends
    with an add, ``bn=True``, ``act='relu6'`` (the activation inside the block; the projection
    is linear), and ``in_group``/``out_group``/``hidden_group`` from the spec, so
    ``with_channels`` applies to the units too.

    The 320 -> 1280 conv is returned as its own ``conv`` unit (``last_conv``) after the 17 blocks,
    not merged into block 17 as the paper's public simulator counts it: a ``block`` LayerSpec has
    no place for it, and its latency is measured and summed separately. Pass
    ``include_last=False`` for exactly the 18 units.

    Args:
        spec_or_config: A MobileNetV2 :class:`NetworkSpec` (extracted from torch or ONNX, any
            widths), or a channel configuration for :func:`spec_for` (None: Table 1).
        include_last: Append the final 1x1 conv as unit ``last_conv``.
        include_head: Also append the global average pool (``gap``) and the ``classifier``.

    Returns:
        Units named ``stem``, ``block1`` ... ``block17`` (, ``last_conv``, ``gap``, ``classifier``),
        each naming the previous one in ``inputs``.

    Raises:
        ConfigError: The spec does not have the Table-1 MobileNetV2 structure.
    """
    from compactnet.models.mobilenetv2 import block_plan

    spec = spec_or_config if isinstance(spec_or_config, NetworkSpec) else spec_for("mobilenetv2", spec_or_config)
    layers = list(spec.layers)
    pos = 0

    def take(*ops: str) -> LayerSpec:
        nonlocal pos
        if pos >= len(layers) or layers[pos].op not in ops:
            got = layers[pos].op if pos < len(layers) else "the end"
            raise ConfigError(f"the spec ({spec.architecture}) does not have the Table-1 MobileNetV2 structure: "
                              f"layer {pos} is {got}, expected {'/'.join(ops)}")
        pos += 1
        return layers[pos - 1]

    stem = take("conv")
    units: list[LayerSpec] = [replace(stem, name="stem", inputs=())]
    prev = "stem"
    for b, (t, s, _stage) in enumerate(block_plan()):
        expand = take("conv") if t != 1 else None
        dw = take("dwconv")
        proj = take("conv")
        residual = pos < len(layers) and layers[pos].op == "add" and proj.name in layers[pos].inputs
        if residual:
            take("add")
        head = expand or dw
        units.append(LayerSpec(
            name=f"block{b + 1}", op="block", cin=head.cin, cout=proj.cout, h=head.h, w=head.w, kernel=(3, 3),
            stride=dw.stride, padding=dw.padding, groups=1, expansion=dw.cin, bn=True, act=dw.act,
            bias=False, residual=residual, in_group=head.in_group, out_group=proj.out_group,
            hidden_group=dw.in_group, inputs=(prev,)))
        prev = f"block{b + 1}"
    if include_last or include_head:
        last = take("conv")
        if include_last:
            units.append(replace(last, name="last_conv", inputs=(prev,)))
            prev = "last_conv"
        if include_head:
            gap = take("gap")
            units.append(replace(gap, name="gap", inputs=(prev,)))
            fc = take("linear")
            units.append(replace(fc, name="classifier", inputs=("gap",)))
    return tuple(units)


__all__ = ["network_spec_from_torch", "network_spec_from_onnx", "network_spec", "same_layers",
           "layer_differences", "groups_for_config", "spec_for", "random_config", "mobilenetv2_units", "INPUT_GROUP"]
