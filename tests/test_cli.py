"""The `compactnet` command line: help everywhere, one-line errors on bad input, happy paths on tiny data.

Every command runs in-process through :func:`compactnet.cli.main` (what the console script calls),
so the exit status and the exact stderr are the user's.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings

import onnx
import pytest

from compactnet.cli import cli, main


def run(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI; return (exit status, stdout, stderr)."""
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, err: str, *needles: str) -> None:
    """Exit status 2 and exactly one stderr line, starting 'error:', naming the problem, without a traceback."""
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def _all_commands() -> list[list[str]]:
    import click

    ctx = click.Context(cli)
    paths = []
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        paths.append([name])
        if isinstance(cmd, click.Group):
            paths += [[name, sub] for sub in cmd.list_commands(ctx)]
    return paths


COMMANDS = _all_commands()


def test_every_documented_command_is_there():
    names = {c[0] for c in COMMANDS}
    assert {"train", "evaluate", "export", "spec", "platforms", "profile", "agent", "fit", "predict", "optimize",
            "zoo", "report"} <= names
    assert {("zoo", s) for s in ("list", "info", "pull", "best", "publish", "serve")} <= {tuple(c) for c in COMMANDS}


@pytest.mark.parametrize("command", [None] + COMMANDS, ids=lambda c: " ".join(c) if c else "compactnet")
def test_help_of_every_command(capsys, command):
    rc, out, err = run(capsys, *(command or []), "--help")
    assert rc == 0, err
    assert out.startswith("Usage: ") and "--help" in out


# ----- bad input: one line, status 2, no traceback --------------------------------------------------
def test_missing_data_set(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("COMPACTNET_DATA", str(tmp_path))  # exists, but an explicit --data wins
    rc, _, err = run(capsys, "train", "--model", "resnet20", "--data", tmp_path / "nowhere.npz",
                     "--out", tmp_path / "run")
    assert_one_line_error(rc, err, "nowhere.npz", "--data", "COMPACTNET_DATA")


def test_garbage_npz(capsys, tmp_path):
    bad = tmp_path / "cifar10-jpeg.npz"
    bad.write_bytes(os.urandom(3000))
    rc, _, err = run(capsys, "train", "--model", "resnet20", "--data", bad, "--out", tmp_path / "run")
    assert_one_line_error(rc, err, "cifar10-jpeg.npz", "not a readable")


def test_truncated_real_npz(capsys, tmp_path, tiny_npz):
    cut = tmp_path / "cut" / "cifar10-jpeg.npz"
    cut.parent.mkdir()
    cut.write_bytes(tiny_npz.read_bytes()[: tiny_npz.stat().st_size * 2 // 3])
    rc, _, err = run(capsys, "train", "--model", "resnet20", "--data", cut, "--out", tmp_path / "run")
    assert_one_line_error(rc, err, "not a readable")


def test_pickle_holding_code_is_refused_and_not_run(capsys, tmp_path, tiny_batches):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    (tiny_batches / "data_batch_3").write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}, protocol=2))
    rc, _, err = run(capsys, "train", "--model", "resnet20", "--data", tiny_batches, "--out", tmp_path / "run")
    assert_one_line_error(rc, err, "refusing to unpickle", "mkdir")
    assert not marker.exists()


def test_truncated_onnx_file(capsys, tmp_path):
    good = tmp_path / "resnet20.onnx"
    rc, _, err = run(capsys, "export", "--model", "resnet20", "--random-init", "--out", good)
    assert rc == 0, err
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    rc, _, err = run(capsys, "spec", cut)
    assert_one_line_error(rc, err, "cut.onnx", "truncated or corrupt")


def test_unknown_model_name(capsys):
    rc, _, err = run(capsys, "spec", "--model", "mobilenetv7")
    assert_one_line_error(rc, err, "--model", "mobilenetv7", "mobilenetv2, resnet20, vgg16")


@pytest.mark.parametrize("widths,needle", [([32] * 17, "18"), ([32, 16] + [24] * 2 + [0] * 14, "positive")],
                         ids=["wrong-length", "zero-width"])
def test_bad_channel_configuration(capsys, tmp_path, widths, needle):
    f = tmp_path / "channels.json"
    f.write_text(json.dumps(widths))
    rc, _, err = run(capsys, "spec", "--model", "mobilenetv2", "--channels", f)
    assert_one_line_error(rc, err, "widths", needle)


