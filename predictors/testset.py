"""The predictors' fixed test set: generated once with its own seed, never sampled from.

- 200 trimmed Table-1 MobileNetV2 configurations: per channel group (a stage: blocks joined by
  residual adds share one width; the stem is never trimmed, as in the public code) a width ratio
  uniform in [0.25, 1];
- 30 ResNet-20 variants (3 stage widths and 9 inner widths, each ratio uniform in [0.25, 1]);
- 30 narrow-VGG variants (13 conv widths, each ratio uniform in [0.25, 1]);
- 20 ranking sets ("one iteration's candidates"): a random trimmed MobileNetV2 and, for each of its
  stage groups, the single-group trim that removes the same share of MACs (2-6%, drawn per set):
  close candidates whose true order a predictor must recover (Kendall tau).

De-duplication: a configuration equal to an earlier one is redrawn, and so is one all of whose
layers are already in the sample store (the predictor has effectively seen that network). Each
network records ``seen_fraction``, the share of its layers present in the store, so benchmarks
state the overlap honestly. :func:`testset_layer_keys` gives the keys a profiler should skip.

:func:`measure_testset` measures every network for real through :func:`compactnet.measure.compare`
(the protocol, on a quiet machine), in chunks timed together with a fixed reference network,
appending to a JSON results file and resuming where it stopped.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from compactnet.errors import ConfigError, DataError, bad_value
from compactnet.spec import latency_ms

log = logging.getLogger(__name__)
TESTSET_SEED = 91_017  # fixed before any tuning; never reused for sampling
RATIO_LOW = 0.25


@dataclass(frozen=True)
class TestNetwork:
    """One test configuration.

    Attributes:
        id: Stable identifier (``mobilenetv2-000``...).
        model: Registry name.
        channels: Channel configuration (JSON form of the model's config).
        seen_fraction: Share of its layers already in the sample store at generation time.
        hw: Input height and width (px).
    """

    __test__ = False  # not a pytest class
    id: str
    model: str
    channels: dict
    seen_fraction: float = 0.0
    hw: int = 32

    def spec(self):
        """The network's :class:`~compactnet.spec.NetworkSpec` at its input size."""
        from compactnet.predictors.families import spec

        return spec(self.model, self.channels, self.hw)

    def onnx_bytes(self) -> bytes:
        """The protocol's ONNX export of the network at its input size (random weights)."""
        from compactnet.predictors.families import onnx_bytes

        return onnx_bytes(self.model, self.channels, self.hw)


@dataclass(frozen=True)
class CandidateSet:
    """Single-group trims of one network meeting one MACs cut (a search iteration's candidates).

    Attributes:
        id: Identifier.
        base: The base network.
        cut: Share of the base MACs each candidate removes (at least).
        candidates: One network per trimmable group that can meet the cut.
        groups: The group each candidate trims (stage index for MobileNetV2).
    """

    __test__ = False
    id: str
    base: TestNetwork
    cut: float
    candidates: tuple[TestNetwork, ...]
    groups: tuple[int, ...]


@dataclass
class TestSet:
    """The whole fixed test set."""

    __test__ = False
    seed: int
    networks: list[TestNetwork] = field(default_factory=list)
    candidate_sets: list[CandidateSet] = field(default_factory=list)

    def all_networks(self) -> list[TestNetwork]:
        """Every network: the test networks, then each ranking set's base and candidates."""
        out = list(self.networks)
        for c in self.candidate_sets:
            out += [c.base, *c.candidates]
        return out

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"seed": self.seed, "networks": [asdict(n) for n in self.networks],
                "candidate_sets": [{"id": c.id, "base": asdict(c.base), "cut": c.cut,
                                    "candidates": [asdict(n) for n in c.candidates], "groups": list(c.groups)}
                                   for c in self.candidate_sets]}

    @classmethod
    def from_dict(cls, d: dict) -> "TestSet":
        """Inverse of :meth:`to_dict`."""
        return cls(int(d["seed"]), [TestNetwork(**n) for n in d["networks"]],
                   [CandidateSet(c["id"], TestNetwork(**c["base"]), float(c["cut"]),
                                 tuple(TestNetwork(**n) for n in c["candidates"]), tuple(c["groups"]))
                    for c in d.get("candidate_sets", [])])

    def save(self, path: str | Path) -> Path:
        """Write as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "TestSet":
        """Read from JSON.

        Raises:
            DataError: Missing or malformed file.
        """
        p = Path(path)
        if not p.is_file():
            raise DataError(f"test set file {p} does not exist; generate it with generate_testset()")
        try:
            return cls.from_dict(json.loads(p.read_text()))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"test set file {p} is malformed: {exc}") from exc


# ----- configuration draws ------------------------------------------------------------------------
def _scale(width: int, ratio: float) -> int:
    return int(min(width, max(1, round(ratio * width))))


def _mobilenetv2_channels(ratios: Sequence[float]) -> dict:
    from compactnet.models.mobilenetv2 import DEFAULT_WIDTHS, stage_of_width_index

    stages = stage_of_width_index()
    widths = [DEFAULT_WIDTHS[0]] + [_scale(w, ratios[stages[i]]) for i, w in enumerate(DEFAULT_WIDTHS) if i > 0]
    return {"widths": widths}


def draw_mobilenetv2(rng: np.random.Generator) -> dict:
    """A Table-1 MobileNetV2 with each stage group's ratio uniform in [0.25, 1] (stem kept)."""
    return _mobilenetv2_channels(rng.uniform(RATIO_LOW, 1.0, 7))


