"""Strict checkpoint loading through the real loaders, with files in the official layouts made from random init.

SAM ships a flat state dict, GroundingDINO a training checkpoint ``{"model": {"module.…": …}}`` that carries
two keys the inference model does not build (the documented allow-list), SAM 2 ``{"model": …}``. Each is
written the way its project writes it, loaded through the segmenter/detector constructors the build uses, and
a damaged copy (a key dropped, a stray key, a tensor of another shape) is refused naming the key.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unieditkit.pipelines.models.weights import CHECKPOINT_ALLOWED
from unieditkit.errors import UserError


def _perturbed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A different set of weights, so a load that silently kept the initial ones is caught."""
    return {k: (v + 0.5 if v.is_floating_point() else v.clone()) for k, v in state.items()}


def test_sam_flat_state_dict_loads_exactly_and_damaged_copies_are_refused(sam, tmp_path):
    from unieditkit.pipelines.models.segment import SamSegmenter

    state = _perturbed(sam.predictor.model.state_dict())
    official = tmp_path / "sam_tiny.pth"
    torch.save(state, official)
    loaded = SamSegmenter("tiny", official).predictor.model.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)

    key = "mask_decoder.iou_prediction_head.layers.0.weight"
    damaged = {
        "missing": ({k: v for k, v in state.items() if k != key}, f"1 missing \\(e.g. {key}\\)"),
        "unexpected": ({**state, "extra.weight": torch.zeros(2)}, "1 unexpected \\(e.g. extra.weight\\)"),
        "reshaped": ({**state, key: torch.zeros(3, 3)}, f"1 of another shape \\(e.g. {key}\\)"),
    }
    for name, (bad, message) in damaged.items():
        path = tmp_path / f"{name}.pth"
        torch.save(bad, path)
        with pytest.raises(UserError, match=f"--sam-checkpoint .*{name}.pth: does not fit the model: keys {message}"):
            SamSegmenter("tiny", path)


def test_groundingdino_training_checkpoint_with_allow_listed_extras_loads(detector, tmp_path):
    from unieditkit.pipelines.models.detect import GroundingDinoDetector
    from unieditkit.pipelines.models.random_init import TINY_DINO_OVERRIDES, random_text_encoder_dir

    allowed_unexpected, _ = CHECKPOINT_ALLOWED["groundingdino"]
    state = _perturbed(detector.model.state_dict())
    extras = {"label_enc.weight": torch.zeros(2001, 256), "bert.embeddings.position_ids": torch.arange(512)[None]}
    assert set(extras) == allowed_unexpected
    official = tmp_path / "groundingdino_tiny.pth"
    torch.save({"model": {f"module.{k}": v for k, v in {**state, **extras}.items()}, "epoch": 11}, official)
    options = dict(text_encoder=str(random_text_encoder_dir()), config_overrides=TINY_DINO_OVERRIDES,
                   image_size=detector.image_size, max_size=detector.max_size)
    loaded = GroundingDinoDetector(checkpoint_path=official, **options).model.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)

    # the old loader accepted up to half the weights missing; now one is too many
    key = "transformer.decoder.layers.0.linear1.weight"
    half = {k: v for i, (k, v) in enumerate(state.items()) if k != key}
    damaged = tmp_path / "damaged.pth"
    torch.save({"model": half}, damaged)
    with pytest.raises(UserError, match=f"--dino-checkpoint .*damaged.pth: does not fit the model: keys 1 missing \\(e.g. {key}\\)"):
        GroundingDinoDetector(checkpoint_path=damaged, **options)


@pytest.fixture(scope="module")
def sam2_segmenter():
    from unieditkit.pipelines.models.factory import build_segmenter
    from unieditkit.pipelines.models.weights import ModelSpec

    return build_segmenter(ModelSpec(segmenter="sam2", random_init=True))


