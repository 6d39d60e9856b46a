"""Zero-shot categorisation with open_clip: which taxonomy subcategory an object crop shows.

Each subcategory is described by a prompt ensemble (its name, detector prompts and synonyms, each in several
"a photo of a {}." templates), averaged into one text embedding; ensembling is the standard CLIP recipe and
beats any single prompt. The text embeddings depend only on the subcategory set, so they are computed once
per set and cached, and each batch costs one image-encoder pass. On a CPU the ensemble of one domain takes
about a minute and a half (ViT-B-32, 8 templates), so with ``cache_dir`` it is also kept on disk, where every
worker of a machine, and the next build, finds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from unieditkit.errors import UserError

from .base import Categorizer, SubcategoryLike
from .openclip import OpenClipModel

TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a close-up photo of a {}.",
    "a cropped photo of a {}.",
    "a good photo of a {}.",
    "a photo of a small {}.",
    "a photo of a large {}.",
    "a bright photo of a {}.",
)
_TEXT_CACHE_SIZE = 16


def class_names(sub: SubcategoryLike) -> tuple[str, ...]:
    """The distinct names a subcategory goes by: its name, then its prompts and synonyms (lower-cased)."""
    names: dict[str, None] = {}
    for text in (sub.name, *sub.prompts, *sub.synonyms):
        norm = " ".join(str(text).lower().split())
        if norm:
            names.setdefault(norm)
    return tuple(names)


class ClipCategorizer(Categorizer):
    """open_clip zero-shot classifier over subcategories.

    ``pretrained``: open_clip tag, file, or ``None`` (random weights, for tests); ``templates``: prompt
    templates with one ``{}``; ``batch_size``: images per image-encoder pass; ``cache_dir``: folder for text
    embeddings shared between processes (``None``: memory only).
    """

    def __init__(self, model_name: str = "ViT-B-32", pretrained: str | None = None, device: str = "cpu",
                 templates: Sequence[str] = TEMPLATES, batch_size: int = 64,
                 cache_dir: str | Path | None = None) -> None:
        if not templates or any(t.count("{}") != 1 for t in templates):
            raise UserError("ClipCategorizer templates: need at least one, each with exactly one '{}'")
        if batch_size < 1:
            raise UserError("ClipCategorizer: batch_size must be at least 1")
        self.clip = OpenClipModel(model_name, pretrained, device, "--clip-pretrained")
        self.templates = tuple(templates)
        self.batch_size = batch_size
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._text: dict[tuple, torch.Tensor] = {}

    @torch.inference_mode()
    def text_embeddings(self, subcategories: Sequence[SubcategoryLike]) -> torch.Tensor:
        """``len(subcategories) x D`` unit text embeddings, cached per subcategory set."""
        key = tuple((sub.key, class_names(sub)) for sub in subcategories)
        if key not in self._text:
            if len(self._text) >= _TEXT_CACHE_SIZE:
                self._text.pop(next(iter(self._text)))
            file = self._cache_file(key)
            if file is not None and file.is_file():
                text = torch.load(file, map_location="cpu", weights_only=True)
            else:
                text = self._encode(key)
                if file is not None:
                    _save_atomic(text, file)
            self._text[key] = text.to(self.clip.device)
        return self._text[key]

    def _encode(self, key: tuple) -> torch.Tensor:
        rows = []
        for _, names in key:
            prompts = [template.format(name) for name in names for template in self.templates]
            tokens = self.clip.tokenizer(prompts).to(self.clip.device)
            emb = self.clip.model.encode_text(tokens).float()
            emb = emb / emb.norm(dim=-1, keepdim=True)
            mean = emb.mean(dim=0)
            rows.append(mean / mean.norm())
        return torch.stack(rows).cpu()

    def _cache_file(self, key: tuple) -> Path | None:
        if self.cache_dir is None:
            return None
        identity = json.dumps([self.clip.identity, self.templates, key])
        return self.cache_dir / f"clip-text-{hashlib.sha1(identity.encode()).hexdigest()[:16]}.pt"

    @torch.inference_mode()
    def categorize(self, images: Sequence[np.ndarray], subcategories: Sequence[SubcategoryLike],
                   top_k: int = 3) -> list[list[tuple[str, float]]]:
        if not subcategories:
            raise UserError("categorize: no subcategories given; pass the domain's taxonomy subcategories")
        keys = [sub.key for sub in subcategories]
        if len(set(keys)) != len(keys):
            raise UserError("categorize: subcategory keys repeat; pass each subcategory once")
        if top_k < 1:
            raise UserError(f"categorize top_k {top_k}: must be at least 1")
        text = self.text_embeddings(subcategories)
        scale = self.clip.model.logit_scale.exp().float()
        k = min(top_k, len(keys))
        results: list[list[tuple[str, float]]] = []
        for start in range(0, len(images), self.batch_size):
            batch = self.clip.image_batch(list(images[start: start + self.batch_size]))
            emb = self.clip.model.encode_image(batch).float()
            emb = emb / emb.norm(dim=-1, keepdim=True)
            probs = (scale * emb @ text.T).softmax(dim=-1).cpu()
            scores, indices = probs.topk(k, dim=-1)
            results += [[(keys[i], float(s)) for s, i in zip(row_s.tolist(), row_i.tolist())]
                        for row_s, row_i in zip(scores, indices)]
        return results


def _save_atomic(tensor: torch.Tensor, file: Path) -> None:
    """Write ``tensor`` so a concurrent reader sees either no file or the whole file."""
    file.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=file.parent, suffix=".tmp")
    os.close(handle)
    torch.save(tensor, tmp)
    os.replace(tmp, file)
