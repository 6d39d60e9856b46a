"""Match objects across the two images of a mined pair (two video frames, two views of one object).

The detector runs on each image separately, so which reference object is the same instance as a target
object has to be decided here, and a wrong decision is a training pair whose reference is a *different*
object. Three rules keep identities apart:

* **One-to-one.** Reference and target objects are paired by a Hungarian assignment
  (``scipy.optimize.linear_sum_assignment``) on the pair scores, so two target objects can never both take the
  same reference object; a target object left without a partner is rejected as ``no_match``.
* **Category over the taxonomy, not detector strings.** Two labels are compatible when they are the same
  subcategory, or *siblings*: subcategories of one domain whose names (name, prompts, synonyms) share a head
  noun, e.g. ``shirt`` / ``t_shirt`` / ``polo_shirt``. A detector that says "shirt" in one frame and
  "t-shirt" in the next still matches (scaled by ``SIBLING_FACTOR``); a dog never matches a cat.
* **Appearance plus geometry.** ``score = category factor x (APPEARANCE_WEIGHT x appearance +
  (1 - APPEARANCE_WEIGHT) x box IoU)``, in [0, 1]. Appearance is the cosine of the descriptors below; the box
  IoU is taken against where the reference object is expected in the target image: its box carried there by
  the tracker (video, see ``track.py``), or its own box (views, nearby frames). Pairs scoring below the
  ``min_match_similarity`` setting are not made.
* **No pair through a distrusted track.** A reference object whose track says it may have been confused with a
  look-alike (``track.ambiguities``) still takes part in the assignment, so it still takes the target object
  most like it away from the others, but that target object is then rejected as ``ambiguous_identity``
  (``match_reason``) instead of paired: which of the look-alikes it is, nothing here can tell.

Appearance is the cosine of CLIP image embeddings when the build loads CLIP (``embed.py`` puts them on every
object as ``embedding``), else of a descriptor that needs no weights. The descriptor
(``colour_texture_descriptor``) is a 16x8 hue-saturation histogram and an 8-bin
gradient-orientation histogram (magnitude-weighted), both inside the object mask, each square-rooted (the
Hellinger mapping, so cosine ranks like the Bhattacharyya coefficient) and weighted 2:1 before unit
normalisation: it sees colour and texture and ignores the background around the object.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from unieditkit import rle

from .track import iou

APPEARANCE_WEIGHT = 0.5
SIBLING_FACTOR = 0.9
Box = Sequence[float]
Describer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def colour_texture_descriptor(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Unit vector describing the colours and edge directions of ``image`` inside ``mask`` (see module doc)."""
    m = mask.astype(np.uint8)
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    colour = cv2.calcHist([hsv], [0, 1], m, [16, 8], [0, 180, 0, 256]).flatten()
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    magnitude, angle = cv2.cartToPolar(gx, gy)
    bins = (np.mod(angle, np.pi) / np.pi * 8).astype(np.int32).clip(0, 7)
    inside = mask.astype(bool)
    texture = np.bincount(bins[inside], weights=magnitude[inside], minlength=8).astype(np.float32)
    parts = []
    for hist, weight in ((colour, 2.0), (texture, 1.0)):
        total = float(hist.sum())
        parts.append(weight * np.sqrt(hist / total) if total > 0 else np.zeros_like(hist))
    vec = np.concatenate(parts)
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else vec


def box_iou(a: Box, b: Box, size_a: tuple[int, int], size_b: tuple[int, int]) -> float:
    """IoU of two xyxy boxes in coordinates normalised by their own image size (frames may differ in size)."""
    na = [a[0] / size_a[0], a[1] / size_a[1], a[2] / size_a[0], a[3] / size_a[1]]
    nb = [b[0] / size_b[0], b[1] / size_b[1], b[2] / size_b[0], b[3] / size_b[1]]
    return iou(na, nb)


def _head_nouns(sub: Any) -> frozenset[str]:
    return frozenset(n.replace("-", " ").split()[-1] for n in (sub.name.lower(), *sub.prompts, *sub.synonyms) if n.split())


@functools.lru_cache(maxsize=4096)
def category_factor(taxonomy: Any, a: str, b: str) -> float:
    """1 for the same subcategory (by key or any of its names), ``SIBLING_FACTOR`` for siblings, 0 otherwise."""
    if a == b:
        return 1.0
    sa, sb = taxonomy.lookup(a), taxonomy.lookup(b)
    if sa is None or sb is None:
        return 0.0
    if sa.key == sb.key:
        return 1.0
    return SIBLING_FACTOR if sa.domain == sb.domain and _head_nouns(sa) & _head_nouns(sb) else 0.0


