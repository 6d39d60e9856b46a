"""The four model interfaces of the mining pipeline and the input checks they share.

Each interface is a plain class with numpy in and numpy/Python out, so a Ray stage can hold any implementation
(a real network, a classical fallback, a fake in a test) without knowing which; images are always RGB uint8
``H x W x 3`` arrays, the layout every loader in the pipeline produces.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from unieditkit.errors import UserError


class SubcategoryLike(Protocol):
    """What the backends read from a ``taxonomy.Subcategory`` (so they do not import the taxonomy package)."""

    key: str
    name: str
    prompts: tuple[str, ...]
    synonyms: tuple[str, ...]


@dataclass(frozen=True)
class Detection:
    """One detected object: ``bbox`` is ``(x0, y0, x1, y1)`` in pixels of the input image, ``phrase`` is the
    prompt (exactly as passed to ``detect``) that the box matched best."""

    bbox: tuple[float, float, float, float]
    score: float
    phrase: str


class Detector(ABC):
    """Open-vocabulary detector: finds objects named by text prompts."""

    @abstractmethod
    def detect(self, image: np.ndarray, prompts: Sequence[str]) -> list[Detection]:
        """Detections in ``image`` for ``prompts``, best score first."""

    def detect_batch(self, images: Sequence[np.ndarray], prompts: Sequence[str], batch_size: int = 8) -> list[list[Detection]]:
        """``detect`` of each image; a network overrides it to run up to ``batch_size`` images per forward pass,
        with each image's result equal to ``detect``'s (the stage relies on that for reproducible shards)."""
        return [self.detect(image, prompts) for image in images]


class Segmenter(ABC):
    """Box-prompted segmenter: one mask per box."""

    #: recorded as ``mask_source`` in the sample metadata
    name: str

    @abstractmethod
    def segment(self, image: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
        """One bool ``H x W`` mask per row of ``boxes`` (``N x 4`` xyxy pixels), each zero outside its box."""

    def segment_batch(self, items: Sequence[tuple[np.ndarray, np.ndarray]], batch_size: int = 8) -> list[list[np.ndarray]]:
        """``segment`` of each ``(image, boxes)``; a network overrides it to embed up to ``batch_size`` images per
        forward pass, with each image's masks equal to ``segment``'s."""
        return [self.segment(image, boxes) for image, boxes in items]


class Captioner(ABC):
    """Image captioner."""

    @abstractmethod
    def caption(self, images: Sequence[np.ndarray]) -> list[str]:
        """One caption per image, in order."""


class Categorizer(ABC):
    """Zero-shot classifier over a set of taxonomy subcategories."""

    @abstractmethod
    def categorize(
        self, images: Sequence[np.ndarray], subcategories: Sequence[SubcategoryLike], top_k: int = 3
    ) -> list[list[tuple[str, float]]]:
        """Per image, the ``top_k`` best ``(subcategory key, probability)`` pairs, best first."""


def check_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Return ``image`` if it is an RGB uint8 ``H x W x 3`` array; a wrong layout would otherwise surface as a
    shape error deep inside a network, far from the loader that produced it."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise UserError(
            f"{what}: expected an RGB uint8 array of shape HxWx3, got shape {shape} dtype {dtype}; "
            "decode images with PIL .convert('RGB') before the model stages"
        )
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise UserError(f"{what}: image of size {image.shape[1]}x{image.shape[0]} is too small; need at least 2x2 pixels")
    return image


def check_boxes(boxes: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
    """``boxes`` as a float32 ``N x 4`` array clipped to the image; boxes with ``x1 <= x0`` or ``y1 <= y0`` are
    rejected because they are always an upstream bug (a box in the wrong format, e.g. xywh)."""
    arr = np.asarray(boxes, dtype=np.float32)
    if arr.size == 0:
        return np.zeros((0, 4), np.float32)
    if arr.ndim != 2 or arr.shape[1] != 4 or not np.isfinite(arr).all():
        raise UserError(f"boxes: expected a finite N x 4 array of xyxy pixel boxes, got shape {arr.shape}")
    h, w = image_shape[:2]
    arr = np.stack(
        [arr[:, 0].clip(0, w), arr[:, 1].clip(0, h), arr[:, 2].clip(0, w), arr[:, 3].clip(0, h)], axis=1
    )
    bad = np.flatnonzero((arr[:, 2] <= arr[:, 0]) | (arr[:, 3] <= arr[:, 1]))
    if bad.size:
        raise UserError(
            f"boxes: box {bad[0]} {np.asarray(boxes)[bad[0]].tolist()} is empty inside the {w}x{h} image; "
            "boxes must be xyxy pixels with x1 > x0 and y1 > y0"
        )
    return arr


def box_window(box: np.ndarray, image_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Integer pixel window ``(x0, y0, x1, y1)`` (exclusive ends) covering every pixel the box touches."""
    h, w = image_shape[:2]
    x0 = int(np.floor(box[0]))
    y0 = int(np.floor(box[1]))
    x1 = int(np.ceil(box[2]))
    y1 = int(np.ceil(box[3]))
    return max(0, x0), max(0, y0), min(w, max(x1, x0 + 1)), min(h, max(y1, y0 + 1))


def clip_mask_to_box(mask: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Bool copy of ``mask`` with everything outside ``box`` cleared: a mask that leaks past its box would pair
    the object with pixels of its neighbours."""
    x0, y0, x1, y1 = box_window(box, mask.shape)
    out = np.zeros(mask.shape[:2], dtype=bool)
    out[y0:y1, x0:x1] = mask[y0:y1, x0:x1].astype(bool)
    return out
