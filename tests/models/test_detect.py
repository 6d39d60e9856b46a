"""GroundingDINO detector (Swin-T backbone, shrunk transformer, random BERT) on real photos and taxonomy prompts."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from unieditkit.pipelines.models.base import Detection
from unieditkit.pipelines.models.detect import GroundingDinoDetector, PromptMap, normalize_prompt, plan_chunks
from unieditkit.errors import MissingModelError, UserError


def _check_detections(detections, image, prompts, detector):
    h, w = image.shape[:2]
    assert detections, "random weights score far above the threshold: an empty result means boxes were lost"
    assert len(detections) <= detector.max_detections
    for det in detections:
        assert isinstance(det, Detection)
        x0, y0, x1, y1 = det.bbox
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert detector.box_threshold < det.score <= 1.0
        assert det.phrase in prompts
    scores = [d.score for d in detections]
    assert scores == sorted(scores, reverse=True)


def test_prompt_map_round_trips_every_taxonomy_prompt(garments):
    prompts = PromptMap(garments)
    owners = {p: s.key for s in garments for p in s.prompts}
    assert sorted(prompts.prompts) == sorted(owners)
    for prompt in prompts.prompts:
        assert prompts.subcategory(prompt) == owners[prompt]
        assert prompts.subcategory(prompt.upper() + ".") == owners[prompt]
    with pytest.raises(UserError, match="not one of this domain's prompts"):
        prompts.subcategory("spaceship")


def test_prompt_map_keeps_a_shared_prompt_for_the_first_subcategory():
    first = SimpleNamespace(key="mug", name="Mug", prompts=("cup", "mug"), synonyms=())
    second = SimpleNamespace(key="teacup", name="Teacup", prompts=("Cup",), synonyms=())
    nameonly = SimpleNamespace(key="vase", name="Vase", prompts=(), synonyms=())
    prompts = PromptMap([first, second, nameonly])
    assert prompts.prompts == ["cup", "mug", "Vase"]
    assert prompts.subcategory("cup") == "mug"
    assert prompts.subcategory("vase") == "vase"


def test_normalize_prompt_removes_separators():
    assert normalize_prompt("  St. Bernard  Dog? ") == "st bernard dog"
    with pytest.raises(UserError, match="empty"):
        normalize_prompt(" . ")


def test_long_prompt_lists_are_chunked_to_the_text_limit(detector, garments):
    tokenizer = detector.model.tokenizer
    prompts = PromptMap(garments).prompts
    plans = plan_chunks(prompts, tokenizer, detector.max_text_len)
    assert len(plans) >= 2  # the test vocabulary has one token per character
    seen = [i for plan in plans for i in plan.prompt_indices]
    assert seen == list(range(len(prompts)))
    for plan in plans:
        ids = tokenizer(plan.caption)["input_ids"]
        assert len(ids) <= detector.max_text_len
        for index, (start, end) in zip(plan.prompt_indices, plan.spans):
            assert ids[start:end] == tokenizer(normalize_prompt(prompts[index]), add_special_tokens=False)["input_ids"]
    with pytest.raises(UserError, match="shorten it"):
        plan_chunks(["x " * 300], tokenizer, detector.max_text_len)


def test_detect_returns_boxes_inside_the_image_for_taxonomy_prompts(detector, photos, garments):
    prompts = PromptMap(garments).prompts
    image = photos["astronaut"]
    detections = detector.detect(image, prompts)
    _check_detections(detections, image, prompts, detector)
    assert len({d.phrase for d in detections}) > 1  # every chunk can contribute
    assert detector.detect(image, prompts) == detections


def test_detect_batch_equals_detect_and_batches_images_of_one_input_size(detector, photos):
    """Three crops of one size and one photo of another, two per forward pass: each image's detections are
    exactly those of ``detect`` alone (no padding, so batch-mates cannot change them)."""
    prompts = ["cat", "coffee cup", "person"]
    astronaut = photos["astronaut"]
    images = [astronaut[:300, :400], photos["coffee"], astronaut[100:400, 50:450], photos["chelsea"][:300, :400]]
    alone = [detector.detect(image, prompts) for image in images]
    sizes: list[int] = []
    handle = detector.model.register_forward_hook(lambda _m, inputs, _out: sizes.append(inputs[0].tensors.shape[0]))
    try:
        batched = detector.detect_batch(images, prompts, batch_size=2)
    finally:
        handle.remove()
    assert sorted(sizes) == [1, 1, 2]  # the three crops in passes of 2 and 1, the coffee photo alone
    assert batched == alone
    for detections, image in zip(batched, images):
        _check_detections(detections, image, prompts, detector)
    assert detector.detect_batch([], prompts) == []
    assert detector.detect(photos["chelsea"], []) == []
    with pytest.raises(UserError, match="batch_size 0: must be at least 1"):
        detector.detect_batch(images, prompts, batch_size=0)


def test_thresholds_and_cap_apply(detector, photos):
    image = photos["coffee"]
    prompts = ["cup", "saucer"]
    many = detector.detect(image, prompts)
    old = detector.box_threshold, detector.max_detections
    try:
        detector.max_detections = 3
        assert detector.detect(image, prompts) == many[:3]
        detector.box_threshold = 1.0  # a sigmoid never exceeds 1
        assert detector.detect(image, prompts) == []
    finally:
        detector.box_threshold, detector.max_detections = old


def test_checkpoint_round_trip_and_mismatch(detector, photos, tmp_path):
    import torch

    from unieditkit.pipelines.models.random_init import TINY_DINO_OVERRIDES, random_text_encoder_dir

    state = {k: v.clone() for k, v in detector.model.state_dict().items()}
    state["transformer.tgt_embed.weight"] += 0.25
    path = tmp_path / "dino.pth"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, path)
    options = dict(text_encoder=str(random_text_encoder_dir()), config_overrides=TINY_DINO_OVERRIDES,
                   image_size=detector.image_size, max_size=detector.max_size)
    loaded = GroundingDinoDetector(checkpoint_path=path, **options)
    assert torch.equal(loaded.model.state_dict()["transformer.tgt_embed.weight"], state["transformer.tgt_embed.weight"])
    _check_detections(loaded.detect(photos["chelsea"], ["cat"]), photos["chelsea"], ["cat"], loaded)
    foreign = tmp_path / "foreign.pth"
    torch.save({"weight": torch.zeros(3)}, foreign)
    with pytest.raises(UserError, match="--dino-checkpoint .*foreign.pth: does not fit the model: keys .* missing.*1 unexpected \\(e.g. weight\\)"):
        GroundingDinoDetector(checkpoint_path=foreign, **options)


def test_missing_text_encoder_is_named_with_the_fix(tmp_path):
    with pytest.raises(MissingModelError, match="--dino-text-encoder") as err:
        GroundingDinoDetector(text_encoder=str(tmp_path / "no-bert"))
    assert "huggingface-cli download" in str(err.value)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(MissingModelError, match="vocab.txt, model.safetensors missing"):
        GroundingDinoDetector(text_encoder=str(tmp_path / "half"))


def test_detector_rejects_a_grey_image(detector, photos):
    with pytest.raises(UserError, match="image 0: expected an RGB uint8"):
        detector.detect(np.zeros((50, 60), np.uint8), ["cat"])