def _decoded(image: np.ndarray, objects: list[dict[str, Any]]) -> list[tuple[int, np.ndarray]]:
    h, w = image.shape[:2]
    out = []
    for i, obj in enumerate(objects):
        if obj.get("segmentation"):
            m = rle.decode(obj["segmentation"], h, w)
            if m.any():
                out.append((i, m))
    return out


def match_objects(
    tgt: np.ndarray,
    tgt_objects: list[dict[str, Any]],
    ref: np.ndarray,
    ref_objects: list[dict[str, Any]],
    taxonomy: Any,
    min_score: float,
    expected_boxes: Sequence[Box | None] | None = None,
    describe: Describer = colour_texture_descriptor,
    distrusted: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Pair target objects one-to-one with reference objects; matched target objects get ``ref_segmentation``,
    ``ref_object_id`` and ``match_score``, unmatched ones ``match_detail`` (why not), and ``match_reason`` when
    the reason is not ``no_match``.

    ``expected_boxes[j]``: where reference object ``j`` is expected in the target image (its tracked box), or
    None to compare with its box in the reference image. ``distrusted[j]``: why reference object ``j``'s track
    cannot tell it from a look-alike, or "" when it can.
    """
    th, tw = tgt.shape[:2]
    rh, rw = ref.shape[:2]
    tgt_masks = _decoded(tgt, tgt_objects)
    ref_masks = _decoded(ref, ref_objects)
    for obj in tgt_objects:
        obj["match_detail"] = "no object in the reference image has a mask"
    if not tgt_masks or not ref_masks:
        return tgt_objects
    if all("embedding" in tgt_objects[i] for i, _ in tgt_masks) and all("embedding" in ref_objects[j] for j, _ in ref_masks):
        tgt_desc = np.asarray([tgt_objects[i]["embedding"] for i, _ in tgt_masks], dtype=np.float64)
        ref_desc = np.asarray([ref_objects[j]["embedding"] for j, _ in ref_masks], dtype=np.float64)
    else:
        tgt_desc = np.stack([describe(tgt, m) for _, m in tgt_masks])
        ref_desc = np.stack([describe(ref, m) for _, m in ref_masks])
    appearance = np.clip(tgt_desc @ ref_desc.T, 0.0, 1.0)
    scores = np.zeros(appearance.shape)
    allowed = np.zeros(appearance.shape, bool)
    for a, (i, _) in enumerate(tgt_masks):
        for b, (j, _) in enumerate(ref_masks):
            factor = category_factor(taxonomy, tgt_objects[i]["subcategory"], ref_objects[j]["subcategory"])
            if factor == 0.0:
                continue
            allowed[a, b] = True
            expected = expected_boxes[j] if expected_boxes is not None else None
            geometry = (
                box_iou(tgt_objects[i]["bbox"], expected, (tw, th), (tw, th))
                if expected is not None
                else box_iou(tgt_objects[i]["bbox"], ref_objects[j]["bbox"], (tw, th), (rw, rh))
            )
            scores[a, b] = factor * (APPEARANCE_WEIGHT * appearance[a, b] + (1.0 - APPEARANCE_WEIGHT) * geometry)
    rows, cols = linear_sum_assignment(scores, maximize=True)
    assigned = dict(zip(rows.tolist(), cols.tolist()))
    for a, (i, _) in enumerate(tgt_masks):
        obj = tgt_objects[i]
        best = float(scores[a].max())
        b = assigned.get(a)
        if b is None or not allowed[a, b] or scores[a, b] < min_score:
            if not allowed[a].any():
                why = "no compatible category"
            elif best >= min_score:
                why = "taken by a better-matching target object"
            else:
                why = f"best score {best:.3f} < {min_score}"
            obj["match_detail"] = f"no reference object of a compatible category and appearance ({why})"
            continue
        j = ref_masks[b][0]
        if distrusted is not None and distrusted[j]:
            obj["match_reason"] = "ambiguous_identity"
            obj["match_detail"] = (f"best match reference object {ref_objects[j]['object_id']} (score {scores[a, b]:.3f}) "
                                   f"may be a look-alike: {distrusted[j]}")
            continue
        obj.pop("match_detail")
        obj.update(ref_segmentation=ref_objects[j]["segmentation"], ref_object_id=str(ref_objects[j]["object_id"]),
                   match_score=round(float(scores[a, b]), 5))
    return tgt_objects
