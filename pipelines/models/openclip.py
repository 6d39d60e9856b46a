"""Building open_clip models (CLIP, CoCa) from resolved weights, shared by the captioner and the categorizer."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from unieditkit.errors import MissingModelError

from .base import check_image
from .device import resolve_device
from .random_init import seeded
from .weights import open_clip_weights


def _randomize_zero_weights(model: torch.nn.Module) -> None:
    """Give zero-initialised weight matrices random values: open_clip starts CoCa's vocabulary projection at
    zero, so a random-weight CoCa scores every token equally and greedy/beam decoding degenerate into ties."""
    for param in model.parameters():
        if param.dim() >= 2 and not param.any():
            torch.nn.init.normal_(param, std=0.02)


class OpenClipModel:
    """An open_clip model in eval mode with its image preprocessing and tokenizer.

    ``pretrained`` is an open_clip tag (weights from the Hugging Face cache, downloaded when online), a weights
    file, or ``None`` for seeded random weights. A tag's own preprocessing (mean/std, resize mode) and
    activation (QuickGELU for OpenAI weights) are applied, which passing its file path to open_clip would drop.
    """

    def __init__(self, model_name: str, pretrained: str | None, device: str, flag: str) -> None:
        import open_clip

        weights = open_clip_weights(model_name, pretrained, flag)
        self.device = resolve_device(device)
        #: names these exact weights, for caches of their outputs
        self.identity = f"{model_name}|{pretrained}|{weights.file.stat().st_size if weights.file else 'random'}"
        cfg = weights.tag_cfg
        preprocess: dict[str, Any] = {
            "image_mean": cfg.get("mean"), "image_std": cfg.get("std"),
            "image_interpolation": cfg.get("interpolation"), "image_resize_mode": cfg.get("resize_mode"),
        }
        with seeded(0):
            model, _, self.preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=str(weights.file) if weights.file else None, device=self.device,
                force_quick_gelu=bool(cfg.get("quick_gelu", False)), weights_only=True,
                **{k: v for k, v in preprocess.items() if v is not None},
            )
            if weights.file is None:
                _randomize_zero_weights(model)
        self.model = model.eval()
        try:
            self.tokenizer: Callable[..., torch.Tensor] = open_clip.get_tokenizer(model_name)
        except OSError as err:  # tokenizers stored on the hub (SigLIP, RoBERTa CoCa) fail offline
            raise MissingModelError(f"{flag.replace('pretrained', 'model')} {model_name}: its tokenizer is not in "
                                    "the Hugging Face cache; run once with network, or pick a model with the "
                                    "built-in tokenizer (ViT-B-32, coca_ViT-B-32)") from err

    def image_batch(self, images: list[np.ndarray]) -> torch.Tensor:
        """Preprocessed ``images`` as one batch tensor on the model's device."""
        for i, image in enumerate(images):
            check_image(image, f"image {i}")
        return torch.stack([self.preprocess(Image.fromarray(image)) for image in images]).to(self.device)