def test_fit_offers_only_estimators_it_can_save(capsys, tmp_path):
    rc, out, err = run(capsys, "fit", "--help")
    assert "[gbdt|lookup|flops|constant]" in out
    rc, _, err = run(capsys, "fit", "--estimator", "forest", "--store", tmp_path / "s.sqlite")
    assert rc == 2 and "'forest' is not one of" in err and "Traceback" not in err


# ----- happy paths on tiny data ----------------------------------------------------------------------
@pytest.fixture
def tiny_resnet_channels(tmp_path):
    f = tmp_path / "tiny-resnet20.json"
    f.write_text(json.dumps({"model": "resnet20", "stages": [4, 8, 8], "inner": [4] * 9}))
    return f


def test_train_then_evaluate_tiny_resnet20(capsys, tmp_path, tiny_npz, tiny_resnet_channels):
    out_dir = tmp_path / "run"
    rc, out, err = run(capsys, "train", "--model", "resnet20", "--channels", tiny_resnet_channels, "--data", tiny_npz,
                       "--epochs", "1", "--batch-size", "64", "--threads", "1", "--out", out_dir)
    assert rc == 0, err
    # 50 images of a 4-8-8 ResNet: one epoch may leave validation at 0% (then "best epoch 0"), depending on
    # the torch state earlier tests leave; what matters here is the run, its card and the evaluation below
    assert "best epoch" in out and "test top-1" in out
    weights = out_dir / "resnet20.safetensors"
    card = json.loads((out_dir / "card.json").read_text())
    assert weights.is_file()
    assert card["model"] == "resnet20" and card["epochs_run"] == 1 and card["channels"]["stages"] == [4, 8, 8]
    assert card["data_copy"] == "packed-jpeg" and len(card["test_hash"]) == 16 and 0 <= card["test_top1"] <= 100

    rc, out, err = run(capsys, "evaluate", "--model", "resnet20", "--no-latency", "--weights", weights,
                       "--channels", tiny_resnet_channels, "--data", tiny_npz, "--json")
    assert rc == 0, err
    res = json.loads(out)
    assert res["images"] == 50 and res["top1"] == pytest.approx(card["test_top1"])
    rc, out, err = run(capsys, "evaluate", "--model", "resnet20", "--no-latency", "--weights", weights,
                       "--channels", tiny_resnet_channels, "--data", tiny_npz)
    assert rc == 0 and out.startswith(f"resnet20: top-1 {card['test_top1']:.2f}% on the test split (50 images")


