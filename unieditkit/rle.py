"""Masks as COCO run-length encoding in JSON: compact enough to travel in pipeline rows between stages."""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def encode(mask: np.ndarray) -> dict[str, Any]:
    """Bool HxW → ``{"size": [h, w], "counts": str}`` (compressed COCO RLE, JSON-safe)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode(segmentation: Any, height: int, width: int) -> np.ndarray:
    """COCO segmentation (polygons, uncompressed or compressed RLE) → bool HxW."""
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    elif isinstance(segmentation, dict):
        counts = segmentation["counts"]
        rle = dict(segmentation, counts=counts.encode("ascii") if isinstance(counts, str) else counts)
    else:
        rle = mask_utils.merge(mask_utils.frPyObjects([p for p in segmentation if len(p) >= 6], height, width))
    return mask_utils.decode(rle).astype(bool)
