"""Training config: YAML over defaults, strict keys and types, one-line errors naming the key."""

from __future__ import annotations

import pytest

from training.config import Config, load_config
from unieditkit.errors import UserError


def _write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_are_the_small_cpu_editor():
    cfg = load_config(None)
    assert (cfg.model.image_size, cfg.model.depth, cfg.model.dim) == (64, 4, 128)
    assert cfg == Config()


def test_yaml_and_overrides_apply(tmp_path):
    cfg = load_config(_write(tmp_path, "model: {dim: 64, heads: 2}\ntrain: {max_steps: 9}\n"), {"train.max_steps": 5})
    assert (cfg.model.dim, cfg.model.heads, cfg.train.max_steps) == (64, 2, 5)
    assert isinstance(load_config(_write(tmp_path, "optim: {lr: 1}\n")).optim.lr, float)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: {dimm: 64}\n", r"unknown key 'model\.dimm'"),
        ("trian: {}\n", r"unknown key 'trian'"),
        ("model: {dim: '64'}\n", r"model\.dim must be an integer"),
        ("train: {precision: fp16}\n", r"train\.precision is 'fp16'; use one of fp32, bf16"),
        ("curriculum: {rough: {fine: 0.2, scribble: 0.8}}\n", r"curriculum\.rough\.scribble: unknown mask variant"),
        ("curriculum: {boundaries: [0.8, 0.2]}\n", r"curriculum\.boundaries"),
        ("model: {train_backbone: false}\n", r"model\.init_checkpoint is empty"),
        ("model: {image_size: 30, patch_size: 4}\n", r"multiple of model\.patch_size"),
        ("- a\n", r"top level must be a mapping"),
        ("model: [\n", r"not valid YAML"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(UserError, match=message) as info:
        load_config(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_backbone_is_frozen_by_default_whenever_it_has_pretrained_weights(tmp_path):
    from training.config import backbone_trains

    assert load_config(None).model.train_backbone == "auto"
    assert backbone_trains(load_config(None).model)  # built-in editor from scratch: nothing pretrained to keep
    assert not backbone_trains(load_config(_write(tmp_path, "model: {init_checkpoint: b.pt}\n")).model)
    assert backbone_trains(load_config(_write(tmp_path, "model: {train_backbone: true, init_checkpoint: b.pt}\n")).model)
    with pytest.raises(UserError, match=r"model\.train_backbone is 'yes'; use one of auto, true, false"):
        load_config(_write(tmp_path, "model: {train_backbone: 'yes'}\n"))
