"""Embed stage: CLIP image features of the detected objects of two-image mined units, for ``match.py``.

Which reference object is the same instance as a target object is decided on appearance, and a CLIP image
embedding separates instances far better than colour histograms (a white shirt from a white towel, one dog
from another of the same colour). The stage runs when the build loads CLIP anyway (the ``categorize`` stage):
each object is cut out on neutral grey, cropped square around its box and encoded; the unit vector travels on
in the object's JSON as ``embedding`` and the pair stage matches on it. Without this stage, or for an object
this stage could not see, ``match.py`` uses its colour/texture descriptor for the whole unit.

Each unit's objects are encoded as one batch of their own, so a unit's embeddings do not depend on which
other units Ray happens to batch with it.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from unieditkit import rle
from unieditkit.format import GREY

from ..models.factory import build_categorizer
from ..models.weights import ModelSpec
from .images import DecodedImages, ImageStage

DECIMALS = 5


def object_crop(image: np.ndarray, mask: np.ndarray, box: list[float]) -> np.ndarray:
    """The object on grey, in a square around its box (10% margin): what CLIP sees of it, and nothing else."""
    h, w = mask.shape
    side = max(box[2] - box[0], box[3] - box[1]) * 1.1
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x0, y0 = int(max(0, np.floor(cx - side / 2))), int(max(0, np.floor(cy - side / 2)))
    x1, y1 = int(min(w, np.ceil(cx + side / 2))), int(min(h, np.ceil(cy + side / 2)))
    cut = np.where(mask[y0:y1, x0:x1, None], image[y0:y1, x0:x1], np.uint8(GREY))
    return np.ascontiguousarray(cut, dtype=np.uint8)


class EmbedStage(ImageStage):
    def __init__(self, spec: ModelSpec, device: str = "cpu") -> None:
        self.clip = build_categorizer(spec, device=device).clip

    @torch.inference_mode()
    def embed_objects(self, image: np.ndarray | None, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if image is None:
            return objects  # unreadable: the pair stage records why
        h, w = image.shape[:2]
        todo, crops = [], []
        for obj in objects:
            if obj.get("segmentation"):
                mask = rle.decode(obj["segmentation"], h, w)
                if mask.any():
                    crop = object_crop(image, mask, obj["bbox"])
                    if min(crop.shape[:2]) >= 2:
                        todo.append(obj)
                        crops.append(crop)
        if crops:
            emb = self.clip.model.encode_image(self.clip.image_batch(crops)).float()
            emb = (emb / emb.norm(dim=-1, keepdim=True)).cpu().numpy()
            for obj, vec in zip(todo, emb):
                obj["embedding"] = [round(float(v), DECIMALS) for v in vec]
        return objects

    def process(self, rows: list[dict[str, Any]], images: DecodedImages) -> None:
        for row in rows:
            if row["needs_detection"] and row["ref_uri"]:
                row["objects"] = json.dumps(self.embed_objects(images.get(row["tgt_uri"]), json.loads(row["objects"])), sort_keys=True)
                row["ref_objects"] = json.dumps(self.embed_objects(images.get(row["ref_uri"]), json.loads(row["ref_objects"])), sort_keys=True)
