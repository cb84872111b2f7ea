"""The final decision of a search: ``k`` protocol comparisons, judged on the worst lower bound.

One comparison of the same two networks can drift between runs (session 1 read 1.51x, then 1.80x
minutes apart, for one network). The final measurement after the retrain therefore repeats the
protocol comparison ``k`` times (:func:`default_repeats`: 3 for the ``paper`` preset, 2 otherwise)
and :func:`worst_case` calls the target reached only when every comparison was taken (none refused,
none flagged as taken on a busy machine) and the *worst* lower bound of the speedup's interval meets
the target. The report lists every comparison.

Snapshot thresholds keep their own single measurement (:mod:`compactnet.search.snapshots`).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Sequence

from compactnet.errors import MeasurementError, bad_value

log = logging.getLogger(__name__)

#: The rule written into reports.
RULE = "worst lower bound of {k} protocol comparison(s)"


def default_repeats(preset_name: str) -> int:
    """Comparisons of the final decision for a preset: 3 for ``paper``, 2 for ``quick`` (and others)."""
    return 3 if str(preset_name) == "paper" else 2


def check_repeats(repeats: Any) -> int:
    """Validate a number of comparisons (an integer of at least 1).

    Raises:
        ConfigError: Anything else.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise bad_value("final_repeats", "an integer of at least 1 (protocol comparisons of the final decision)",
                        repeats)
    return int(repeats)


def repeat_measure(measure: Callable[[], Any], repeats: int) -> list[dict]:
    """Run ``measure`` (returning a :class:`~compactnet.search.loop.Measured`) ``repeats`` times.

    A comparison the protocol refuses (:class:`~compactnet.errors.MeasurementError`) is recorded as
    ``{"repeat": k, "refused": reason}``; the others as ``{"repeat": k, **measured.to_dict()}``.
    """
    out: list[dict] = []
    for k in range(1, check_repeats(repeats) + 1):
        try:
            m = measure()
        except MeasurementError as exc:
            log.warning("final comparison %d/%d refused: %s", k, repeats, exc)
            out.append({"repeat": k, "refused": str(exc)})
            continue
        d = m.to_dict() if hasattr(m, "to_dict") else dict(m)
        log.info("final comparison %d/%d: %.2fx [%.2f, %.2f]%s", k, repeats, d["speedup"], d["low"], d["high"],
                 " (busy machine)" if d.get("busy") else "")
        out.append({"repeat": k, **d})
    return out


def worst_case(comparisons: Sequence[Mapping[str, Any]], target: float) -> dict | None:
    """The decision over repeated comparisons: the worst one, reached only if its lower bound meets ``target``.

    Args:
        comparisons: As :func:`repeat_measure` returns them (``speedup``, ``low``, ``high``, ``busy``,
            or ``refused``).
        target: The target speedup.

    Returns:
        None when no comparison was taken; else the comparison with the lowest lower bound (its
        ``original_ms``, ``trimmed_ms``, ``speedup``, ``low``, ``high``, ``detail``) with ``reached``
        (every comparison taken, none busy, worst lower bound >= target), ``busy`` (any flagged),
        ``repeats``, ``refused`` (count), ``rule`` and ``comparisons`` (all of them).
    """
    taken = [dict(c) for c in comparisons if "refused" not in c]
    if not taken:
        return None
    worst = min(taken, key=lambda c: float(c["low"]))
    busy = any(bool(c.get("busy")) for c in taken)
    refused = len(comparisons) - len(taken)
    reached = bool(not busy and refused == 0 and float(worst["low"]) >= float(target))
    out = {k: v for k, v in worst.items() if k != "repeat"}
    out.update({"reached": reached, "busy": busy, "worst_repeat": worst.get("repeat"), "repeats": len(comparisons),
                "refused": refused, "rule": RULE.format(k=len(comparisons)),
                "spread": [min(float(c["speedup"]) for c in taken), max(float(c["speedup"]) for c in taken)],
                "comparisons": [dict(c) for c in comparisons]})
    return out


__all__ = ["default_repeats", "check_repeats", "repeat_measure", "worst_case", "RULE"]
