"""Retraining-free weight sharing (Dupuis et al., ASP-DAC 2022) with a heuristic exploration.

Per layer (every ``Conv2d`` and ``Linear`` weight), the weights are clustered to ``k`` shared values
by a deterministic 1-D k-means (quantile initialisation, Lloyd iterations on the sorted values: no
randomness, no retraining). Each weight is then stored as a ``ceil(log2 k)``-bit index into a float32
codebook. The number of shared values per layer is the design space; :func:`explore` searches it
with the paper's heuristic:

1. **uniform sweep**: the smallest number of bits ``b`` (``k = 2**b``) that, used in every layer,
   keeps validation top-1 >= ``tolerance`` (99%, MLPerf's rule) of the uncompressed model's,
   evaluated on a ``dataset_scale`` fraction of the validation split;
2. **per-layer greedy**: each layer's sensitivity (the accuracy with only that layer one bit lower)
   orders the layers by accuracy lost per byte saved; in that order each layer's bits are lowered
   while the constraint holds;
3. **local refinement** (optional): a layer that could not go lower is tried one bit lower while a
   much smaller layer goes one bit higher; kept when the artefact shrinks and the constraint holds.

The artefact (:func:`save_shared`) is a safetensors file (a JSON header + raw little-endian
buffers, no pickle): for every shared weight a ``uint8`` tensor of bit-packed indices
(``numpy.packbits``) and a ``float32`` codebook; every other tensor (biases, batch-norm) as in the
model; the layer table in the header's metadata. :func:`load_shared` rebuilds the model. The
compression ratio (:func:`compression_ratio`) is the fp32 safetensors file of the same model over
the artefact file, both measured in bytes on disk, with no general-purpose compression on top.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from compactnet.errors import CompactNetError, ConfigError, ModelFileError, bad_value
from compactnet.search.methods._common import subset

log = logging.getLogger(__name__)

FORMAT = "compactnet-weight-sharing"
FORMAT_VERSION = "1"
INDEX_SUFFIX = ".__indices__"
CODEBOOK_SUFFIX = ".__codebook__"
#: Bits per weight the exploration may give a layer (k = 2**bits shared values).
BITS_LADDER = (1, 2, 3, 4, 5, 6, 7, 8)


# ----- bit packing ----------------------------------------------------------------------------------
def bits_for(k: int) -> int:
    """Bits per index for ``k`` shared values: ``max(1, ceil(log2 k))``."""
    if int(k) != k or k < 1:
        raise bad_value("k", "a positive number of shared values", k)
    return max(1, math.ceil(math.log2(int(k))))


def pack_indices(indices: np.ndarray, bits: int) -> np.ndarray:
    """Pack non-negative integers below ``2**bits`` into bytes, ``bits`` per value, MSB first."""
    if not 1 <= int(bits) <= 16:
        raise bad_value("bits", "1..16", bits)
    idx = np.asarray(indices).reshape(-1).astype(np.uint32)
    if idx.size and int(idx.max()) >= (1 << bits):
        raise bad_value("indices", f"values below 2**{bits}", int(idx.max()))
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint32)
    planes = ((idx[:, None] >> shifts) & 1).astype(np.uint8)
    return np.packbits(planes.reshape(-1))


def unpack_indices(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_indices`: ``count`` indices as ``int64``."""
    flat = np.unpackbits(np.asarray(packed, dtype=np.uint8), count=int(count) * int(bits))
    if flat.size != count * bits:
        raise ModelFileError(f"packed indices hold {flat.size} bits, {count * bits} expected")
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.int64)
    return flat.reshape(int(count), int(bits)).astype(np.int64) @ weights