def draw_resnet20(rng: np.random.Generator) -> dict:
    """A ResNet-20 with each of 3 stage and 9 inner widths scaled by a ratio uniform in [0.25, 1]."""
    from compactnet.models.resnet import BLOCKS_PER_STAGE, DEFAULT_STAGES

    stages = [_scale(c, r) for c, r in zip(DEFAULT_STAGES, rng.uniform(RATIO_LOW, 1.0, 3))]
    inner = [_scale(c, r) for c, r in zip([c for c in DEFAULT_STAGES for _ in range(BLOCKS_PER_STAGE)],
                                          rng.uniform(RATIO_LOW, 1.0, 3 * BLOCKS_PER_STAGE))]
    return {"stages": stages, "inner": inner}


def draw_vgg(rng: np.random.Generator) -> dict:
    """A narrow VGG-16 with each of the 13 conv widths scaled by a ratio uniform in [0.25, 1]."""
    from compactnet.models.vgg import DEFAULT_WIDTHS

    return {"widths": [_scale(c, r) for c, r in zip(DEFAULT_WIDTHS, rng.uniform(RATIO_LOW, 1.0, len(DEFAULT_WIDTHS)))]}


_DRAW = {"mobilenetv2": draw_mobilenetv2, "resnet20": draw_resnet20, "vgg16": draw_vgg}


def _store_keys(store: Any, platform_key: str | None) -> set[str]:
    if store is None:
        return set()
    if isinstance(store, (set, frozenset)):
        return set(store)
    from compactnet.profilers.store import SampleStore

    if isinstance(store, (str, Path)):
        with SampleStore(store) as s:
            return s.keys(platform_key)
    return store.keys(platform_key)


def _seen(model: str, channels: dict, keys: set[str]) -> float:
    if not keys:
        return 0.0
    from compactnet.extract import spec_for
    from compactnet.profilers.store import layer_key

    layers = spec_for(model, channels).layers
    return float(np.mean([layer_key(l) in keys for l in layers]))


