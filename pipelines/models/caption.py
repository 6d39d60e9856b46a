"""Captions with open_clip CoCa ``generate()``: short descriptions for the ``captions`` metadata field."""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import torch

from unieditkit.errors import UserError

from .base import Captioner
from .openclip import OpenClipModel

GENERATION_TYPES = ("beam_search", "greedy")


def clean_caption(text: str) -> str:
    """Text between CoCa's start and end tokens, with the trailing " ." of generated text removed."""
    text = text.split("<end_of_text>")[0].replace("<start_of_text>", "")
    return re.sub(r"\s+([.,!?])", r"\1", " ".join(text.split())).rstrip(" .")


class CocaCaptioner(Captioner):
    """open_clip CoCa captioner, ``batch_size`` images per ``generate()`` call.

    ``pretrained``: open_clip tag, file, or ``None`` (random weights: token soup, for tests);
    ``generation_type``: ``beam_search`` (CoCa's default, 6 beams) or ``greedy`` (several times faster on CPU);
    both are deterministic. ``max_len`` bounds the caption in tokens.
    """

    def __init__(self, model_name: str = "coca_ViT-B-32", pretrained: str | None = None, device: str = "cpu",
                 generation_type: str = "beam_search", max_len: int = 30, batch_size: int = 16) -> None:
        if generation_type not in GENERATION_TYPES:
            raise UserError(f"caption generation {generation_type!r}: choose one of {', '.join(GENERATION_TYPES)}")
        if max_len < 6 or batch_size < 1:
            raise UserError("CocaCaptioner: max_len must be at least 6 tokens and batch_size at least 1")
        self.clip = OpenClipModel(model_name, pretrained, device, "--caption-pretrained")
        if not hasattr(self.clip.model, "generate"):
            raise UserError(f"--caption-model {model_name}: not a CoCa model (no generate()); use coca_ViT-B-32")
        self.generation_type = generation_type
        self.max_len = max_len
        self.batch_size = batch_size

    @torch.inference_mode()
    def caption(self, images: Sequence[np.ndarray]) -> list[str]:
        import open_clip

        captions: list[str] = []
        for start in range(0, len(images), self.batch_size):
            batch = self.clip.image_batch(list(images[start: start + self.batch_size]))
            if self.generation_type == "beam_search":
                tokens = self.clip.model.generate(batch, seq_len=self.max_len)
            else:
                tokens = self.clip.model.generate(batch, seq_len=self.max_len, generation_type="top_k", top_k=1)
            captions += [clean_caption(open_clip.decode(row)) for row in tokens.cpu()]
        return captions
