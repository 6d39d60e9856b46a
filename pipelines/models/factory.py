"""Backends built from a ``ModelSpec``: what a Ray stage calls once in its ``__init__``.

The spec is resolved here (paths, models folder, hub cache), so stages need not know where weights live; with
``spec.random_init`` every backend is the small random-weight variant used by tests and dry runs. Each
backend's module is imported by its own factory only: a Ray actor of the segment stage should not spend its
start-up importing GroundingDINO, transformers and open_clip.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .weights import ModelSpec, dino_checkpoint, dino_config, sam2_checkpoint, sam_checkpoint, segmenter_choice

if TYPE_CHECKING:
    from .caption import CocaCaptioner
    from .categorize import ClipCategorizer
    from .detect import GroundingDinoDetector
    from .segment import GrabCutSegmenter, Sam2Segmenter, SamSegmenter


def build_detector(spec: ModelSpec, device: str = "cpu", **options: Any) -> "GroundingDinoDetector":
    """GroundingDINO for ``spec``; ``options`` go to ``GroundingDinoDetector`` (thresholds, image_size, ...)."""
    from .detect import GroundingDinoDetector
    from .random_init import TINY_DINO_OVERRIDES, random_text_encoder_dir

    if spec.random_init:
        options = {"image_size": 320, "max_size": 512, **options}
        return GroundingDinoDetector(text_encoder=str(random_text_encoder_dir()), device=device,
                                     config_overrides=TINY_DINO_OVERRIDES, **options)
    return GroundingDinoDetector(dino_config(spec), dino_checkpoint(spec), spec.dino_text_encoder, device=device,
                                 **options)


def build_segmenter(spec: ModelSpec, device: str = "cpu") -> "SamSegmenter | Sam2Segmenter | GrabCutSegmenter":
    """The segmenter ``spec`` selects (``segmenter_choice``); read ``.name`` for ``mask_source``."""
    from .segment import TINY_SAM2_OVERRIDES, GrabCutSegmenter, Sam2Segmenter, SamSegmenter

    choice = segmenter_choice(spec)
    if choice == "grabcut":
        return GrabCutSegmenter()
    if choice == "sam2":
        if spec.random_init:
            return Sam2Segmenter(spec.sam2_config, None, device, TINY_SAM2_OVERRIDES)
        return Sam2Segmenter(spec.sam2_config, sam2_checkpoint(spec), device)
    if spec.random_init:
        return SamSegmenter("tiny_t" if spec.sam_model_type == "vit_t" else "tiny", None, device)
    return SamSegmenter(spec.sam_model_type, sam_checkpoint(spec), device)


def build_captioner(spec: ModelSpec, device: str = "cpu", **options: Any) -> "CocaCaptioner":
    """CoCa captioner for ``spec``; ``options`` go to ``CocaCaptioner`` (generation_type, max_len, batch_size)."""
    from .caption import CocaCaptioner

    if spec.random_init:
        options = {"generation_type": "greedy", "max_len": 10, **options}
        return CocaCaptioner(spec.caption_model, None, device, **options)
    return CocaCaptioner(spec.caption_model, spec.caption_pretrained, device, **options)


def build_categorizer(spec: ModelSpec, device: str = "cpu", **options: Any) -> "ClipCategorizer":
    """CLIP zero-shot categorizer for ``spec``; ``options`` go to ``ClipCategorizer``."""
    from .categorize import ClipCategorizer

    pretrained = None if spec.random_init else spec.clip_pretrained
    return ClipCategorizer(spec.clip_model, pretrained, device, **options)
