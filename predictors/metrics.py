"""Error and ranking metrics for latency predictors.

All functions take true and predicted latencies (any positive unit, same for both) and return
fractions, not percentages (0.05 means 5%).

- :func:`rmspe`: root mean squared percentage error (nn-Meter's headline error).
- :func:`within`: share of predictions within ±tol of the truth (nn-Meter's "±10% accuracy").
- :func:`kendall_tau`: rank agreement of a set of candidates (what the search needs).
- :func:`pairwise_accuracy`: share of candidate pairs ordered correctly, optionally only pairs
  whose true latencies are close (the hard, decisive pairs).
- :func:`summarize`: all of the above in one record.
- :func:`network_summary`: errors on test networks only, ranking on candidate sets only.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from compactnet.errors import bad_value


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise bad_value("y_pred", f"as many values as y_true ({len(t)})", f"{len(p)} values")
    if np.any(t <= 0) or not np.all(np.isfinite(t)):
        raise bad_value("y_true", "positive, finite latencies", f"min {np.nanmin(t) if len(t) else None!r}")
    return t, p


def relative_errors(y_true: Any, y_pred: Any) -> np.ndarray:
    """(pred - true) / true per item."""
    t, p = _pair(y_true, y_pred)
    return (p - t) / t


def rmspe(y_true: Any, y_pred: Any) -> float:
    """Root mean squared percentage error, as a fraction."""
    e = relative_errors(y_true, y_pred)
    return float(np.sqrt(np.mean(e ** 2))) if len(e) else math.nan


def mape(y_true: Any, y_pred: Any) -> float:
    """Mean absolute percentage error, as a fraction."""
    e = relative_errors(y_true, y_pred)
    return float(np.mean(np.abs(e))) if len(e) else math.nan


def within(y_true: Any, y_pred: Any, tol: float = 0.10) -> float:
    """Share of predictions with |pred - true| / true <= tol."""
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise bad_value("tol", "a positive fraction (0.1 for ±10%)", tol)
    e = relative_errors(y_true, y_pred)
    return float(np.mean(np.abs(e) <= tol + 1e-12)) if len(e) else math.nan


def kendall_tau(y_true: Any, y_pred: Any) -> float:
    """Kendall's tau-b between true and predicted latencies (1: same order)."""
    from scipy.stats import kendalltau

    t, p = _pair(y_true, y_pred)
    if len(t) < 2:
        return math.nan
    tau = kendalltau(t, p).statistic
    return float(tau) if tau is not None else math.nan


def pairwise_accuracy(y_true: Any, y_pred: Any, close: float | None = None) -> float:
    """Share of pairs whose predicted order matches the true order.

    Args:
        y_true: True latencies of a candidate set.
        y_pred: Predicted latencies.
        close: Only pairs whose true latencies differ by at most this fraction of the smaller
            (e.g. 0.05: the candidates a search must tell apart); None: all pairs.

    Returns:
        The share (nan when no pair qualifies). Ties in the truth are skipped.
    """
    t, p = _pair(y_true, y_pred)
    i, j = np.triu_indices(len(t), k=1)
    dt = t[i] - t[j]
    keep = dt != 0
    if close is not None:
        keep &= np.abs(dt) <= close * np.minimum(t[i], t[j])
    if not keep.any():
        return math.nan
    return float(np.mean(np.sign(dt[keep]) == np.sign(p[i][keep] - p[j][keep])))


def summarize(y_true: Any, y_pred: Any, candidate_sets: Sequence[Sequence[int]] = ()) -> dict:
    """RMSPE, MAPE, ±5%/±10% shares, and ranking on candidate sets (mean Kendall tau and pairwise
    accuracy over the sets, each a list of indices into ``y_true``)."""
    t, p = _pair(y_true, y_pred)
    out = {"n": int(len(t)), "rmspe": rmspe(t, p), "mape": mape(t, p), "within5": within(t, p, 0.05),
           "within10": within(t, p, 0.10), "bias": float(np.median((p - t) / t)) if len(t) else math.nan}
    if candidate_sets:
        taus = [kendall_tau(t[list(s)], p[list(s)]) for s in candidate_sets if len(s) >= 2]
        pairs = [pairwise_accuracy(t[list(s)], p[list(s)]) for s in candidate_sets if len(s) >= 2]
        taus = [v for v in taus if np.isfinite(v)]
        pairs = [v for v in pairs if np.isfinite(v)]
        out["kendall_tau"] = float(np.mean(taus)) if taus else math.nan
        out["pairwise"] = float(np.mean(pairs)) if pairs else math.nan
    else:
        out["kendall_tau"] = kendall_tau(t, p)
        out["pairwise"] = pairwise_accuracy(t, p)
    return out


def network_summary(y_true: Any, y_pred: Any, networks: Sequence[int],
                    candidate_sets: Sequence[Sequence[int]] = ()) -> dict:
    """Whole-network figures with each metric on its own population.

    Errors (RMSPE, MAPE, ±5%/±10%, bias) are computed on the test networks only (``networks``,
    indices into ``y_true``); ranking (mean Kendall tau and pairwise accuracy) on the candidate
    sets only, so ranking candidates -- many near-copies of one network -- do not weigh on the
    error figures, nor unrelated networks on the ranking.

    Returns:
        ``{"n", "rmspe", "mape", "within5", "within10", "bias", "kendall_tau", "pairwise",
        "n_sets"}`` (NaN where a population is empty).
    """
    t, p = _pair(y_true, y_pred)
    idx = [int(i) for i in networks]
    if idx:
        err = summarize(t[idx], p[idx])
    else:
        err = {"n": 0, "rmspe": math.nan, "mape": math.nan, "within5": math.nan, "within10": math.nan,
               "bias": math.nan}
    sets = [list(s) for s in candidate_sets if len(s) >= 2]
    taus = [v for v in (kendall_tau(t[s], p[s]) for s in sets) if np.isfinite(v)]
    pairs = [v for v in (pairwise_accuracy(t[s], p[s]) for s in sets) if np.isfinite(v)]
    err.update(kendall_tau=float(np.mean(taus)) if taus else math.nan,
               pairwise=float(np.mean(pairs)) if pairs else math.nan, n_sets=len(sets))
    return err


__all__ = ["relative_errors", "rmspe", "mape", "within", "kendall_tau", "pairwise_accuracy", "summarize",
           "network_summary"]