def generate_testset(seed: int = TESTSET_SEED, n_mobilenetv2: int = 200, n_resnet20: int = 30, n_vgg: int = 30,
                     n_candidate_sets: int = 20, store: Any = None, platform_key: str | None = None,
                     max_redraws: int = 1000, exclude: Sequence[TestSet] = ()) -> TestSet:
    """Generate the fixed test set.

    Args:
        seed: The test set's own seed (default :data:`TESTSET_SEED`; never used for sampling).
        n_mobilenetv2: Trimmed MobileNetV2 configurations.
        n_resnet20: ResNet-20 variants.
        n_vgg: Narrow-VGG variants.
        n_candidate_sets: Ranking sets.
        store: A sample store (path or ``SampleStore``) or a set of layer keys to de-duplicate against.
        platform_key: Only that platform's store keys (default: all).
        max_redraws: Give up redrawing after this many duplicates (then raise).
        exclude: Other test sets (e.g. the test set, when drawing a development set with another
            seed) whose networks count as duplicates.

    Raises:
        DataError: Too many duplicates (the store covers nearly everything).
    """
    rng = np.random.default_rng(seed)
    keys = _store_keys(store, platform_key)
    ts = TestSet(seed)
    seen_cfg: set[str] = {n.model + json.dumps(n.channels, sort_keys=True)
                           for other in exclude for n in other.all_networks()}
    redraws = 0
    for model, n in (("mobilenetv2", n_mobilenetv2), ("resnet20", n_resnet20), ("vgg16", n_vgg)):
        i = 0
        while i < n:
            ch = _DRAW[model](rng)
            ident = model + json.dumps(ch, sort_keys=True)
            frac = _seen(model, ch, keys) if ident not in seen_cfg else 1.0
            if ident in seen_cfg or frac >= 1.0:
                redraws += 1
                if redraws > max_redraws:
                    raise DataError(f"test set generation: more than {max_redraws} duplicate draws; the sample "
                                    "store covers nearly every configuration")
                continue
            seen_cfg.add(ident)
            ts.networks.append(TestNetwork(f"{model}-{i:03d}", model, ch, frac))
            i += 1
    ts.candidate_sets = candidate_sets(n_candidate_sets, rng, keys)
    return ts


def candidate_sets(n_sets: int, rng: np.random.Generator, keys: set[str] = frozenset()) -> list[CandidateSet]:
    """Ranking sets of single-stage trims of random trimmed MobileNetV2s meeting one MACs cut."""
    from compactnet.extract import spec_for
    from compactnet.models.mobilenetv2 import stage_of_width_index

    stages = stage_of_width_index()
    out = []
    for s in range(n_sets):
        ratios = list(rng.uniform(0.5, 1.0, 7))
        base_ch = _mobilenetv2_channels(ratios)
        base_macs = spec_for("mobilenetv2", base_ch).macs
        cut = float(rng.uniform(0.02, 0.06))
        cands, groups = [], []
        for g in range(7):
            idx = [i for i in range(1, 18) if stages[i] == g]
            w0 = base_ch["widths"][idx[0]]

            def macs_at(w: int) -> int:
                ch = {"widths": [w if i in idx else v for i, v in enumerate(base_ch["widths"])]}
                return spec_for("mobilenetv2", ch).macs

            lo, hi = 1, w0 - 1  # largest width whose cut >= target, by bisection (MACs grow with width)
            if hi < 1 or base_macs - macs_at(1) < cut * base_macs:
                continue
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if base_macs - macs_at(mid) >= cut * base_macs:
                    lo = mid
                else:
                    hi = mid - 1
            ch = {"widths": [lo if i in idx else v for i, v in enumerate(base_ch["widths"])]}
            cands.append(TestNetwork(f"rank-{s:02d}-g{g}", "mobilenetv2", ch, _seen("mobilenetv2", ch, keys)))
            groups.append(g)
        out.append(CandidateSet(f"rank-{s:02d}", TestNetwork(f"rank-{s:02d}-base", "mobilenetv2", base_ch,
                                                             _seen("mobilenetv2", base_ch, keys)),
                                cut, tuple(cands), tuple(groups)))
    return out


def testset_layer_keys(testset: TestSet) -> set[str]:
    """Layer keys of every test network (for a profiler to skip)."""
    from compactnet.profilers.store import layer_key

    nets = list(testset.networks) + [n for c in testset.candidate_sets for n in c.candidates]
    return {layer_key(l) for n in nets for l in n.spec().layers}


# ----- real measurement (the lead runs it on a quiet machine) -----------------------------------------
REFERENCE_ID = "reference-mobilenetv2"
DEFAULT_CHUNK = 8
CHUNKS_KEY = "_chunks"  # results-file entry with the reference's figure per chunk, by platform


def reference_network() -> TestNetwork:
    """The fixed reference timed in every chunk: the untrimmed Table-1 MobileNetV2."""
    from compactnet.models.mobilenetv2 import DEFAULT_WIDTHS

    return TestNetwork(REFERENCE_ID, "mobilenetv2", {"widths": list(DEFAULT_WIDTHS)})


def _chunks(ids: Sequence[str], size: int) -> list[list[str]]:
    return [list(ids[i:i + size]) for i in range(0, len(ids), size)]


