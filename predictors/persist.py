"""Saving and loading latency predictors, with a metadata record checked on load.

Two formats:

- :func:`save` / :func:`load`: one joblib file (any predictor, any estimator) plus a sidecar
  ``<file>.meta.json`` readable without unpickling. **Loading a joblib file runs arbitrary code
  from the file: only load files you made yourself or fully trust.** Never load one downloaded
  from the zoo or any other shared source.
- :func:`save_portable` / :func:`load_portable`: a folder of XGBoost's own JSON model files
  (``Booster.save_model("x.json")``) and one ``predictor.json`` with everything else (estimator
  settings and learned numbers, calibration, platform, metadata). Loading parses JSON only, never
  unpickles: this is what the zoo ships and what a user may load from anyone. Supported
  estimators: GBDT, lookup table, FLOPs-linear, constant, and transfer regressors built on them
  (a random forest has no portable form: save it with joblib or refit).

The metadata record: package and runtime versions (compactnet, python, numpy, scikit-learn,
xgboost), platform key, hardware, runtime version, feature-schema hash per kind, training-set
size, creation time. :func:`check_metadata` compares it with this installation and an expected
platform and warns (:class:`PredictorMismatchWarning`) on every difference that can change
predictions.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import platform as _pyplatform
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from compactnet.errors import CompactNetError, ConfigError, ModelFileError
from compactnet.spec import Platform
from compactnet.predictors.features import FEATURE_VERSION, SCHEMAS

log = logging.getLogger(__name__)
PORTABLE_FORMAT = "compactnet-latency-predictor"
PORTABLE_VERSION = 1
MANIFEST = "predictor.json"


class PredictorMismatchWarning(UserWarning):
    """A saved predictor was made with other versions, features or platform than asked for."""


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return ""


def environment() -> dict:
    """Versions of everything that can change a prediction."""
    return {"compactnet": _version("compactnet"), "python": _pyplatform.python_version(),
            "numpy": _version("numpy"), "scikit-learn": _version("scikit-learn"),
            "xgboost": _version("xgboost-cpu") or _version("xgboost"), "joblib": _version("joblib")}


def metadata(predictor: Any) -> dict:
    """The metadata record of a fitted :class:`~compactnet.predictors.network.LatencyPredictor`."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(predictor, "estimators_")
    plat: Platform = predictor.platform_
    return {"environment": environment(), "platform": plat.key, "hardware": plat.hardware,
            "runtime_version": plat.runtime_version, "feature_version": FEATURE_VERSION,
            "schema_hashes": dict(predictor.schema_hashes_), "n_samples": dict(predictor.n_samples_),
            "n_samples_total": int(sum(predictor.n_samples_.values())),
            "estimators": {k: type(e).__name__ for k, e in predictor.estimators_.items()},
            "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def check_metadata(meta: dict, platform: Platform | str | None = None) -> list[str]:
    """Compare a metadata record with this installation (and an expected platform); warn.

    Args:
        meta: Record from :func:`metadata`.
        platform: Expected platform (key or :class:`Platform`; hardware compared when given).

    Returns:
        The mismatches found (each also issued as a :class:`PredictorMismatchWarning`).
    """
    problems = []
    for kind, h in meta.get("schema_hashes", {}).items():
        if kind in SCHEMAS and SCHEMAS[kind].hash != h:
            problems.append(f"feature schema of {kind!r} changed since the predictor was saved ({h} -> "
                            f"{SCHEMAS[kind].hash}); refit it")
    if meta.get("feature_version") not in (None, FEATURE_VERSION):
        problems.append(f"feature version {meta.get('feature_version')} != {FEATURE_VERSION}")
    env, here = meta.get("environment", {}), environment()
    for pkg in ("xgboost", "scikit-learn", "numpy", "compactnet"):
        if env.get(pkg) and here.get(pkg) and env[pkg] != here[pkg]:
            problems.append(f"saved with {pkg} {env[pkg]}, running {here[pkg]}")
    if platform is not None:
        plat = platform if isinstance(platform, Platform) else Platform.parse(str(platform), hardware="")
        if meta.get("platform") != plat.key:
            problems.append(f"predictor is for {meta.get('platform')}, not {plat.key}")
        if plat.hardware and meta.get("hardware") and meta["hardware"] != plat.hardware:
            problems.append(f"predictor was profiled on {meta['hardware']!r}, this is {plat.hardware!r}")
        if plat.runtime_version and meta.get("runtime_version") and meta["runtime_version"] != plat.runtime_version:
            problems.append(f"runtime version {meta['runtime_version']} at profiling, {plat.runtime_version} now")
    for p in problems:
        warnings.warn(p, PredictorMismatchWarning, stacklevel=3)
    return problems


# ----- joblib ---------------------------------------------------------------------------------------
def save(predictor: Any, path: str | Path) -> Path:
    """Write a predictor with joblib plus ``<path>.meta.json`` (readable without unpickling)."""
    import joblib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = metadata(predictor)
    tmp = path.with_name(path.name + ".tmp")
    joblib.dump({"format": PORTABLE_FORMAT + "-joblib", "metadata": meta, "predictor": predictor}, tmp)
    tmp.replace(path)
    Path(str(path) + ".meta.json").write_text(json.dumps(meta, indent=2))
    return path


def load(path: str | Path, platform: Platform | str | None = None) -> Any:
    """Load a joblib predictor. **Unsafe on untrusted files** (unpickling runs code): use
    :func:`load_portable` for anything you did not write yourself.

    Warns (:class:`PredictorMismatchWarning`) when versions, feature schemas or the platform differ.

    Raises:
        ModelFileError: Missing or not a predictor file.
    """
    import joblib

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"predictor file {path} does not exist")
    try:
        obj = joblib.load(path)
    except (OSError, EOFError, ValueError, KeyError, ImportError, AttributeError) as exc:
        raise ModelFileError(f"predictor file {path} is not a readable joblib file: {exc}") from exc
    if not isinstance(obj, dict) or "predictor" not in obj:
        raise ModelFileError(f"{path} is not a CompactNet predictor file")
    check_metadata(obj.get("metadata", {}), platform)
    return obj["predictor"]


