"""Drive a profiling run: sampling -> measurement -> sample store, resumable.

:func:`profile` walks a strategy's deterministic candidate sequence in batches; a batch is
measured together (one rotation) and appended to the store in one transaction. Candidates already
stored for the platform (same key and hardware) and context are skipped but count towards the
budget, so a run killed at any moment and restarted with the same seed ends with the same
distinct samples as an uninterrupted run.

:func:`platform_table` lists what this machine can profile, with hardware, runtime version and
noise floor (what ``compactnet platforms`` prints).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from compactnet.errors import CompactNetError, ConfigError, bad_value
from compactnet.spec import Measurement, NetworkSpec, Platform

from compactnet.profilers.base import Profiler, Protocol, get_profiler, noise_floor
from compactnet.profilers.sampling import DEFAULT_DENSE_STEP, DenseStrategy, SamplingStrategy, make_strategy
from compactnet.profilers.store import SampleStore, layer_key

log = logging.getLogger(__name__)

DEFAULT_BATCH = 16


def default_store_path() -> Path:
    """``$COMPACTNET_HOME/samples.sqlite``, else ``~/.cache/compactnet/samples.sqlite``."""
    home = os.environ.get("COMPACTNET_HOME")
    base = Path(home) if home else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "compactnet"
    return base / "samples.sqlite"


@dataclass(frozen=True)
class ProfileReport:
    """What a profiling run did.

    Attributes:
        platform: Where it measured.
        strategy: Strategy name.
        context: Measuring context.
        seed: Strategy seed.
        samples: Requested sample budget (None: seconds or the whole dense grid).
        seconds: Requested time budget.
        covered: Candidates of the sequence covered (measured now + already stored).
        measured: Configurations measured by this run.
        skipped: Candidates already in the store.
        distinct_in_store: Distinct configurations stored for the platform, context and hardware afterwards.
        wall_s: Wall time of this run.
        seconds_per_sample: ``wall_s / measured`` (NaN if nothing was measured).
        stopped_by: ``samples``, ``seconds`` or ``exhausted``.
        store: Path of the sample store.
        run_id: Identifier stored with this run's rows.
        dense: For ``dense``: step, table entries and distinct configurations at that step and at
            step 1, and the wall time at step 1 extrapolated from this run's seconds per sample
            (labelled ``extrapolated``).
    """

    platform: Platform
    strategy: str
    context: str
    seed: int
    samples: int | None
    seconds: float | None
    covered: int
    measured: int
    skipped: int
    distinct_in_store: int
    wall_s: float
    seconds_per_sample: float
    stopped_by: str
    store: str
    run_id: str
    dense: dict | None = None

    def to_dict(self) -> dict:
        """JSON-ready form."""
        d = asdict(self)
        d["platform"] = self.platform.to_dict()
        return d


def _open_store(store: SampleStore | str | Path | None) -> tuple[SampleStore, bool]:
    if isinstance(store, SampleStore):
        return store, False
    return SampleStore(store if store is not None else default_store_path()), True


def profile(platform: Platform | str, strategy: str | SamplingStrategy = "sobol", samples: int | None = None,
            seconds: float | None = None, store: SampleStore | str | Path | None = None, seed: int = 0,
            network: NetworkSpec | None = None, progress: bool = True, context: str = "rotation",
            batch_size: int = DEFAULT_BATCH, profiler: Profiler | None = None, protocol: Protocol | None = None,
            step: int = DEFAULT_DENSE_STEP, model: Any = None) -> ProfileReport:
    """Profile a platform: choose configurations, measure them, append them to the store.

    Args:
        platform: Platform key or :class:`Platform` (``synthetic-cpu-fp32-t1`` for the fake platform).
        strategy: ``dense``, ``random``, ``sobol``, ``prior``, ``adaptive`` or a strategy instance.
        samples: Candidates to cover (the store's earlier samples of the sequence count).
        seconds: Time budget; the run stops after the batch that crosses it.
        store: A :class:`SampleStore` or its path (default :func:`default_store_path`).
        seed: Strategy seed (the protocol's seed is the profiler's).
        network: Network spanning the space (default: the Table-1 MobileNetV2's 18 units).
        progress: Show a tqdm progress bar with time left (on stderr).
        context: ``rotation`` (default), ``isolated`` or ``flush``.
        batch_size: Layers measured together in one rotation and stored in one transaction.
        profiler: Use this profiler instead of :func:`get_profiler` (e.g. a remote one).
        protocol: Timing protocol for :func:`get_profiler`.
        step: Channel step of ``dense``.
        model: Uncertainty model of ``adaptive``.

    Returns:
        A :class:`ProfileReport`.

    Raises:
        ConfigError: No budget for a non-dense strategy, or a bad parameter.
        MeasurementError: The machine is busy (protocol ``busy='refuse'``) or the runtime failed.
    """
    if samples is not None and int(samples) < 1:
        raise bad_value("--samples", "a positive integer", samples)
    if seconds is not None and float(seconds) <= 0:
        raise bad_value("--seconds", "a positive number", seconds)
    if int(batch_size) < 1:
        raise bad_value("batch_size", "a positive integer", batch_size)
    strat = make_strategy(strategy, seed=seed, network=network, step=step, model=model)
    if samples is None and seconds is None and not isinstance(strat, DenseStrategy):
        raise ConfigError(f"--strategy {strat.name} needs a budget: --samples N or --seconds S")
    prof = profiler or get_profiler(platform, protocol)
    plat = prof.platform
    st, owned = _open_store(store)
    run_id = uuid.uuid4().hex[:12]
    proto = getattr(prof, "protocol", None)
    # a configuration stored by another estimator is measured again (the two are never mixed)
    known = st.keys(plat.key, context, plat.hardware, estimator=getattr(proto, "estimator", None))
    adaptive = strat.name == "adaptive"
    measured_so_far: list[Measurement] = st.measurements(plat.key, context, plat.hardware, distinct=True) \
        if adaptive else []
    total = int(samples) if samples is not None else (strat.count if isinstance(strat, DenseStrategy) else None)
    bar = _bar(total, seconds, progress, f"{plat.key} {strat.name}")
    t0 = time.perf_counter()
    covered = measured = skipped = 0
    stopped = "exhausted"
    try:
        while True:
            if total is not None and covered >= total:
                stopped = "samples" if samples is not None else "exhausted"
                break
            if seconds is not None and time.perf_counter() - t0 >= float(seconds):
                stopped = "seconds"
                break
            k = int(batch_size) if total is None else min(int(batch_size), total - covered)
            batch = strat.next_batch(k, measured_so_far)
            if not batch:
                break
            batch = batch[:k]
            new = [l for l in batch if layer_key(l) not in known]
            skipped += len(batch) - len(new)
            if new:
                ms = prof.measure(new, context=context)
                st.add(ms, run_id=run_id)
                known.update(layer_key(m.layer) for m in ms)
                measured += len(ms)
                if adaptive:
                    measured_so_far.extend(ms)
            elif adaptive:  # a proposal already stored: feed it back so the strategy moves on
                have = {layer_key(m.layer) for m in measured_so_far}
                measured_so_far.extend(m for m in st.measurements(plat.key, context, plat.hardware, distinct=True)
                                       if layer_key(m.layer) not in have)
            covered += len(batch)
            if bar is not None:
                if total is not None:
                    bar.update(len(batch))
                else:
                    bar.n = min(float(seconds), round(time.perf_counter() - t0, 1))
                    bar.refresh()
                bar.set_postfix(measured=measured, skipped=skipped)
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t0
    sps = wall / measured if measured else float("nan")
    dense = None
    if isinstance(strat, DenseStrategy):
        dense = {"step": strat.step, "entries_at_step": strat.entries, "count_at_step": strat.count,
                 "full_count": strat.full_count, "full_distinct": strat.full_distinct,
                 "full_count_label": "table entries at step 1, as the paper counts them (computed, not measured)",
                 "full_wall_s": sps * strat.full_distinct if measured else None,
                 "full_wall_s_label": f"extrapolated to step 1 from {measured} samples measured at step {strat.step}"}
    report = ProfileReport(plat, strat.name, context, int(seed), None if samples is None else int(samples),
                           None if seconds is None else float(seconds), covered, measured, skipped,
                           st.count(plat.key, context, distinct=True, hardware=prof.platform.hardware), wall, sps,
                           stopped, str(st.path), run_id, dense)
    if owned:
        st.close()
    log.info("profiled %s: %d measured, %d already stored, %.1f s", plat.key, measured, skipped, wall)
    return report


def _bar(total: int | None, seconds: float | None, progress: bool, desc: str):
    if not progress:
        return None
    from compactnet.progress import progress_bar

    if total is not None:
        return progress_bar(total=total, desc=desc, unit="sample")
    return progress_bar(total=float(seconds), desc=desc, unit="s", bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s "
                        "[{elapsed}<{remaining}{postfix}]")


def platform_table(noise: bool = True, repeats: int = 20, protocol: Protocol | None = None,
                   include_synthetic: bool = False) -> list[dict]:
    """What this machine can profile: key, hardware, runtime version and noise floor.

    Args:
        noise: Measure each platform's noise floor (:func:`~compactnet.profilers.base.noise_floor`,
            ``repeats`` measurements of one configuration); refused on a busy machine, in which case
            the row carries ``noise_floor=None`` and the reason in ``note``.
        repeats: Measurements behind the noise floor.
        protocol: Timing protocol.
        include_synthetic: Add the synthetic test platform.

    Returns:
        Rows ``{"key", "hardware", "runtime_version", "noise_floor", "noise_floor_median_ms", "note"}``;
        ``noise_floor`` is the relative spread (max - min) / median of the repeated medians.
    """
    from compactnet.runtimes import available_platforms

    plats = list(available_platforms())
    if include_synthetic:
        plats.append(Platform.parse("synthetic-cpu-fp32-t1"))
    rows = []
    for p in plats:
        row = {"key": p.key, "hardware": p.hardware, "runtime_version": p.runtime_version, "noise_floor": None,
               "noise_floor_median_ms": None, "note": ""}
        if noise:
            try:
                prof = get_profiler(p, protocol)
                nf = noise_floor(prof, repeats=repeats)
                row.update(noise_floor=nf["rel_spread"], noise_floor_median_ms=nf["median_ms"],
                           hardware=prof.platform.hardware, runtime_version=prof.platform.runtime_version)
            except CompactNetError as exc:
                row["note"] = str(exc)
        rows.append(row)
    return rows
