"""Weight resolution and the up-front check that names every missing file, offline and with an empty cache."""

from __future__ import annotations

import argparse

import pytest
import torch

from unieditkit.pipelines.models import ModelSpec, check_weights, require_weights
from unieditkit.pipelines.models.weights import (
    hub_online,
    load_state_dict,
    open_clip_weights,
    sam_checkpoint,
    segmenter_choice,
    text_encoder_dir,
)
from unieditkit.errors import MissingModelError, UserError


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network and an empty Hugging Face cache, whatever the machine has."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("UNIEDITKIT_MODELS", raising=False)
    return tmp_path


def test_check_lists_every_missing_item_with_how_to_get_it(offline):
    models = offline / "models"
    models.mkdir()
    problems = check_weights(ModelSpec(models_dir=str(models), segmenter="sam"))
    assert len(problems) == 5
    dino, bert, sam, coca, clip = problems  # in chain order, the order a build would load them
    assert "sam_vit_b_01ec64.pth" in sam and "https://dl.fbaipublicfiles.com/segment_anything/" in sam
    assert "groundingdino_swint_ogc.pth" in dino and "github.com/IDEA-Research/GroundingDINO/releases" in dino
    assert "bert-base-uncased" in bert and "huggingface-cli download" in bert and "--dino-text-encoder" in bert
    assert "coca_ViT-B-32" in coca and "laion/mscoco_finetuned_CoCa-ViT-B-32" in coca
    assert "ViT-B-32" in clip and "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in clip and "--clip-pretrained" in clip
    with pytest.raises(MissingModelError) as err:
        require_weights(ModelSpec(models_dir=str(models), segmenter="sam"))
    message = str(err.value)
    lines = message.splitlines()  # the one multi-line error: a list, one missing item per line
    assert lines[0] == "5 model file(s) missing, nothing was built:"
    assert [line[:6] for line in lines[1:]] == [f"  ({i}) " for i in range(1, 6)]
    assert [line[6:] for line in lines[1:]] == problems


def test_files_in_the_models_dir_are_found_under_their_official_names(offline, monkeypatch):
    from unieditkit.pipelines.models.random_init import random_text_encoder_dir

    models = offline / "models"
    models.mkdir()
    (models / "sam_vit_b_01ec64.pth").write_bytes(b"x")
    (models / "groundingdino_swint_ogc.pth").write_bytes(b"x")
    monkeypatch.setenv("UNIEDITKIT_MODELS", str(models))
    spec = ModelSpec(dino_text_encoder=str(random_text_encoder_dir()), caption_pretrained=None, clip_pretrained=None)
    assert check_weights(spec) == []
    assert segmenter_choice(spec) == "sam"
    assert sam_checkpoint(spec) == models / "sam_vit_b_01ec64.pth"


def test_only_the_configured_stages_are_checked(offline):
    spec = ModelSpec(models_dir=str(offline), stages=("caption",))
    (problem,) = check_weights(spec)
    assert "--caption-pretrained" in problem


def test_auto_segmenter_falls_back_to_grabcut_without_a_checkpoint(offline):
    spec = ModelSpec(models_dir=str(offline), stages=("segment",))
    assert segmenter_choice(spec) == "grabcut"
    assert check_weights(spec) == []
    explicit = ModelSpec(sam_checkpoint=str(offline / "missing.pth"), stages=("segment",))
    assert segmenter_choice(explicit) == "sam"
    (problem,) = check_weights(explicit)
    assert "--sam-checkpoint" in problem and "missing.pth" in problem


def test_random_init_needs_no_files(offline):
    assert check_weights(ModelSpec(random_init=True, models_dir=str(offline))) == []


def test_offline_flag_is_honoured_without_touching_the_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_online() is False


def test_text_encoder_resolution(offline):
    from unieditkit.pipelines.models.random_init import random_text_encoder_dir

    folder = random_text_encoder_dir()
    assert text_encoder_dir(str(folder)) == folder
    with pytest.raises(MissingModelError, match="hub unreachable and not in the Hugging Face cache"):
        text_encoder_dir("bert-base-uncased")
    with pytest.raises(MissingModelError, match="folder not found"):
        text_encoder_dir(str(offline / "nowhere"))


def test_open_clip_weights_resolution(offline):
    assert open_clip_weights("ViT-B-32", None, "--clip-pretrained").file is None
    weights_file = offline / "clip.pt"
    weights_file.write_bytes(b"x")
    assert open_clip_weights("ViT-B-32", str(weights_file), "--clip-pretrained").file == weights_file
    with pytest.raises(MissingModelError, match="neither a file nor a pretrained tag.*laion2b_s34b_b79k"):
        open_clip_weights("ViT-B-32", "no-such-tag", "--clip-pretrained")
    with pytest.raises(UserError, match="--clip-model ViT-Q-99: not an open_clip model"):
        open_clip_weights("ViT-Q-99", None, "--clip-pretrained")


def test_state_dicts_load_safely(tmp_path):
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model": {"module.layer.weight": torch.ones(2)}, "epoch": 3}, wrapped)
    assert list(load_state_dict(wrapped, "--x")) == ["layer.weight"]
    pickled = tmp_path / "pickled.pth"
    torch.save({"args": argparse.Namespace(lr=1)}, pickled)  # arbitrary objects are refused, not unpickled
    with pytest.raises(UserError, match="--x .*pickled.pth: cannot be read as a plain weights checkpoint"):
        load_state_dict(pickled, "--x")
    with pytest.raises(MissingModelError, match="file not found"):
        load_state_dict(tmp_path / "absent.pth", "--x")


def test_spec_rejects_unknown_choices():
    with pytest.raises(UserError, match="--segmenter"):
        ModelSpec(segmenter="mask-rcnn")
    with pytest.raises(UserError, match="--sam-model"):
        ModelSpec(sam_model_type="vit_xl")
    with pytest.raises(UserError, match="stages"):
        ModelSpec(stages=("detect", "paint"))


def test_factory_picks_the_segmenter(offline):
    from unieditkit.pipelines.models.factory import build_segmenter

    assert build_segmenter(ModelSpec(segmenter="grabcut")).name == "grabcut"
    assert build_segmenter(ModelSpec(models_dir=str(offline))).name == "grabcut"
    with pytest.raises(MissingModelError, match="sam_vit_b_01ec64.pth"):
        build_segmenter(ModelSpec(models_dir=str(offline), segmenter="sam"))