# ----- clustering -----------------------------------------------------------------------------------
def kmeans_1d(values: np.ndarray, k: int, iters: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic 1-D k-means: quantile initialisation, then Lloyd iterations.

    Args:
        values: The weights (any shape; flattened).
        k: Number of shared values (at most the number of distinct values is used).
        iters: Lloyd iterations at most (stops when the assignment no longer changes).

    Returns:
        ``(codebook float32 (k',), indices int64 (n,))`` with ``k' <= k`` sorted centroids and
        ``values ~ codebook[indices]``.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise bad_value("values", "a non-empty weight tensor", 0)
    uniq = np.unique(v)
    if len(uniq) <= k:
        return uniq.astype(np.float32), np.searchsorted(uniq, v).astype(np.int64)
    order = np.argsort(v, kind="stable")
    sv = v[order]
    c = np.quantile(sv, (np.arange(k) + 0.5) / k)
    assign = None
    for _ in range(iters):
        c = np.unique(c)
        bounds = (c[1:] + c[:-1]) / 2
        a = np.searchsorted(bounds, sv)
        if assign is not None and np.array_equal(a, assign):
            break
        assign = a
        sums = np.bincount(a, weights=sv, minlength=len(c))
        counts = np.bincount(a, minlength=len(c))
        c = np.where(counts > 0, sums / np.maximum(counts, 1), c)
    c = np.unique(c)
    bounds = (c[1:] + c[:-1]) / 2
    cb = c.astype(np.float32)
    idx = np.empty(v.size, dtype=np.int64)
    idx[order] = np.searchsorted(bounds, sv)
    return cb, idx


def shared_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """``{state-dict key: weight}`` of every Conv2d and Linear weight (the tensors that are shared)."""
    out = {}
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            out[f"{name}.weight" if name else "weight"] = mod.weight
    return out


class Clusterer:
    """Clusters each shared weight at each ``k`` once (cached) from the model's original weights."""

    def __init__(self, model: nn.Module):
        self.original = {k: p.detach().cpu().numpy().astype(np.float32).copy()
                         for k, p in shared_parameters(model).items()}
        self._cache: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}

    @property
    def names(self) -> list[str]:
        """Shared weights in model order."""
        return list(self.original)

    def sizes(self) -> dict[str, int]:
        """Number of weights per shared tensor."""
        return {k: int(v.size) for k, v in self.original.items()}

    def cluster(self, name: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(codebook, indices)`` of weight ``name`` at ``k`` shared values."""
        key = (name, int(k))
        if key not in self._cache:
            self._cache[key] = kmeans_1d(self.original[name], int(k))
        return self._cache[key]

    def weight(self, name: str, k: int | None) -> np.ndarray:
        """The weight with ``k`` shared values (None: the original)."""
        if k is None:
            return self.original[name]
        cb, idx = self.cluster(name, k)
        return cb[idx].reshape(self.original[name].shape)


def apply_sharing(model: nn.Module, config: Mapping[str, int | None], clusterer: Clusterer | None = None) -> nn.Module:
    """Set every shared weight named in ``config`` to its clustered value (in place; None: original).

    Raises:
        ConfigError: A name that is not a shared weight of the model.
    """
    clusterer = clusterer or Clusterer(model)
    params = shared_parameters(model)
    with torch.no_grad():
        for name, k in config.items():
            if name not in params:
                raise bad_value("weight-sharing configuration", "Conv2d/Linear weight names such as "
                                + ", ".join(list(params)[:4]), name)
            params[name].copy_(torch.from_numpy(clusterer.weight(name, k)).to(params[name].dtype))
    return model


# ----- artefact --------------------------------------------------------------------------------------
def save_shared(path: str | Path, model: nn.Module, config: Mapping[str, int | None],
                clusterer: Clusterer | None = None, metadata: Mapping[str, str] | None = None) -> Path:
    """Write the weight-sharing artefact (safetensors; indices bit-packed, codebooks float32).

    Shared weights listed in ``config`` with a ``k`` are stored as indices + codebook (their values
    come from the clustering of ``clusterer``'s original weights); every other state-dict tensor is
    stored unchanged. ``metadata`` (strings) is kept in the header, e.g. ``{"model": "resnet20"}``.
    """
    from safetensors.numpy import save_file

    clusterer = clusterer or Clusterer(model)
    state = model.state_dict()
    tensors: dict[str, np.ndarray] = {}
    layers: dict[str, dict] = {}
    for key, value in state.items():
        k = config.get(key)
        if k is None:
            tensors[key] = value.detach().cpu().contiguous().numpy()
            continue
        cb, idx = clusterer.cluster(key, int(k))
        bits = bits_for(len(cb)) if len(cb) > 1 else 1
        tensors[key + INDEX_SUFFIX] = pack_indices(idx, bits)
        tensors[key + CODEBOOK_SUFFIX] = cb.astype(np.float32)
        layers[key] = {"shape": list(value.shape), "k": int(len(cb)), "bits": bits, "count": int(idx.size)}
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "layers": json.dumps(layers, sort_keys=True),
            **{str(a): str(b) for a, b in (metadata or {}).items()}}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(p)
    return p


def read_shared(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The decoded state dict and header metadata of an artefact.

    Raises:
        ModelFileError: Missing, unreadable or not a weight-sharing artefact.
    """
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"weight-sharing artefact {p} does not exist")
    try:
        with safe_open(str(p), framework="numpy") as fh:
            meta = dict(fh.metadata() or {})
            raw = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{p} is not a readable safetensors file: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{p} is not a weight-sharing artefact (header format {meta.get('format')!r})")
    layers = json.loads(meta.get("layers", "{}"))
    state: dict[str, torch.Tensor] = {}
    for key, arr in raw.items():
        if key.endswith(INDEX_SUFFIX) or key.endswith(CODEBOOK_SUFFIX):
            continue
        state[key] = torch.from_numpy(np.array(arr))
    for key, info in layers.items():
        try:
            packed, cb = raw[key + INDEX_SUFFIX], raw[key + CODEBOOK_SUFFIX]
        except KeyError as exc:
            raise ModelFileError(f"{p}: shared weight {key} lacks its indices or codebook") from exc
        idx = unpack_indices(packed, int(info["bits"]), int(info["count"]))
        if idx.size and int(idx.max()) >= len(cb):
            raise ModelFileError(f"{p}: {key} has an index beyond its {len(cb)}-entry codebook")
        state[key] = torch.from_numpy(cb[idx].reshape(info["shape"]).astype(np.float32))
    return state, meta


def load_shared(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Load an artefact into ``model`` (default: the registry model named in its metadata).

    Raises:
        ModelFileError: Unreadable artefact, or one that does not fit the model.
    """
    state, meta = read_shared(path)
    if model is None:
        from compactnet.models import create_model

        if "model" not in meta:
            raise ModelFileError(f"{path} names no model; pass the model to load into")
        channels = json.loads(meta["channels"]) if meta.get("channels") else None
        model = create_model(meta["model"], channels)
    own = model.state_dict()
    bad = [k for k in own if k not in state or tuple(state[k].shape) != tuple(own[k].shape)]
    if bad or set(state) - set(own):
        raise ModelFileError(f"{path} does not fit this model (first mismatch: {(bad or sorted(set(state) - set(own)))[0]})")
    model.load_state_dict(state)
    return model


def fp32_bytes(model: nn.Module, folder: str | Path) -> int:
    """Bytes of the model's fp32 safetensors file (written to ``folder/fp32.safetensors``)."""
    from compactnet.models import save_weights

    p = Path(folder) / "fp32.safetensors"
    save_weights(model, p)
    return p.stat().st_size


def compression_ratio(fp32_path: str | Path, artefact_path: str | Path) -> float:
    """fp32 safetensors bytes over artefact bytes, both read from disk."""
    return Path(fp32_path).stat().st_size / Path(artefact_path).stat().st_size


def estimated_bytes(sizes: Mapping[str, int], config: Mapping[str, int | None], other_bytes: int = 0) -> int:
    """Payload bytes of a configuration: packed indices + codebooks (+ ``other_bytes`` unshared)."""
    total = int(other_bytes)
    for name, n in sizes.items():
        k = config.get(name)
        total += 4 * n if k is None else math.ceil(n * bits_for(k) / 8) + 4 * int(k)
    return total


def bits_report(clusterer: Clusterer, config: Mapping[str, int | None]) -> list[dict]:
    """Per shared weight: count, k, index bits, and bits per weight with the codebook counted."""
    out = []
    for name, n in clusterer.sizes().items():
        k = config.get(name)
        if k is None:
            out.append({"layer": name, "weights": n, "k": None, "index_bits": 32, "bits_per_weight": 32.0})
            continue
        cb, _ = clusterer.cluster(name, int(k))
        b = bits_for(len(cb)) if len(cb) > 1 else 1
        out.append({"layer": name, "weights": n, "k": int(len(cb)), "index_bits": b,
                    "bits_per_weight": (math.ceil(n * b / 8) * 8 + 32 * len(cb)) / n})
    return out


# ----- exploration -----------------------------------------------------------------------------------
@dataclass
class Exploration:
    """Result of :func:`explore`.

    Attributes:
        config: ``{weight name: k}`` (k = 2**bits; None: left unshared).
        bits: ``{weight name: index bits}`` (32: unshared).
        baseline_top1: Uncompressed top-1 on the evaluation subset.
        top1: Compressed top-1 on the evaluation subset.
        threshold: Required top-1 (``tolerance * baseline_top1``).
        evaluations: Accuracy evaluations made.
        wall_s: Exploration seconds.
        uniform_bits: The bits found by the uniform sweep (step 1).
        estimated_bytes: Payload estimate of the configuration (indices, codebooks, unshared tensors).
        trace: Every evaluation: step, change, top-1, accepted.
    """

    config: dict[str, int | None]
    bits: dict[str, int]
    baseline_top1: float
    top1: float
    threshold: float
    evaluations: int
    wall_s: float
    uniform_bits: int | None
    estimated_bytes: int
    trace: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {k: getattr(self, k) for k in ("config", "bits", "baseline_top1", "top1", "threshold", "evaluations",
                                              "wall_s", "uniform_bits", "estimated_bytes", "trace")}


def _other_bytes(model: nn.Module, shared: Sequence[str]) -> int:
    return int(sum(v.numel() * v.element_size() for k, v in model.state_dict().items() if k not in set(shared)))


def explore(model: nn.Module, val_split: Any, dataset_scale: float = 0.5, tolerance: float = 0.99,
            ladder: Sequence[int] = BITS_LADDER, local: bool = True, local_budget: int | None = None,
            max_evals: int | None = None, max_seconds: float | None = None, seed: int = 0,
            max_size_bytes: int | None = None, evaluate: Callable[[nn.Module, Any], float] | None = None,
            clusterer: Clusterer | None = None, progress: bool = False) -> Exploration:
    """Choose the number of shared values per layer keeping ``tolerance`` of the validation top-1.

    No retraining: only weights are replaced. ``model`` is left with its original weights.

    Args:
        model: The trained network.
        val_split: Validation split (a :class:`~compactnet.data.Split`).
        dataset_scale: Fraction of ``val_split`` evaluated (class-stratified, seeded), as the
            reference tool's ``--dataset_scale``. 0.5 by default: with 0.1 (500 images) a 1% tolerance
            is 5 images, and ResNet-20 passed it at 84.14 -> 80.39% test top-1; with 0.5 it kept
            83.40% (99.1%) for 7.17x in 325 s.
        tolerance: Kept fraction of the uncompressed top-1 (0.99: MLPerf's constraint).
        ladder: Allowed index bits per layer, ascending.
        local: Run the local refinement (step 3).
        local_budget: Evaluations of the refinement (default: the number of layers).
        max_evals: Stop exploring after this many evaluations (the result so far is kept).
        max_seconds: Same, in wall seconds.
        seed: Seed of the validation subset.
        max_size_bytes: Required artefact payload at most this (checked up front against 1 bit per
            weight everywhere, and after the exploration).
        evaluate: ``(model, split) -> top-1 %`` (default :func:`compactnet.train.evaluate`).
        clusterer: A :class:`Clusterer` of ``model`` to reuse (its cache).
        progress: Log every evaluation at INFO level.

    Returns:
        The :class:`Exploration`.

    Raises:
        ConfigError: Bad arguments, or a size target no per-layer choice can meet.
        CompactNetError: No configuration (not even ``max(ladder)`` bits everywhere) keeps the accuracy.
    """
    from compactnet.train import evaluate as default_evaluate

    if not 0 < tolerance <= 1:
        raise bad_value("tolerance", "a fraction in (0, 1], e.g. 0.99", tolerance)
    if isinstance(dataset_scale, bool) or not isinstance(dataset_scale, (int, float)) or not 0 < dataset_scale <= 1:
        raise bad_value("dataset_scale", "a fraction of the validation split in (0, 1], e.g. 0.1", dataset_scale)
    ladder = sorted({int(b) for b in ladder})
    if not ladder or ladder[0] < 1 or ladder[-1] > 16:
        raise bad_value("ladder", "index bits between 1 and 16", ladder)
    evaluate = evaluate or default_evaluate
    t0 = time.perf_counter()
    clusterer = clusterer or Clusterer(model)
    names = clusterer.names
    sizes = clusterer.sizes()
    other = _other_bytes(model, names)
    if max_size_bytes is not None:
        floor = estimated_bytes(sizes, {n: 2 ** ladder[0] for n in names}, other)
        if floor > max_size_bytes:
            raise bad_value("max_size", f"at least {floor / 1e6:.3f} MB (every shared layer at {ladder[0]} bit(s) "
                            f"per weight plus {other / 1e6:.3f} MB of unshared tensors)",
                            f"{max_size_bytes / 1e6:.3f} MB")
    val = subset(val_split, float(dataset_scale), seed)
    base = evaluate(model, val)
    threshold = tolerance * base
    trace: list[dict] = []
    state: dict[str, int | None] = {n: None for n in names}  # what the model holds now
    n_evals = 0

    def budget_left() -> bool:
        if max_evals is not None and n_evals >= max_evals:
            return False
        return max_seconds is None or time.perf_counter() - t0 < max_seconds

    def score(bits: Mapping[str, int | None], step: str, change: Any) -> float:
        nonlocal n_evals
        cfg = {n: (None if b is None else 2 ** b) for n, b in bits.items()}
        changed = {n: k for n, k in cfg.items() if state[n] != k}
        apply_sharing(model, changed, clusterer)
        state.update(changed)
        acc = evaluate(model, val)
        n_evals += 1
        trace.append({"step": step, "change": change, "top1": acc, "accepted": acc >= threshold,
                      "seconds": time.perf_counter() - t0})
        (log.info if progress else log.debug)("%s %s: top-1 %.2f%% (need %.2f%%)", step, change, acc, threshold)
        return acc

    try:
        # ----- step 1: uniform sweep (binary search on the ladder; accuracy grows with bits) ------
        lo, hi = 0, len(ladder) - 1
        if score({n: ladder[hi] for n in names}, "uniform", ladder[hi]) < threshold:
            raise CompactNetError(f"weight sharing with {ladder[-1]} bits in every layer keeps {trace[-1]['top1']:.2f}% "
                                  f"top-1, below {tolerance:.0%} of the uncompressed {base:.2f}%: no per-layer "
                                  "choice of this ladder meets the accuracy constraint")
        best_hi = hi
        while lo < best_hi:
            mid = (lo + best_hi) // 2
            if score({n: ladder[mid] for n in names}, "uniform", ladder[mid]) >= threshold:
                best_hi = mid
            else:
                lo = mid + 1
        uniform = ladder[best_hi]
        bits: dict[str, int | None] = {n: uniform for n in names}
        acc = next(t["top1"] for t in trace if t["step"] == "uniform" and t["change"] == uniform)

        # ----- step 2: per-layer greedy in order of sensitivity per byte saved --------------------
        pos = {n: ladder.index(uniform) for n in names}
        order = list(names)
        if pos[names[0]] > 0:
            sens = {}
            for n in names:
                if not budget_left():
                    break
                trial = {**bits, n: ladder[pos[n] - 1]}
                sens[n] = max(0.0, acc - score(trial, "sensitivity", n))
            saved = {n: sizes[n] * (ladder[pos[n]] - ladder[pos[n] - 1]) for n in names}
            order = sorted(names, key=lambda n: (sens.get(n, math.inf) / max(saved[n], 1), -sizes[n], n))
        frozen: set[str] = set()
        for n in order:
            while pos[n] > 0 and n not in frozen and budget_left():
                trial = {**bits, n: ladder[pos[n] - 1]}
                a = score(trial, "greedy", {n: trial[n]})
                if a >= threshold:
                    bits, acc = trial, a
                    pos[n] -= 1
                else:
                    frozen.add(n)

        # ----- step 3: local refinement: big layer down, small layer up ----------------------------
        if local:
            left = local_budget if local_budget is not None else len(names)
            big_first = sorted(names, key=lambda n: -sizes[n])
            for n in big_first:
                if left <= 0 or not budget_left() or pos[n] == 0:
                    continue
                partners = [m for m in sorted(names, key=lambda m: sizes[m])
                            if m != n and pos[m] < len(ladder) - 1
                            and sizes[m] * (ladder[pos[m] + 1] - ladder[pos[m]])
                            < sizes[n] * (ladder[pos[n]] - ladder[pos[n] - 1])][:2]
                for m in partners:
                    if left <= 0 or not budget_left():
                        break
                    trial = {**bits, n: ladder[pos[n] - 1], m: ladder[pos[m] + 1]}
                    a = score(trial, "local", {n: trial[n], m: trial[m]})
                    left -= 1
                    if a >= threshold:
                        bits, acc = trial, a
                        pos[n] -= 1
                        pos[m] += 1
                        break
        # leave the model holding the accepted configuration's accuracy record, then restore it
        final_acc = acc
    finally:
        apply_sharing(model, {n: None for n in names if state[n] is not None}, clusterer)
    config = {n: 2 ** b for n, b in bits.items()}
    est = estimated_bytes(sizes, config, other)
    if max_size_bytes is not None and est > max_size_bytes:
        raise ConfigError(f"no per-layer choice meeting the accuracy constraint fits in {max_size_bytes / 1e6:.3f} MB: "
                          f"the smallest found takes {est / 1e6:.3f} MB (top-1 {final_acc:.2f}% >= {threshold:.2f}%)")
    wall = time.perf_counter() - t0
    log.info("weight sharing: %.2f bits/weight on average, top-1 %.2f%% (baseline %.2f%%), %d evaluations, %.1f s",
             sum(bits[n] * sizes[n] for n in names) / max(1, sum(sizes.values())), final_acc, base, n_evals, wall)
    return Exploration(config, {n: int(b) for n, b in bits.items()}, base, final_acc, threshold, n_evals, wall,
                       uniform, est, trace)


# ----- one call --------------------------------------------------------------------------------------
def share_weights(model: nn.Module, data: Any, out_dir: str | Path, dataset_scale: float = 0.5,
                  tolerance: float = 0.99, local: bool = True, seed: int = 0, model_name: str | None = None,
                  channels: Any = None, eval_split: str = "test", **explore_kw: Any) -> dict:
    """Explore, write the artefact, check its round trip and report.

    Writes ``out_dir/shared.safetensors`` (the artefact), ``out_dir/fp32.safetensors`` (the reference
    the ratio is taken against) and ``out_dir/weight_sharing.json`` (the report).

    With ``max_size_bytes`` (passed to :func:`explore`, which checks an estimate of the payload) the
    written artefact's real file size (header included) is checked too: an artefact over the
    limit is deleted and :class:`~compactnet.errors.ConfigError` raised.

    Returns:
        Report: compression ratio from file bytes, bytes of each file, bits per weight per layer,
        exploration wall time and evaluations, top-1 (original and shared) on ``eval_split``.
    """
    import copy

    from compactnet.train import evaluate

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clusterer = Clusterer(model)
    exp = explore(model, data.val, dataset_scale, tolerance, local=local, seed=seed, clusterer=clusterer, **explore_kw)
    meta = {"model": model_name or "", "channels": json.dumps(channels) if channels is not None else ""}
    if not model_name:
        meta.pop("model")
    art = save_shared(out / "shared.safetensors", model, exp.config, clusterer, meta)
    limit = explore_kw.get("max_size_bytes")
    if limit is not None and art.stat().st_size > limit:
        size = art.stat().st_size
        art.unlink()
        raise ConfigError(f"max_size: the weight-sharing artefact takes {size / 1e6:.6f} MB on disk ({size} bytes, "
                          f"header included), above the {limit / 1e6:.6f} MB allowed (estimated "
                          f"{exp.estimated_bytes} bytes); nothing was kept: allow more or lower the tolerance")
    ref_bytes = fp32_bytes(model, out)
    loaded = load_shared(art, copy.deepcopy(model))
    split = getattr(data, eval_split)
    report = {
        "artefact": str(art), "artefact_bytes": art.stat().st_size, "fp32_safetensors_bytes": ref_bytes,
        "compression_ratio": ref_bytes / art.stat().st_size,
        "mean_index_bits": sum(b * n for b, n in zip(exp.bits.values(), clusterer.sizes().values()))
        / max(1, sum(clusterer.sizes().values())),
        "layers": bits_report(clusterer, exp.config), "exploration": exp.to_dict(),
        f"{eval_split}_top1_original": evaluate(model, split), f"{eval_split}_top1_shared": evaluate(loaded, split),
        "dataset_scale": dataset_scale, "tolerance": tolerance,
    }
    (out / "weight_sharing.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


__all__ = ["BITS_LADDER", "bits_for", "pack_indices", "unpack_indices", "kmeans_1d", "shared_parameters", "Clusterer",
           "apply_sharing", "save_shared", "read_shared", "load_shared", "fp32_bytes", "compression_ratio",
           "estimated_bytes", "bits_report", "Exploration", "explore", "share_weights"]