def measure_testset(testset: TestSet | str | Path, platform: Any, results_path: str | Path,
                    include_candidates: bool = True, chunk: int = DEFAULT_CHUNK,
                    reference: TestNetwork | None = None, model_of: Any = None, **protocol: Any) -> dict[str, dict]:
    """Measure every test network by the protocol, in chunks timed against a fixed reference (resumable).

    Timing noise drifts over minutes (DESIGN's facts: the same MobileNetV2 read 0.86 and 0.67 ms
    minutes apart), so networks are not timed one at a time: each chunk of ``chunk`` networks is
    timed interleaved together with a fixed reference network (the untrimmed MobileNetV2) by
    :func:`compactnet.measure.compare`. Every network's entry keeps its latency (the protocol's
    figure), its ratio to the reference timed in the same chunk (``ratio``, with the bootstrap
    interval ``ratio_low``/``ratio_high``) and its chunk; the results file keeps the reference's
    figure of every chunk, so drift can be seen and taken out (:func:`load_results` with
    ``normalized=True``). A ranking set is one chunk (all its candidates with the reference).
    Chunks already in ``results_path`` are skipped; the file is rewritten atomically after each.

    Args:
        testset: The test set or its JSON path.
        platform: Platform key or :class:`~compactnet.spec.Platform`.
        results_path: JSON file ``{platform_key: {network id: entry}, "_chunks": {platform_key:
            [chunk record]}}``; an entry is a Latency dict plus ``ratio``, ``ratio_low``,
            ``ratio_high``, ``reference_ms`` and ``chunk``.
        include_candidates: Also time the ranking sets.
        chunk: Networks per chunk (besides the reference).
        reference: The reference network (default :func:`reference_network`).
        model_of: ``TestNetwork -> model`` given to ``compare`` (default: the protocol's ONNX
            export, :func:`compactnet.export.export_onnx`; tests pass ``NetworkSpec`` for the
            synthetic runtime).
        **protocol: Passed to ``compare`` (``rounds``, ``runs``, ``busy``...).

    Returns:
        ``{network id: entry}`` of this platform.

    Raises:
        ConfigError: ``chunk`` below 1.
        MeasurementError: A busy machine under ``busy="refuse"`` (chunks done so far are kept).
    """
    from compactnet.measure import compare
    from compactnet.spec import Platform

    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise bad_value("chunk", "a positive number of networks per chunk", chunk)
    ts = testset if isinstance(testset, TestSet) else TestSet.load(testset)
    plat = platform if isinstance(platform, Platform) else Platform.parse(str(platform))
    ref = reference or reference_network()
    path = Path(results_path)
    allres = json.loads(path.read_text()) if path.is_file() else {}
    res = allres.setdefault(plat.key, {})
    chunk_log = allres.setdefault(CHUNKS_KEY, {}).setdefault(plat.key, [])
    by_id = {n.id: n for n in ts.networks}
    for c in ts.candidate_sets:
        by_id.update((m.id, m) for m in c.candidates)

    if model_of is None:
        def model_of(n: TestNetwork) -> bytes:
            return n.onnx_bytes()

    def flush() -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(allres, indent=1))
        tmp.replace(path)

    def run_chunk(ids: list[str]) -> None:
        name = f"chunk-{len(chunk_log):04d}"
        log.info("measuring %s (%d networks + reference) on %s", name, len(ids), plat.key)
        cmp = compare([model_of(ref)] + [model_of(by_id[i]) for i in ids], plat, names=[ref.id] + ids, **protocol)
        ref_lat = cmp.latencies[0]
        for i, lat, (speedup, lo, hi) in zip(ids, cmp.latencies[1:], cmp.speedups[1:]):
            # speedup = reference / network, so the network's ratio to the reference is its inverse
            res[i] = {**lat.to_dict(), "ratio": 1.0 / speedup, "ratio_low": 1.0 / hi if hi else None,
                      "ratio_high": 1.0 / lo if lo else None, "reference_ms": ref_lat.value_ms, "chunk": name}
        chunk_log.append({"chunk": name, "ids": ids, "reference_id": ref.id, "reference": ref_lat.to_dict(),
                          "when": cmp.when, "load": None if cmp.load != cmp.load else cmp.load, "busy": cmp.busy,
                          "protocol_ok": cmp.protocol_ok})
        flush()

    pending = [n.id for n in ts.networks if n.id not in res]
    for ids in _chunks(pending, chunk):
        run_chunk(ids)
    if include_candidates:
        for c in ts.candidate_sets:
            if c.candidates and not all(m.id in res for m in c.candidates):
                run_chunk([m.id for m in c.candidates])  # a set stays in one comparison
    return res


