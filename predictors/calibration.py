"""A platform's whole-network measurements: which networks, measured how, read back how.

The in-context correction (:mod:`compactnet.predictors.context`) learns from whole networks
measured on the platform. :func:`calibration_set` chooses them: networks drawn from the latency
families (:data:`compactnet.predictors.families.FAMILIES`, 32-224 px, four architectures) with
their own seed, plus -- when a model is named -- the untrimmed model and trims of it (a fifth of the set; a
search asks mostly about those). :func:`measure_calibration` times them by the protocol in chunks,
each with the untrimmed MobileNetV2 as reference (resumable: a results file beside the
predictor), and :func:`measured` reads them back drift-corrected: every network's ratio to the
reference of its chunk times the median reference figure (more stable from run to run than
their minimum: on machine D the first chunk of a run often read 2-3% below the others).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from compactnet.errors import bad_value
from compactnet.predictors.families import CALIBRATION_SEED, FAMILIES, Family, draw_networks
from compactnet.predictors.testset import TestNetwork, TestSet, load_results, measure_testset

log = logging.getLogger(__name__)
#: Whole networks a platform is calibrated on by default (issue 15's budget: at most 100). On machine D
#: (onnxruntime, 200 held-out family networks measured the same day) 60 networks, a third of them trims
#: of the model, gave 94.5% within ±10% and 72% within ±5%; the same 60 plus 40 more family networks
#: 97.5% and 76% (results/machine-d/logs/exp15c.txt).
DEFAULT_NETWORKS = 100
#: Share of the networks that are trims of the named model (the untrimmed model included).
MODEL_SHARE = 1 / 5


def calibration_set(n: int = DEFAULT_NETWORKS, model: str | None = None, seed: int = CALIBRATION_SEED,
                    families: Sequence[Family] = FAMILIES) -> TestSet:
    """The networks a platform's predictor is calibrated on.

    Args:
        n: Networks in all (>= 12).
        model: A registry model whose untrimmed form and trims (at 32 px) take :data:`MODEL_SHARE` of the set.
        seed: Seed of the draw.
        families: The families the rest is drawn from (default: all).

    Raises:
        ConfigError: ``n`` below 12 or an unknown model.
    """
    from compactnet.predictors.context import MIN_NETWORKS

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < MIN_NETWORKS:
        raise bad_value("networks", f"an integer >= {MIN_NETWORKS}", n)
    nets: list[TestNetwork] = []
    if model is not None:
        from compactnet.models import get_entry
        from compactnet.predictors.families import draw_channels

        entry = get_entry(model)
        name, default = entry.name, entry.config_cls().to_dict()
        default.pop("num_classes", None)
        nets.append(TestNetwork(f"{name}-untrimmed", name, default))
        rng = np.random.default_rng(seed + 1)
        for i in range(int(round(n * MODEL_SHARE)) - 1):
            nets.append(TestNetwork(f"{name}-trim-{i:03d}", name, draw_channels(name, rng)))
    nets += draw_networks(n - len(nets), seed, families=families, exclude=nets)
    return TestSet(seed, nets)


def measure_calibration(testset: TestSet, platform: Any, results_path: str | Path, **protocol: Any) -> dict:
    """Measure the set by the protocol (resumable; see :func:`compactnet.predictors.testset.measure_testset`)."""
    return measure_testset(testset, platform, results_path, include_candidates=False, **protocol)


def measured(testset: TestSet, results_path: str | Path, platform_key: str
             ) -> tuple[list[TestNetwork], list[Any], np.ndarray]:
    """``(networks, specs, ms)`` of the measured networks of ``testset``, drift-corrected by the reference."""
    res = load_results(results_path, platform_key, normalized=True)
    nets = [n for n in testset.all_networks() if n.id in res]
    return nets, [n.spec() for n in nets], np.array([res[n.id] for n in nets], dtype=np.float64)


__all__ = ["calibration_set", "measure_calibration", "measured", "DEFAULT_NETWORKS"]