# ----- portable (JSON only) ----------------------------------------------------------------------------
def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


_TUPLE_ATTRS = {"feature_names_", "base_cols_", "base_coef_", "coef_", "unit_cols_"}


def _simple_attrs(est: Any, skip: set[str]) -> dict:
    out = {}
    for k, v in vars(est).items():
        if k.endswith("_") and not k.startswith("_") and k not in skip:
            out[k] = _jsonable(v)
    return out


def _set_attrs(est: Any, attrs: dict) -> None:
    for k, v in attrs.items():
        setattr(est, k, tuple(v) if (k in _TUPLE_ATTRS and isinstance(v, list)) else v)


def _dump_estimator(est: Any, folder: Path, name: str) -> dict:
    from compactnet.predictors.estimators import (ConstantRegressor, FlopsLinearRegressor, GBDTLatencyRegressor,
                                                  LookupTableRegressor)
    from compactnet.predictors.transfer import TransferRegressor

    if isinstance(est, GBDTLatencyRegressor):
        files = {"model": f"{name}.json", "members": [], "quantile": None}
        est.model_.save_model(folder / files["model"])
        for i, m in enumerate(est.members_):
            files["members"].append(f"{name}.member{i}.json")
            m.save_model(folder / files["members"][-1])
        if est.quantile_model_ is not None:
            files["quantile"] = f"{name}.quantile.json"
            est.quantile_model_.save_model(folder / files["quantile"])
        return {"type": "gbdt", "params": _jsonable(est.get_params()), "boosters": files,
                "attrs": _simple_attrs(est, {"model_", "members_", "quantile_model_"})}
    if isinstance(est, (ConstantRegressor, FlopsLinearRegressor)):
        return {"type": "constant" if isinstance(est, ConstantRegressor) else "flops",
                "params": _jsonable(est.get_params()), "attrs": _simple_attrs(est, set())}
    if isinstance(est, LookupTableRegressor):
        table = [{"unit": list(u), "points": [[a, b, v] for (a, b), v in pts.items()]} for u, pts in est.table_.items()]
        return {"type": "lookup", "params": _jsonable(est.get_params()), "table": table,
                "fallback": _dump_estimator(est.fallback_, folder, f"{name}.fallback"),
                "attrs": _simple_attrs(est, {"table_", "fallback_", "n_fallback_"})}
    if isinstance(est, TransferRegressor):
        from sklearn.frozen import FrozenEstimator

        priors = [_dump_estimator(p.estimator if isinstance(p, FrozenEstimator) else p, folder, f"{name}.prior{i}")
                  for i, p in enumerate(est.priors)]
        params = {k: v for k, v in est.get_params(deep=False).items() if k not in ("priors", "residual_estimator")}
        return {"type": "transfer", "params": _jsonable(params), "priors": priors,
                "residual": None if est.residual_ is None else _dump_estimator(est.residual_, folder, f"{name}.residual"),
                "residual_has_margin": bool(getattr(est, "_residual_has_margin", False)),
                "attrs": _simple_attrs(est, {"residual_"})}
    raise ConfigError(f"a {type(est).__name__} has no portable (JSON) form; use the gbdt, lookup, flops or "
                      "constant estimator, or save(predictor, path) with joblib for your own use")