def load_results(results_path: str | Path, platform_key: str, normalized: bool = False,
                 reference_ms: float | None = None) -> dict[str, float]:
    """``{network id: measured ms (the protocol.s figure)}`` of a platform from a results file.

    Args:
        results_path: The file :func:`measure_testset` writes.
        platform_key: Platform key.
        normalized: Give each network's ratio to the reference times the median of the reference's
            figures over all chunks (takes out drift between chunks); entries without a ratio keep
            their own figure.
        reference_ms: With ``normalized``: the reference's figure to multiply the ratios by instead
            of this file's median (puts two measured sets on one scale; see :func:`reference_median`).
    """
    p = Path(results_path)
    if not p.is_file():
        raise DataError(f"results file {p} does not exist; run measure_testset first")
    d = json.loads(p.read_text())
    keys = [k for k in d if not k.startswith("_")]
    if platform_key not in keys:
        raise bad_value("platform_key", "one of " + ", ".join(keys), platform_key)
    out = {k: latency_ms(v) for k, v in d[platform_key].items()}
    if normalized:
        refs = _reference_figures(d, platform_key)
        if refs or reference_ms is not None:
            ref = float(np.median(refs)) if reference_ms is None else float(reference_ms)
            out.update({k: float(v["ratio"]) * ref for k, v in d[platform_key].items() if v.get("ratio")})
    return out


def _reference_figures(results: dict, platform_key: str) -> list[float]:
    """The reference network's figure (ms) in each chunk of a parsed results file, in order."""
    return [latency_ms(c["reference"]) for c in results.get(CHUNKS_KEY, {}).get(platform_key, [])]


def reference_figures(results_path: str | Path, platform_key: str) -> list[float]:
    """The reference network's figure (ms) in each chunk a results file holds for a platform."""
    p = Path(results_path)
    if not p.is_file():
        raise DataError(f"results file {p} does not exist; run measure_testset first")
    return _reference_figures(json.loads(p.read_text()), platform_key)


def reference_median(results_path: str | Path, platform_key: str) -> float | None:
    """Median of the reference network's figures over a results file's chunks (None without chunks)."""
    refs = reference_figures(results_path, platform_key)
    return float(np.median(refs)) if refs else None


def load_measured(folder: str | Path, platform_key: str, results: str = "results.json",
                  normalized: bool = False) -> tuple[list[TestNetwork], np.ndarray]:
    """The networks of a measured set and their latency on one platform (e.g. to calibrate on).

    Args:
        folder: A folder :func:`measure_testset` wrote (``testset.json`` and the results file).
        platform_key: Platform key.
        results: Results file name inside ``folder``.
        normalized: As :func:`load_results`.

    Returns:
        ``(networks, measured_ms)``: every network of the set (ranking candidates included) measured
        on the platform, in the set's order.

    Raises:
        DataError: A missing or malformed file, or no network measured on the platform.
    """
    folder = Path(folder)
    ts = TestSet.load(folder / "testset.json")
    try:
        res = load_results(folder / results, platform_key, normalized=normalized)
    except ConfigError as exc:
        raise DataError(f"{folder / results} has no measurements on {platform_key}: {exc}") from exc
    nets = [n for n in ts.all_networks() if n.id in res]
    nets = list({n.id: n for n in nets}.values())  # a ranking set's base may also be a test network
    if not nets:
        raise DataError(f"no network of {folder / 'testset.json'} is measured on {platform_key} in "
                        f"{folder / results}; measure it with benchmarks/measure_testset.py")
    return nets, np.array([res[n.id] for n in nets])


__all__ = ["TESTSET_SEED", "load_measured", "reference_figures", "reference_median", "TestNetwork", "CandidateSet", "TestSet", "generate_testset", "candidate_sets",
           "draw_mobilenetv2", "draw_resnet20", "draw_vgg", "testset_layer_keys", "measure_testset", "load_results",
           "reference_network", "REFERENCE_ID"]