def test_export_random_init_writes_a_valid_onnx(capsys, tmp_path, tiny_resnet_channels):
    path = tmp_path / "out" / "tiny.onnx"
    rc, out, err = run(capsys, "export", "--model", "resnet20", "--channels", tiny_resnet_channels, "--random-init",
                       "--out", path)
    assert rc == 0, err
    assert "opset 17" in out and "max abs diff" in out
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert proto.ir_version <= 10 and [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert {p.key: p.value for p in proto.metadata_props}["architecture"] == "resnet20"


def test_spec_of_torch_model_and_of_its_onnx_export_print_the_same(capsys, tmp_path):
    """Issue 2: `compactnet spec` on the exported ONNX and on the torch model print the same layers."""
    path = tmp_path / "mobilenetv2.onnx"
    rc, _, err = run(capsys, "export", "--model", "mobilenetv2", "--random-init", "--out", path)
    assert rc == 0, err
    rc, from_torch, err = run(capsys, "spec", "--model", "mobilenetv2")
    assert rc == 0, err
    rc, from_onnx, err = run(capsys, "spec", path)
    assert rc == 0, err
    assert from_onnx == from_torch
    assert from_torch.strip().splitlines()[-1].startswith("mobilenetv2: 64 layers")
    rc, js, _ = run(capsys, "spec", "--model", "mobilenetv2", "--json")
    assert rc == 0 and len(json.loads(js)["layers"]) == 64


# ----- fit: default folder, calibration, hardware check ----------------------------------------------
SYN = "synthetic-cpu-fp32-t1"


@pytest.fixture
def synthetic_store(capsys, tmp_path):
    store = tmp_path / "samples.sqlite"
    rc, _, err = run(capsys, "profile", "--platform", SYN, "--samples", "12", "--store", store, "--model", "resnet20",
                       "--strategy", "sobol")
    assert rc == 0, err
    return store


def test_fit_calibrates_on_measured_networks_and_saves_to_home(capsys, synthetic_store):
    rc, out, err = run(capsys, "fit", "--platform", SYN, "--store", synthetic_store, "--estimator", "flops",
                       "--calibrate", "3", "--model", "resnet20", "--json")
    assert rc == 0, err
    info = json.loads(out)
    assert info["platform"] == SYN and isinstance(info["predictor"]["platform"], dict)
    home = os.environ["COMPACTNET_HOME"]
    assert info["out"] == os.path.join(home, "predictors", SYN)
    assert os.path.isfile(os.path.join(info["out"], "predictor.json"))
    nets = info["calibration_set"]["networks"]
    assert [n["name"] for n in nets] == ["resnet20", "resnet20-trim1", "resnet20-trim2"]
    assert nets[0]["macs"] > max(n["macs"] for n in nets[1:])  # the untrimmed model is the largest
    assert info["predictor"]["calibration"]["networks"] == 3
    # after calibration the predictor is closer to what was measured than before
    err_before = sum(abs(n["predicted_before_ms"] / n["measured_ms"] - 1) for n in nets)
    err_after = sum(abs(n["predicted_after_ms"] / n["measured_ms"] - 1) for n in nets)
    assert err_after < err_before
    # and `predict` finds it in the default folder
    rc, out, err = run(capsys, "predict", "--platform", SYN, "--model", "resnet20")
    assert rc == 0, err
    assert f"total on {SYN}" in out


def test_fit_calibrates_on_a_measured_development_set(capsys, tmp_path, synthetic_store):
    from compactnet.cli import CALIBRATION_MODE_CHOICES
    from compactnet.predictors.network import CALIBRATION_MODES
    from compactnet.predictors.testset import generate_testset, measure_testset

    assert CALIBRATION_MODE_CHOICES == CALIBRATION_MODES
    dev = tmp_path / "dev"
    ts = generate_testset(seed=3, n_mobilenetv2=0, n_resnet20=4, n_vgg=0, n_candidate_sets=0)
    ts.save(dev / "testset.json")
    measure_testset(ts, SYN, dev / "results.json", model_of=lambda n: n.spec(), rounds=3, runs=2, warmup=0,
                    busy="ignore", check_window=0)
    rc, out, err = run(capsys, "fit", "--platform", SYN, "--store", synthetic_store, "--estimator", "flops",
                       "--calibrate-from", dev, "--calibration-mode", "affine", "--out", tmp_path / "p", "--json")
    assert rc == 0, err
    info = json.loads(out)
    assert info["predictor"]["calibration"]["mode"] == "affine"
    nets = info["calibration_set"]["networks"]
    assert [n["name"] for n in nets] == [n.id for n in ts.networks]
    rc, out, err = run(capsys, "fit", "--platform", SYN, "--store", synthetic_store, "--estimator", "flops",
                       "--calibrate-from", dev, "--out", tmp_path / "p")
    assert rc == 0 and "calibrated on 4 network(s) measured earlier" in out and "within ±10%" in out
    rc, _, err = run(capsys, "fit", "--platform", SYN, "--store", synthetic_store, "--calibrate-from", dev,
                     "--calibrate", "3")
    assert rc != 0 and "give one of them" in err


def test_predictor_from_other_hardware_warns(capsys, tmp_path, synthetic_store):
    folder = tmp_path / "pred"
    rc, _, err = run(capsys, "fit", "--platform", SYN, "--store", synthetic_store, "--estimator", "flops",
                     "--out", folder)
    assert rc == 0, err
    manifest = json.loads((folder / "predictor.json").read_text())
    manifest["metadata"]["hardware"] = "Some Phone SoC"
    (folder / "predictor.json").write_text(json.dumps(manifest))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc, _, err = run(capsys, "predict", "--platform", SYN, "--model", "resnet20", "--predictor", folder)
    assert rc == 0, err
    assert any("profiled on 'Some Phone SoC'" in str(w.message) for w in caught)


def test_default_predictor_folder_without_compactnet_home(tmp_path, monkeypatch):
    from compactnet.cli import _predictor_dir

    monkeypatch.delenv("COMPACTNET_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert _predictor_dir(SYN) == tmp_path / "compactnet" / "predictors" / SYN


def test_optimize_auto_fit_profiles_fits_and_saves_a_predictor_once(tmp_path, monkeypatch):
    from compactnet.cli import _predictor_dir, auto_fit_predictor

    monkeypatch.setenv("COMPACTNET_HOME", str(tmp_path))
    key = "synthetic-cpu-fp32-t1"
    pred = auto_fit_predictor(key, "mobilenetv2", samples=40, model_samples=20, n_calibrate=12)
    assert _predictor_dir(key).exists() and (tmp_path / "samples.sqlite").exists()
    assert pred.calibration_ is not None and pred.calibration_["networks"] == 12
    assert sum(pred.n_samples_.values()) == 60
    assert (tmp_path / "calibration" / key / "results.json").is_file()