def _plain_name(name: Any) -> bool:
    """A file name with no folder part (no ``/``, ``\\``, ``..``, drive or absolute path)."""
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name
            and ":" not in name and "\0" not in name and Path(name).name == name)


def _load_estimator(d: dict, folder: Path) -> Any:
    from compactnet.predictors.estimators import (ConstantRegressor, FlopsLinearRegressor, GBDTLatencyRegressor,
                                                  LookupTableRegressor)
    from compactnet.predictors.transfer import TransferRegressor

    kind = d.get("type")
    if kind == "gbdt":
        from xgboost import XGBRegressor

        def booster(fname: Any):
            if not _plain_name(fname):
                raise ModelFileError(f"portable predictor {folder}: booster file name {fname!r} must be a plain file "
                                     "name inside the folder (no path parts)")
            p = folder / fname
            if not p.is_file():
                raise ModelFileError(f"portable predictor {folder} lacks booster file {fname}")
            m = XGBRegressor()
            m.load_model(p)
            m.set_params(n_jobs=d["params"].get("n_jobs"))
            return m

        est = GBDTLatencyRegressor(**d["params"])
        _set_attrs(est, d["attrs"])
        est.model_ = booster(d["boosters"]["model"])
        est.members_ = [booster(f) for f in d["boosters"]["members"]]
        est.quantile_model_ = booster(d["boosters"]["quantile"]) if d["boosters"]["quantile"] else None
        return est
    if kind in ("constant", "flops"):
        est = (ConstantRegressor if kind == "constant" else FlopsLinearRegressor)(**d["params"])
        _set_attrs(est, d["attrs"])
        return est
    if kind == "lookup":
        params = dict(d["params"])
        if params.get("unit_cols") is not None:
            params["unit_cols"] = tuple(params["unit_cols"])
        est = LookupTableRegressor(**params)
        _set_attrs(est, d["attrs"])
        est.table_ = {tuple(t["unit"]): {(float(a), float(b)): float(v) for a, b, v in t["points"]} for t in d["table"]}
        est.fallback_ = _load_estimator(d["fallback"], folder)
        est.n_fallback_ = 0
        est._interp = {}
        return est
    if kind == "transfer":
        from sklearn.frozen import FrozenEstimator

        priors = tuple(FrozenEstimator(_load_estimator(p, folder)) for p in d["priors"])
        est = TransferRegressor(priors=priors, **d["params"])
        _set_attrs(est, d["attrs"])
        est.residual_ = None if d["residual"] is None else _load_estimator(d["residual"], folder)
        est._residual_has_margin = d.get("residual_has_margin", False)
        return est
    raise ModelFileError(f"portable predictor {folder}: unknown estimator type {kind!r}")


