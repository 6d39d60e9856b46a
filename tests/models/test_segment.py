"""Segmenters on real photos: SAM (tiny config, random weights) and the GrabCut fallback."""

from __future__ import annotations

import numpy as np
import pytest

from unieditkit.pipelines.models.base import box_window, clip_mask_to_box
from unieditkit.pipelines.models.segment import GrabCutSegmenter
from unieditkit.errors import UserError

BOXES = np.array([[150.0, 20.5, 350.2, 300.0], [0, 0, 512, 512], [10.3, 200.7, 60.9, 270.1]], np.float32)


def _outside_box(mask: np.ndarray, box: np.ndarray) -> int:
    x0, y0, x1, y1 = box_window(box, mask.shape)
    inside = np.zeros_like(mask)
    inside[y0:y1, x0:x1] = True
    return int((mask & ~inside).sum())


def test_sam_masks_are_bool_full_size_and_inside_their_boxes(sam, photos):
    image = photos["astronaut"]
    masks = sam.segment(image, BOXES)
    assert sam.name == "sam"
    assert len(masks) == len(BOXES)
    for mask, box in zip(masks, BOXES):
        assert mask.dtype == bool and mask.shape == image.shape[:2]
        assert _outside_box(mask, box) == 0


def _encoder_batches(sam) -> tuple[list[int], object]:
    """The batch size of every pass of SAM's image encoder, recorded by a forward hook on the real module."""
    sizes: list[int] = []
    handle = sam.predictor.model.image_encoder.register_forward_hook(lambda _m, inputs, _out: sizes.append(inputs[0].shape[0]))
    return sizes, handle


def test_sam_embeds_each_image_once_and_decodes_all_boxes_in_one_call(sam, photos, monkeypatch):
    decodes = []
    original = sam.predictor.predict_torch
    monkeypatch.setattr(sam.predictor, "predict_torch", lambda *a, **k: decodes.append(len(k["boxes"])) or original(*a, **k))
    sizes, handle = _encoder_batches(sam)
    try:
        for key in ("astronaut", "coffee"):
            assert len(sam.segment(photos[key], BOXES[[0, 2]])) == 2
        assert sam.segment(photos["chelsea"], np.zeros((0, 4))) == []
    finally:
        handle.remove()
    assert sizes == [1, 1] and decodes == [2, 2]


def test_sam_batched_encoder_gives_the_masks_of_one_image_at_a_time(sam, photos):
    """Three images of three sizes and one without boxes, two per encoder pass: each image's masks are exactly
    those of ``segment`` alone, so a unit's masks never depend on its batch-mates."""
    items = [(photos["astronaut"], BOXES[[0, 2]]), (photos["chelsea"], np.zeros((0, 4))),
             (photos["coffee"], BOXES[[2]]), (photos["chelsea"], np.array([[100.0, 30.0, 300.0, 280.0]]))]
    alone = [sam.segment(image, boxes) for image, boxes in items]
    sizes, handle = _encoder_batches(sam)
    try:
        batched = sam.segment_batch(items, batch_size=2)
    finally:
        handle.remove()
    assert sizes == [2, 1]  # the image without boxes is not embedded
    assert [len(m) for m in batched] == [2, 0, 1, 1]
    assert all(np.array_equal(a, b) for one, other in zip(alone, batched) for a, b in zip(one, other, strict=True))
    assert sum(int(m.sum()) for masks in batched for m in masks) > 0
    with pytest.raises(UserError, match="batch_size 0: must be at least 1"):
        sam.segment_batch(items, batch_size=0)


def test_sam_is_deterministic(sam, photos):
    first = sam.segment(photos["coffee"], BOXES[[0, 2]])
    second = sam.segment(photos["coffee"], BOXES[[0, 2]])
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_sam_loads_a_checkpoint_and_rejects_a_mismatched_one(sam, tmp_path):
    import torch

    from unieditkit.pipelines.models.segment import SamSegmenter

    state = {k: v.clone() + 0.5 for k, v in sam.predictor.model.state_dict().items()}
    good = tmp_path / "tiny.pth"
    torch.save(state, good)
    loaded = SamSegmenter("tiny", good).predictor.model.state_dict()
    key = "image_encoder.patch_embed.proj.weight"
    assert torch.equal(loaded[key], state[key])
    bad = tmp_path / "bad.pth"
    torch.save({k: v for k, v in state.items() if k != key}, bad)
    with pytest.raises(UserError, match=r"does not fit the model: keys 1 missing \(e.g. image_encoder.patch_embed.proj.weight\).*--sam-model tiny"):
        SamSegmenter("tiny", bad)


def test_segmenters_reject_bad_inputs(sam, photos):
    with pytest.raises(UserError, match="x1 > x0"):
        sam.segment(photos["astronaut"], np.array([[50, 50, 40, 60]]))
    with pytest.raises(UserError, match="N x 4"):
        sam.segment(photos["astronaut"], np.array([1, 2, 3, 4]))
    with pytest.raises(UserError, match="RGB uint8"):
        GrabCutSegmenter().segment(photos["astronaut"][..., 0], BOXES[:1])
    with pytest.raises(UserError, match="RGB uint8"):
        sam.segment(photos["astronaut"].astype(np.float32), BOXES[:1])


def test_grabcut_finds_the_cat_inside_its_box(photos):
    image = photos["chelsea"]  # 451x300, the cat's head fills the middle
    box = np.array([[120.0, 20.0, 360.0, 290.0]])
    segmenter = GrabCutSegmenter()
    (mask,) = segmenter.segment(image, box)
    assert segmenter.name == "grabcut"
    assert mask.dtype == bool and mask.shape == image.shape[:2]
    assert _outside_box(mask, box[0]) == 0
    box_area = (360 - 120) * (290 - 20)
    assert 0.2 * box_area < mask.sum() < 0.98 * box_area  # an object inside the box, not the box itself
    (again,) = segmenter.segment(image, box)
    assert np.array_equal(mask, again)


def test_grabcut_handles_full_image_and_tiny_boxes(photos):
    image = photos["coffee"]
    h, w = image.shape[:2]
    full, tiny = GrabCutSegmenter().segment(image, np.array([[0, 0, w, h], [100, 100, 101, 101]]))
    assert full.any() and full.shape == (h, w)
    assert _outside_box(tiny, np.array([100, 100, 101, 101])) == 0


def test_clip_mask_to_box_uses_every_touched_pixel():
    mask = np.ones((10, 10), np.uint8)
    clipped = clip_mask_to_box(mask, np.array([2.5, 3.0, 4.2, 9.9]))
    assert clipped.dtype == bool
    assert clipped.sum() == 3 * 7  # columns 2..4, rows 3..9
    assert clipped[3:10, 2:5].all()
