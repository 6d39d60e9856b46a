"""Trivial editors that every score of a real editor is compared with, so a table says how far it is above
doing nothing.

Each sees only what an editor sees — the target with its mask, and the reference (with its mask) — and never
reads a target pixel inside the mask: that is the ground truth it is scored against. Both keep every pixel
outside the mask, as ``unieditkit edit`` does, so only the generated region differs between them and a model.

* ``mean-fill``: the mask filled with the mean colour of the visible target. It is what pixel-error metrics
  reward when an editor has learned nothing about the object (the MSE-optimal flat guess from the context).
* ``paste-ref``: the reference object stretched into the mask's bounding box, over ``mean-fill``. It has the
  right appearance but no pose, lighting or blending, so an editor that only copies the reference scores like it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image

from unieditkit.format import GREY


def _check(target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    if target.dtype != np.uint8 or target.ndim != 3 or target.shape[2] != 3:
        raise ValueError(f"target: expected a uint8 HxWx3 image, got {target.dtype} {target.shape}")
    if mask.shape != target.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match the target {target.shape[:2]}")
    return mask.astype(bool)


def mean_fill(target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``target`` with its mask filled by the rounded mean colour of the unmasked pixels (the format's grey
    when the mask covers the whole image, as there is then no visible colour to take)."""
    mask = _check(target, mask)
    visible = target[~mask]
    colour = np.rint(visible.astype(np.float64).mean(axis=0)).astype(np.uint8) if len(visible) else np.full(3, GREY, np.uint8)
    out = target.copy()
    out[mask] = colour
    return out


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of the mask's pixels, exclusive at the right and bottom."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def paste_reference(target: np.ndarray, mask: np.ndarray, ref: np.ndarray, ref_mask: np.ndarray | None) -> np.ndarray:
    """:func:`mean_fill`, then the reference object (the pixels of ``ref_mask``, or all of ``ref`` when it is
    None) cropped to its box, stretched to the mask's bounding box and pasted where both masks cover."""
    mask = _check(target, mask)
    out = mean_fill(target, mask)
    if not mask.any():
        return out
    if ref.dtype != np.uint8 or ref.ndim != 3 or ref.shape[2] != 3:
        raise ValueError(f"ref: expected a uint8 HxWx3 image, got {ref.dtype} {ref.shape}")
    if ref_mask is None:
        obj_mask = np.ones(ref.shape[:2], bool)
    else:
        if ref_mask.shape != ref.shape[:2]:
            raise ValueError(f"ref_mask {ref_mask.shape} does not match the reference {ref.shape[:2]}")
        obj_mask = ref_mask.astype(bool)
        if not obj_mask.any():
            raise ValueError("ref_mask is empty: the reference has no object to paste")
    rx0, ry0, rx1, ry1 = _box(obj_mask)
    x0, y0, x1, y1 = _box(mask)
    size = (x1 - x0, y1 - y0)
    obj = np.asarray(Image.fromarray(ref[ry0:ry1, rx0:rx1]).resize(size, Image.BILINEAR))
    cover = np.asarray(Image.fromarray(obj_mask[ry0:ry1, rx0:rx1]).resize(size, Image.NEAREST)) & mask[y0:y1, x0:x1]
    out[y0:y1, x0:x1][cover] = obj[cover]
    return out


#: the baselines by the name their rows carry in ``unieditkit eval`` and the benches; each is called as
#: ``f(target, mask, ref, ref_mask)``
BASELINES: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None], np.ndarray]] = {
    "mean-fill": lambda target, mask, ref, ref_mask: mean_fill(target, mask),
    "paste-ref": paste_reference,
}
