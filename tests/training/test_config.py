"""Training config: YAML over defaults, strict keys and types, one-line errors naming the key."""

from __future__ import annotations

import pytest

from unieditkit.training.config import Config, load_config
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
    from unieditkit.training.config import backbone_trains

    assert load_config(None).model.train_backbone == "auto"
    assert backbone_trains(load_config(None).model)  # built-in editor from scratch: nothing pretrained to keep
    assert not backbone_trains(load_config(_write(tmp_path, "model: {init_checkpoint: b.pt}\n")).model)
    assert backbone_trains(load_config(_write(tmp_path, "model: {train_backbone: true, init_checkpoint: b.pt}\n")).model)
    with pytest.raises(UserError, match=r"model\.train_backbone is 'yes'; use one of auto, true, false"):
        load_config(_write(tmp_path, "model: {train_backbone: 'yes'}\n"))


def test_flux_fill_fills_only_the_keys_the_user_left_unset(tmp_path):
    from unieditkit.training.config import FLUX_FILL_DEFAULTS

    flux = {"model.backbone": "flux-fill", "model.pretrained": "snap"}
    cfg = load_config(None, flux)
    assert (cfg.model.image_size, cfg.model.gradient_checkpointing) == (512, True)
    assert (cfg.train.batch_size, cfg.train.grad_accum, cfg.optim.lr) == (1, 4, 1e-4)
    assert set(cfg.backbone_defaults) == set(FLUX_FILL_DEFAULTS)
    assert cfg.to_dict()["model"]["image_size"] == 512  # what the run folder's config.yaml records
    # set in the YAML or by a flag, even to the built-in editor's own default value: the user's value stays
    path = _write(tmp_path, "model: {backbone: flux-fill, pretrained: snap, image_size: 64}\n"
                            "train: {batch_size: 8}\n")
    cfg = load_config(path, {"optim.lr": 3e-4, "model.gradient_checkpointing": False})
    assert (cfg.model.image_size, cfg.train.batch_size, cfg.optim.lr) == (64, 8, 3e-4)
    assert cfg.model.gradient_checkpointing is False
    assert cfg.backbone_defaults == ("train.grad_accum",) and cfg.train.grad_accum == 4
    assert load_config(None).backbone_defaults == () and load_config(None) == Config()  # built-in: unchanged


def test_image_size_flag_sets_the_resolution_for_both_backbones():
    import argparse

    from unieditkit.training.config import add_arguments, overrides_from

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--image-size", "768", "--backbone", "flux-fill", "--pretrained", "snap"])
    cfg = load_config(None, overrides_from(args))
    assert cfg.model.image_size == 768 and "model.image_size" not in cfg.backbone_defaults
    assert load_config(None, overrides_from(parser.parse_args(["--image-size", "32"]))).model.image_size == 32
    with pytest.raises(UserError, match="multiple of 16"):
        load_config(None, overrides_from(parser.parse_args(["--image-size", "520", "--backbone", "flux-fill",
                                                            "--pretrained", "snap"])))


def test_notes_announce_the_filled_defaults_and_warn_below_256_px_for_flux_only():
    from unieditkit.training.config import config_notes

    (filled,) = config_notes(load_config(None, {"model.backbone": "flux-fill", "model.pretrained": "snap"}))
    assert filled.startswith("model.backbone flux-fill: model.image_size 512, model.gradient_checkpointing true, ")
    assert "train.batch_size 1, train.grad_accum 4, optim.lr 0.0001" in filled
    explicit = {"model.backbone": "flux-fill", "model.pretrained": "snap", "model.gradient_checkpointing": True,
                "train.batch_size": 1, "train.grad_accum": 1, "optim.lr": 1e-4}
    low = config_notes(load_config(None, {**explicit, "model.image_size": 128}))
    assert low == ["warning: model.image_size 128 px per half is below 256 for flux-fill, which works at about "
                   "1024 px: `unieditkit edit` would upsample this editor's output into the mask; use --image-size "
                   "512 (the flux-fill default) or more"]
    assert config_notes(load_config(None, {**explicit, "model.image_size": 256})) == []
    assert config_notes(load_config(None, {"model.image_size": 64})) == []  # the built-in editor's own size
