"""Match objects across the two images of a mined pair (two video frames, two views of one object).

The detector runs on each image separately, so which reference object is the same instance as a target
object has to be decided here: same subcategory, then the best appearance similarity (hue/saturation
histograms inside the masks) plus box overlap (objects in video move little between nearby frames). A target
object with no candidate above ``min_similarity`` is rejected as ``no_match`` rather than paired with a
different instance.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from unieditkit import rle


def _hist(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    h = cv2.calcHist([hsv], [0, 1], mask.astype(np.uint8), [30, 32], [0, 180, 0, 256])
    return cv2.normalize(h, h).flatten()


def _iou(a: list[float], b: list[float], size_a: tuple[int, int], size_b: tuple[int, int]) -> float:
    """IoU of two boxes in coordinates normalised by their own image size (frames may differ in size)."""
    na = [a[0] / size_a[0], a[1] / size_a[1], a[2] / size_a[0], a[3] / size_a[1]]
    nb = [b[0] / size_b[0], b[1] / size_b[1], b[2] / size_b[0], b[3] / size_b[1]]
    ix = max(0.0, min(na[2], nb[2]) - max(na[0], nb[0]))
    iy = max(0.0, min(na[3], nb[3]) - max(na[1], nb[1]))
    inter = ix * iy
    union = (na[2] - na[0]) * (na[3] - na[1]) + (nb[2] - nb[0]) * (nb[3] - nb[1]) - inter
    return inter / union if union > 0 else 0.0


def match_objects(
    tgt: np.ndarray, tgt_objects: list[dict[str, Any]], ref: np.ndarray, ref_objects: list[dict[str, Any]], min_similarity: float = 0.3
) -> list[dict[str, Any]]:
    """Each target object gets ``ref_segmentation`` and ``match_score`` of its best reference object, if any."""
    th, tw = tgt.shape[:2]
    rh, rw = ref.shape[:2]
    ref_feats = []
    for r in ref_objects:
        if r.get("segmentation"):
            m = rle.decode(r["segmentation"], rh, rw)
            if m.any():
                ref_feats.append((r, m, _hist(ref, m)))
    for obj in tgt_objects:
        if not obj.get("segmentation"):
            continue
        m = rle.decode(obj["segmentation"], th, tw)
        if not m.any():
            continue
        feat = _hist(tgt, m)
        best, best_score = None, min_similarity
        for r, rm, rfeat in ref_feats:
            if r["subcategory"] != obj["subcategory"]:
                continue
            score = float(cv2.compareHist(feat, rfeat, cv2.HISTCMP_CORREL)) + 0.5 * _iou(obj["bbox"], r["bbox"], (tw, th), (rw, rh))
            if score > best_score:
                best, best_score = r, score
        if best is not None:
            obj["ref_segmentation"] = best["segmentation"]
            obj["match_score"] = round(best_score, 5)
    return tgt_objects