def save_portable(predictor: Any, folder: str | Path) -> Path:
    """Write a predictor as XGBoost JSON boosters plus ``predictor.json`` (no pickle anywhere).

    Raises:
        ConfigError: An estimator without a portable form (random forest).
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(predictor, "estimators_")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    kinds = {k: _dump_estimator(e, folder, k) for k, e in predictor.estimators_.items()}
    manifest = {
        "format": PORTABLE_FORMAT, "format_version": PORTABLE_VERSION, "metadata": metadata(predictor),
        "predictor": {"params": _jsonable({k: v for k, v in predictor.get_params(deep=False).items()
                                           if k != "estimator"}),
                      "platform": predictor.platform_.to_dict(), "n_samples": predictor.n_samples_,
                      "schema_hashes": predictor.schema_hashes_, "scale": predictor.scale_,
                      "offset_ms": predictor.offset_,
                      "per_call_ms": float(getattr(predictor, "per_call_ms_", 0.0)),
                      "kind_scale": dict(getattr(predictor, "kind_scale_", {}) or {}),
                      "overhead_ms": float(getattr(predictor, "overhead_ms_", predictor.overhead_ms or 0.0)),
                      "calibration": _jsonable(predictor.calibration_)},
        "kinds": kinds, "fallback": _dump_estimator(predictor.fallback_, folder, "fallback"),
        "context": _dump_context(getattr(predictor, "context_", None), folder),
    }
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(folder / MANIFEST)
    return folder


def load_portable(folder: str | Path, platform: Platform | str | None = None) -> Any:
    """Load a predictor written by :func:`save_portable`: JSON parsing only, safe on shared files.

    Warns (:class:`PredictorMismatchWarning`) when versions, feature schemas or the platform differ.

    Raises:
        ModelFileError: Missing folder/manifest, wrong format, a malformed manifest, or a missing,
            misnamed (not a plain file name) or unreadable booster file.
    """
    folder = Path(folder)
    mf = folder / MANIFEST
    if not mf.is_file():
        raise ModelFileError(f"{folder} is not a portable predictor (no {MANIFEST})")
    try:
        manifest = json.loads(mf.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{mf} is not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    except UnicodeDecodeError as exc:
        raise ModelFileError(f"{mf} is not a text (UTF-8) file: {exc.reason}") from exc
    if not isinstance(manifest, dict):
        raise ModelFileError(f"{mf} is not a CompactNet latency predictor (not a JSON object)")
    if manifest.get("format") != PORTABLE_FORMAT:
        raise ModelFileError(f"{mf} is not a CompactNet latency predictor (format {manifest.get('format')!r})")
    version = manifest.get("format_version", 0)
    if not isinstance(version, int):
        raise ModelFileError(f"{mf}: format_version must be an integer, got {version!r}")
    if version > PORTABLE_VERSION:
        raise ModelFileError(f"{mf} has format version {version}; this CompactNet reads up to "
                             f"{PORTABLE_VERSION}: upgrade compactnet")
    from xgboost.core import XGBoostError

    try:
        meta = manifest.get("metadata", {})
        check_metadata(meta if isinstance(meta, dict) else {}, platform)
        return _predictor_from_manifest(manifest, folder)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, XGBoostError, CompactNetError) as exc:
        what = f"missing entry {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise ModelFileError(f"portable predictor {folder} is malformed ({what}); save it again with "
                             "save_portable") from exc


def _predictor_from_manifest(manifest: dict, folder: Path) -> Any:
    from compactnet.predictors.network import LatencyPredictor

    p = manifest["predictor"]
    pred = LatencyPredictor(**p["params"])
    pred.platform_ = Platform.from_dict(p["platform"])
    pred.n_samples_ = {k: int(v) for k, v in p["n_samples"].items()}
    pred.schema_hashes_ = dict(p["schema_hashes"])
    pred.scale_ = float(p["scale"])
    pred.offset_ = float(p["offset_ms"])
    pred.per_call_ms_ = float(p.get("per_call_ms", 0.0))  # files written before the per-layer term: 0
    pred.kind_scale_ = {str(k): float(v) for k, v in (p.get("kind_scale") or {}).items()}  # before: none
    # files written before the overhead was learned: the parameter was the overhead in use
    pred.overhead_ms_ = float(p.get("overhead_ms", p["params"].get("overhead_ms") or 0.0))
    pred.calibration_ = p.get("calibration")
    pred.estimators_ = {k: _load_estimator(d, folder) for k, d in manifest["kinds"].items()}
    pred.fallback_ = _load_estimator(manifest["fallback"], folder)
    pred.context_ = _load_context(manifest.get("context"), folder)  # files written before it: none
    return pred


def _dump_context(ctx: Any, folder: Path) -> dict | None:
    """The in-context correction as its booster's JSON file plus settings and learned numbers."""
    if ctx is None:
        return None
    ctx.booster_.save_model(folder / "context.json")
    return {"params": _jsonable(ctx.get_params()), "booster": "context.json",
            "attrs": _simple_attrs(ctx, {"booster_"})}


def _load_context(d: Any, folder: Path) -> Any:
    if d is None:
        return None
    import xgboost as xgb

    from compactnet.predictors.context import ContextCorrection

    fname = d["booster"]
    if not _plain_name(fname) or not (folder / fname).is_file():
        raise ModelFileError(f"portable predictor {folder}: context booster {fname!r} must be a plain file name "
                             "of a file inside the folder")
    ctx = ContextCorrection(**d["params"])
    _set_attrs(ctx, d["attrs"])
    ctx.cv_errors_ = np.asarray(ctx.cv_errors_, dtype=np.float64)
    ctx.booster_ = xgb.Booster()
    ctx.booster_.load_model(folder / fname)
    return ctx


__all__ = ["PredictorMismatchWarning", "environment", "metadata", "check_metadata", "save", "load", "save_portable",
           "load_portable", "PORTABLE_FORMAT", "MANIFEST"]
