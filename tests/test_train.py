import numpy as np
import pytest
import torch

from compactnet.data import load_cifar10
from compactnet.errors import ConfigError, ModelFileError
from compactnet.models import create_model
from compactnet.train import augment, evaluate, get_recipe, lr_at, train

TINY = {"stages": [4, 8, 8], "inner": [4] * 9}


def test_augment_keeps_shape_and_content():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 255, (6, 3, 32, 32), dtype=torch.uint8)
    y = augment(x, gen)
    assert y.shape == x.shape and y.dtype == torch.uint8
    # each output is a crop of the padded input: its pixels come from the input or the zero padding
    assert set(y.unique().tolist()) <= set(x.unique().tolist()) | {0}


def test_cosine_schedule():
    r = get_recipe("default", epochs=10, lr=0.1, warmup_epochs=1.0)
    assert lr_at(r, 0.5) < r.lr
    assert lr_at(r, 1.0) == pytest.approx(r.lr)
    assert lr_at(r, 10.0) == pytest.approx(0.0, abs=1e-9)


def test_unknown_recipe():
    with pytest.raises(ConfigError, match="--recipe"):
        get_recipe("adamw-magic")


def test_training_learns_and_resumes(tiny_npz, tmp_path):
    ds = load_cifar10(tiny_npz)
    rec = get_recipe("default", epochs=3, batch_size=32, lr=0.05, label_smoothing=0.0)
    torch.manual_seed(0)
    full = create_model("resnet20", TINY)
    res = train(full, ds.train, ds.val, rec, out_dir=tmp_path / "a", seed=1, progress=False)
    assert len(res.history) == 3
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]

    # Simulate the interruption: train 3 epochs in a run whose checkpoint we cut at epoch 2.
    torch.manual_seed(0)
    part = create_model("resnet20", TINY)
    with pytest.raises(KeyboardInterrupt):
        train(part, ds.train, ds.val, rec, out_dir=tmp_path / "b", seed=1, progress=False,
              on_epoch=lambda r: _stop_at(r, 2))
    torch.manual_seed(123)  # a different global state must not matter after resume
    resumed = create_model("resnet20", TINY)
    res_b = train(resumed, ds.train, ds.val, rec, out_dir=tmp_path / "b", seed=1, progress=False)
    assert [h["train_loss"] for h in res_b.history] == pytest.approx([h["train_loss"] for h in res.history])
    assert evaluate(resumed, ds.test) == evaluate(full, ds.test)


def _stop_at(record, epoch):
    if record["epoch"] == epoch:
        raise KeyboardInterrupt


def test_resume_refuses_other_recipe(tiny_npz, tmp_path):
    ds = load_cifar10(tiny_npz)
    m = create_model("resnet20", TINY)
    train(m, ds.train, None, get_recipe("default", epochs=1, batch_size=64), out_dir=tmp_path, progress=False)
    with pytest.raises(ModelFileError, match="another recipe"):
        train(m, ds.train, None, get_recipe("default", epochs=2, batch_size=64), out_dir=tmp_path, progress=False)


def test_memory_format_avoids_the_onednn_strided_1x1_crash():
    """A channels-last 1x1 stride-2 conv with < 8 input channels corrupts the heap in oneDNN's AVX2
    backward (torch 2.13): such a model trains in NCHW, every other in channels-last."""
    import torch
    from torch import nn

    from compactnet.data import synthetic_split
    from compactnet.train import Recipe, memory_format_for, train

    narrow = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 16, 1, stride=2),
                           nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    wide = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 16, 1, stride=2))
    assert memory_format_for(narrow) == torch.contiguous_format
    assert memory_format_for(wide) == torch.channels_last
    res = train(narrow, synthetic_split(64, 0), None, Recipe(epochs=1, batch_size=16, lr=0.01), progress=False)
    assert len(res.history) == 1 and narrow[2].weight.grad is not None


def test_gradient_clipping_bounds_every_step(tiny_npz, monkeypatch):
    """``max_grad_norm`` clips each step's global gradient norm before the optimiser sees it."""
    ds = load_cifar10(tiny_npz)
    seen = []
    real_step = torch.optim.SGD.step

    def step(self, *a, **k):
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        seen.append(float(torch.norm(torch.stack([g.norm() for g in grads]))))
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.SGD, "step", step)
    for clip in (None, 1e-3):
        torch.manual_seed(0)
        model = create_model("resnet20", TINY)
        rec = get_recipe("default", epochs=1, batch_size=32, lr=0.05, max_grad_norm=clip)
        train(model, ds.train, None, rec, seed=1, progress=False, max_steps=3)
    unclipped, clipped = seen[:3], seen[3:]
    assert min(unclipped) > 1e-2 and max(clipped) == pytest.approx(1e-3, rel=1e-3)


def test_a_non_positive_clip_is_refused():
    with pytest.raises(ConfigError, match="max_grad_norm"):
        get_recipe("default", max_grad_norm=0.0)
