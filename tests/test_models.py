import json

import pytest
import torch

from compactnet.errors import ConfigError, ModelFileError
from compactnet.models import create_model, get_entry, list_models, load_weights, save_weights
from compactnet.models.mobilenetv2 import DEFAULT_WIDTHS, PAPER_TABLE2_WIDTHS, MobileNetV2Config


@pytest.mark.parametrize("name", ["mobilenetv2", "resnet20", "vgg16"])
def test_models_run_on_cifar_input(name):
    model = create_model(name).eval()
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_mobilenetv2_matches_table1():
    model = create_model("mobilenetv2").eval()
    feats = model.features(torch.zeros(1, 3, 32, 32))
    assert feats.shape == (1, 1280, 1, 1)  # last feature map 1x1
    stem = model.features[0][0]
    assert stem.stride == (2, 2) and stem.out_channels == 32
    assert len(model.features) == 19  # stem + 17 blocks + 1x1 conv
    assert DEFAULT_WIDTHS == (32, 16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320)


def test_paper_table2_config_instantiates():
    model = create_model("mobilenetv2", list(PAPER_TABLE2_WIDTHS)).eval()
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    # block 7 (first of the 64-wide stage) projects 24 -> 12 channels, expansion 6x its input (24)
    block = model.features[7]
    assert block.conv[-1][0].out_channels == 12 and block.conv[0][0].out_channels == 24 * 6


def test_channels_wrong_length_and_zero_width():
    with pytest.raises(ConfigError, match="18 channel counts"):
        create_model("mobilenetv2", [32] * 17)
    widths = list(DEFAULT_WIDTHS)
    widths[5] = 0
    with pytest.raises(ConfigError, match=r"widths\[5\]"):
        MobileNetV2Config(widths=tuple(widths))


def test_stage_widths_must_agree():
    widths = list(DEFAULT_WIDTHS)
    widths[3] = 20  # second block of stage 2 differs from the first
    with pytest.raises(ConfigError, match="share one width"):
        MobileNetV2Config(widths=tuple(widths))


def test_unknown_model_lists_choices():
    with pytest.raises(ConfigError, match="mobilenetv2, resnet20, vgg16"):
        get_entry("alexnet")
    assert list_models() == ["mobilenetv2", "resnet20", "vgg16"]


def test_channels_file(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"model": "resnet20", "stages": [8, 16, 32], "inner": [4] * 9}))
    model = create_model("resnet20", f)
    assert model.fc.in_features == 32
    f.write_text("{broken")
    with pytest.raises(ConfigError, match="not valid JSON"):
        create_model("resnet20", f)
    f.write_text(json.dumps({"model": "vgg16", "widths": [8] * 13}))
    with pytest.raises(ConfigError, match="for model 'vgg16'"):
        create_model("resnet20", f)


def test_weights_round_trip_and_mismatch(tmp_path):
    a = create_model("resnet20")
    save_weights(a, tmp_path / "w.safetensors")
    b = load_weights(create_model("resnet20"), tmp_path / "w.safetensors")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    with pytest.raises(ModelFileError, match="does not fit"):
        load_weights(create_model("resnet20", {"stages": [8, 16, 32]}), tmp_path / "w.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ModelFileError, match="not a readable"):
        load_weights(create_model("resnet20"), tmp_path / "bad.safetensors")