@pytest.mark.slow
def test_sam2_segments_with_boxes_and_loads_its_official_layout(sam2_segmenter, photos, tmp_path):
    from unieditkit.pipelines.models.segment import TINY_SAM2_OVERRIDES, Sam2Segmenter

    assert sam2_segmenter.name == "sam2"
    image = photos["chelsea"]
    boxes = np.array([[120.0, 20.0, 360.0, 290.0], [10.5, 10.5, 100.0, 80.0]], np.float32)
    masks = sam2_segmenter.segment(image, boxes)
    assert len(masks) == 2
    for mask, (x0, y0, x1, y1) in zip(masks, boxes):
        assert mask.dtype == bool and mask.shape == image.shape[:2]
        outside = mask.copy()
        outside[int(y0): int(np.ceil(y1)), int(x0): int(np.ceil(x1))] = False
        assert not outside.any()
    assert sam2_segmenter.segment(image, np.zeros((0, 4))) == []

    state = _perturbed(sam2_segmenter.predictor.model.state_dict())
    official = tmp_path / "sam2_tiny.pt"
    torch.save({"model": state}, official)
    loaded = Sam2Segmenter("sam2.1_hiera_t", official, overrides=TINY_SAM2_OVERRIDES)
    assert all(torch.equal(loaded.predictor.model.state_dict()[k], state[k]) for k in state)
    again = loaded.segment(image, boxes[:1])
    assert np.array_equal(again[0], loaded.segment(image, boxes[:1])[0])
    key = next(iter(state))
    damaged = tmp_path / "damaged.pt"
    torch.save({"model": {k: v for k, v in state.items() if k != key}}, damaged)
    with pytest.raises(UserError, match=f"--sam2-checkpoint .*damaged.pt: does not fit the model: keys 1 missing.*--sam2-config sam2.1_hiera_t"):
        Sam2Segmenter("sam2.1_hiera_t", damaged, overrides=TINY_SAM2_OVERRIDES)
    with pytest.raises(UserError, match="--sam2-config sam3: unknown"):
        Sam2Segmenter("sam3")


@pytest.mark.slow
def test_mobile_sam_segments_and_loads_its_flat_checkpoint(photos, tmp_path):
    from unieditkit.pipelines.models.factory import build_segmenter
    from unieditkit.pipelines.models.segment import SamSegmenter
    from unieditkit.pipelines.models.weights import ModelSpec

    real = SamSegmenter("vit_t").predictor.model  # the official vit_t: built, not run (seconds per image on a CPU)
    assert type(real.image_encoder).__name__ == "TinyViT" and real.image_encoder.img_size == 1024
    assert 9_000_000 < sum(p.numel() for p in real.parameters()) < 11_000_000  # vs 94M for vit_b
    assert {k.split(".")[0] for k in real.state_dict()} == {"image_encoder", "prompt_encoder", "mask_decoder"}

    mobile = build_segmenter(ModelSpec(sam_model_type="vit_t", random_init=True))
    assert mobile.name == "mobile_sam" and type(mobile.predictor.model.image_encoder).__name__ == "TinyViT"
    image = photos["coffee"]
    boxes = np.array([[100.0, 50.0, 400.0, 350.0]], np.float32)
    (mask,) = mobile.segment(image, boxes)
    assert mask.dtype == bool and mask.shape == image.shape[:2] and not mask[:, :100].any() and not mask[:50].any()

    state = _perturbed(mobile.predictor.model.state_dict())
    official = tmp_path / "mobile_sam.pt"  # MobileSAM ships a flat state dict, like SAM
    torch.save(state, official)
    loaded = SamSegmenter("tiny_t", official)
    assert all(torch.equal(loaded.predictor.model.state_dict()[k], state[k]) for k in state)
    sam_file = tmp_path / "sam_tiny.pth"  # a SAM checkpoint passed for MobileSAM: refused, naming the keys
    torch.save({k: v for k, v in state.items() if not k.startswith("image_encoder.")}, sam_file)
    with pytest.raises(UserError, match=r"sam_tiny.pth: does not fit the model: keys \d+ missing \(e.g. image_encoder\..*--sam-model vit_t"):
        SamSegmenter("vit_t", sam_file)
