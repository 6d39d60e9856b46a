"""Pair stage: from a work unit with object masks to (reference, target) samples.

For ``self`` pairs the reference is the object cut out of the target and then augmented (flip, scale,
rotation, slight perspective, brightness/contrast/gamma that keep the hue: the object's identity includes its
colour) so an editor cannot learn to copy pixels from the reference into the hole. For two-image pairs
(``manifest``, and the video/multiview/try-on miners) the reference comes from the other image and is only
cropped; for mined two-image pairs, which reference object is the target object's instance is decided by
``match.py`` (one-to-one), after ``track.py`` followed the objects through the frames of a video pair; a
target object matched to a reference object whose track may have been confused with a look-alike's is
rejected as ``ambiguous_identity``.

Every unit yields at least one row and rows are never dropped later: a failure becomes a ``rejected`` row
with its reason. The writer counts rows per unit to know when a shard is complete.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import cv2
import numpy as np
import pyarrow as pa

from unieditkit.taxonomy import Taxonomy, load_taxonomy
from unieditkit import rle
from unieditkit.faults import maybe_crash
from unieditkit.format import (
    BYTES_COLUMNS, FINE, GREY, REF_IMAGE, REF_MASK, ROW_COLUMNS, TARGET_IMAGE, column, empty_meta, mask_column, row_schema,
)
from unieditkit.imageio import ImageReadError, encode_jpeg, encode_mask, load_mask_uri
from unieditkit.media import load_uri
from unieditkit.mats import bbox, sample_seed
from unieditkit.uri import split_uri
from unieditkit.video import read_frames

from ..config import OutputSettings
from .match import category_factor, match_objects
from .track import Track, Tracker, TrackerSpec, ambiguities, step_indices


def unit_key(domain: str, unit_id: str) -> str:
    """``{domain}_{readable stem}_{hash}``: stable, unique per unit, and free of dots (WebDataset splits on them)."""
    stem = re.sub(r"[^a-z0-9]+", "-", unit_id.rsplit("/", 1)[-1].rsplit(".", 1)[0].lower()).strip("-")[:24] or "x"
    digest = hashlib.sha1(unit_id.encode("utf-8")).hexdigest()[:10]
    return f"{domain}_{stem}_{digest}"


def sample_key(domain: str, unit_id: str, object_index: int) -> str:
    return f"{unit_key(domain, unit_id)}_{object_index:02d}"


def complete_row(unit: dict[str, Any], row: dict[str, Any], unit_rows: int) -> dict[str, Any]:
    """Every row carries every column, so all stages and the writer see one schema."""
    full = {c: b"" if c in BYTES_COLUMNS else "" for c in ROW_COLUMNS}
    full.update(row, shard=unit["shard"], unit_id=unit["unit_id"], unit_rows=unit_rows)
    return full


def rejected(key: str, reason: str, detail: str) -> dict[str, Any]:
    return {"key": key, "status": "rejected", "reason": reason, "detail": detail, "meta": "{}"}


def resize_to_max_side(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale == 1.0:
        return image, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def reference_mask(unit: dict[str, Any], obj: dict[str, Any], ref: np.ndarray) -> np.ndarray | None:
    """The object's mask in the reference image: matched (mined pairs), given (manifest, try-on), or — for a
    product shot with no mask — the whole image. None when a mined pair found no matching object."""
    h, w = ref.shape[:2]
    if unit["needs_detection"]:
        return rle.decode(obj["ref_segmentation"], h, w) if obj.get("ref_segmentation") else None
    if unit["ref_mask_uri"]:
        m = load_mask_uri(unit["ref_mask_uri"])
        if m.shape != (h, w):
            raise ImageReadError("mask_size_mismatch", f"{unit['ref_mask_uri']} is {m.shape[1]}x{m.shape[0]}, reference is {w}x{h}")
        return m
    return np.ones((h, w), bool)


def object_mask(obj: dict[str, Any], height: int, width: int) -> np.ndarray | None:
    """The object's mask at the target image's decoded size, or None when only a box is known."""
    if obj.get("mask_uri"):
        m = load_mask_uri(obj["mask_uri"])
        if m.shape != (height, width):
            raise ImageReadError("mask_size_mismatch", f"{obj['mask_uri']} is {m.shape[1]}x{m.shape[0]}, image is {width}x{height}")
        return m
    segm = obj.get("segmentation")
    if not segm:
        return None
    ann_w, ann_h = obj.get("image_size") or (0, 0)
    if (ann_w, ann_h) not in ((0, 0), (width, height)):
        raise ImageReadError("annotation_size_mismatch", f"annotation is for {ann_w}x{ann_h}, image decodes as {width}x{height}")
    return rle.decode(segm, height, width)


def _square_around(box: tuple[int, int, int, int], margin: float) -> tuple[float, float, float]:
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1.0 + margin)
    return (x0 + x1) / 2.0, (y0 + y1) / 2.0, side


def tone_factors(brightness: float, contrast: float, gamma: float) -> np.ndarray:
    """Per HSV value level (0-255), the factor that takes a pixel of that value along the tone curve (float32)."""
    levels = np.arange(256, dtype=np.float32)
    curve = np.clip((levels / 255.0 - 0.5) * contrast + 0.5 + brightness, 0.0, 1.0) ** gamma * 255.0
    return np.where(levels > 0, curve / np.maximum(levels, 1e-6), 0.0).astype(np.float32)


def adjust_tone(image: np.ndarray, brightness: float, contrast: float, gamma: float) -> np.ndarray:
    """Brightness, contrast and gamma that keep every pixel's hue and saturation: the tone curve is applied to
    the HSV value (the largest channel) and all three channels are scaled by the same factor, new value / old
    value. Scaling R, G and B by one factor leaves both hue and saturation unchanged, and since the curve never
    exceeds 255 no channel clips; only rounding to uint8 moves the hue, by a fraction of a degree on
    well-lit, saturated pixels. (Per-channel gains would shift the hue: a face turned green.)

    The factor depends only on the pixel's value, one of 256 levels, so it is looked up (``cv2.LUT``), and the
    product is rounded half to even and saturated by ``cv2.multiply``: the same bytes as ``rint(image *
    factor)`` in numpy (tested on every channel/value pair), at a quarter of the CPU (the reference's tone
    change was the largest single cost of a self pair, ``bench/profile_build.py``)."""
    value = cv2.max(cv2.max(image[..., 0], image[..., 1]), image[..., 2])
    factor = cv2.LUT(value, tone_factors(brightness, contrast, gamma))
    return cv2.multiply(image.astype(np.float32), cv2.merge([factor, factor, factor]), dtype=cv2.CV_8U)


def make_reference(
    image: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int], size: int, rng: np.random.Generator | None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Cut the object (``mask``, whose bbox is ``box``) onto neutral grey, square, ``size`` px; with ``rng``,
    augment it (flip, scale, rotation and perspective as one homography, then a hue-preserving tone change)."""
    cx, cy, side = _square_around(box, margin=0.15)
    aug = {"flip": False, "scale": 1.0, "rotate_deg": 0.0, "perspective": 0.0, "brightness": 0.0, "contrast": 1.0, "gamma": 1.0}
    src = np.float32([[cx - side / 2, cy - side / 2], [cx + side / 2, cy - side / 2], [cx + side / 2, cy + side / 2], [cx - side / 2, cy + side / 2]])
    dst = np.float32([[0, 0], [size, 0], [size, size], [0, size]])
    if rng is not None:
        aug = {
            "flip": bool(rng.random() < 0.5),
            "scale": float(rng.uniform(0.85, 1.1)),
            "rotate_deg": float(rng.uniform(-12.0, 12.0)),
            "perspective": float(rng.uniform(0.0, 0.08)),
            "brightness": float(rng.uniform(-0.1, 0.1)),
            "contrast": float(rng.uniform(0.8, 1.2)),
            "gamma": float(np.exp(rng.uniform(np.log(0.8), np.log(1.25)))),
        }
        centre = np.float32([size / 2, size / 2])
        theta = np.deg2rad(aug["rotate_deg"])
        rot = np.float32([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) * aug["scale"]
        dst = (dst - centre) @ rot.T + centre
        dst += rng.uniform(-aug["perspective"], aug["perspective"], size=(4, 2)).astype(np.float32) * size
        if aug["flip"]:
            dst = dst[[1, 0, 3, 2]]
    h = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    ref = cv2.warpPerspective(image, h, (size, size), flags=cv2.INTER_LINEAR, borderValue=(GREY, GREY, GREY))
    ref_mask = cv2.warpPerspective(mask.view(np.uint8), h, (size, size), flags=cv2.INTER_NEAREST) > 0
    if rng is not None:
        ref = adjust_tone(ref, aug["brightness"], aug["contrast"], aug["gamma"])
    out = np.full_like(ref, GREY)
    cv2.copyTo(ref, ref_mask.view(np.uint8), out)  # the object on grey: np.where's bytes at 1/40 of its CPU
    return out, ref_mask, aug


def sharpness(grey: np.ndarray) -> float:
    """Variance of the Laplacian of the whole target: a cheap blur score (higher is sharper). Measured on the
    scene rather than the object, since a plain single-colour object in a sharp photo is not blurry."""
    _, std = cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_64F))  # one pass, no temporaries (numpy's var makes two)
    return float(std[0, 0]) ** 2


def phash(grey: np.ndarray) -> int:
    """64-bit DCT perceptual hash (the classic pHash: 32x32 DCT, top-left 8x8 against its median)."""
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].flatten()
    bits = low > np.median(low[1:])
    return int(np.packbits(bits).view(">u8")[0])


def pair_method(unit: dict[str, Any]) -> str:
    """How the reference object is found (recorded per sample as ``pair_method``): ``self`` (cut from the
    target), ``annotation`` (the source gives its mask, or the reference image is the object), ``track``
    (unannotated video: followed from frame to frame, then matched one-to-one; ``track_sam2`` when SAM 2's video
    predictor followed it, see ``PairStage.unit_rows``), ``appearance`` (detections of two images matched
    one-to-one on appearance and position)."""
    if not unit["ref_uri"]:
        return "self"
    if not unit["needs_detection"]:
        return "annotation"
    return "track" if video_frames(unit) is not None else "appearance"


def video_frames(unit: dict[str, Any]) -> tuple[str, int, int] | None:
    """``(video, reference frame, target frame)`` when the unit pairs two frames of one video, forward in time."""
    ref_path, ref_params = split_uri(unit["ref_uri"])
    tgt_path, tgt_params = split_uri(unit["tgt_uri"])
    if set(ref_params) != {"frame"} or set(tgt_params) != {"frame"} or ref_path != tgt_path:
        return None
    a, b = int(ref_params["frame"]), int(tgt_params["frame"])
    return (ref_path, a, b) if 0 <= a < b else None


def tracked(unit: dict[str, Any], ref_objects: list[dict[str, Any]], tracker: Tracker) -> tuple[list[Track], list[int]]:
    """Each reference object followed into the target frame by ``tracker``, and the frame numbers
    looked at. Raises ``ImageReadError`` when a frame in between does not decode: the unit is then rejected
    (``track_failed``) rather than matched on appearance alone, which cannot tell look-alikes apart."""
    where = video_frames(unit)
    assert where is not None
    path, a, b = where
    steps = step_indices(a, b)
    return tracker.track(read_frames(path, steps), [o["bbox"] for o in ref_objects]), steps


class Target:
    """The target image at output size; its JPEG is encoded once and shared by all objects of the image."""

    def __init__(self, full: np.ndarray, max_side: int) -> None:
        self.full = full
        self.image, self.scale = resize_to_max_side(full, max_side)
        self.grey = cv2.cvtColor(self.image, cv2.COLOR_RGB2GRAY)
        self.sharpness = sharpness(self.grey)
        self._jpeg = b""

    @property
    def jpeg(self) -> bytes:
        if not self._jpeg:
            self._jpeg = encode_jpeg(self.image)
        return self._jpeg


class PairStage:
    """Ray Data batch function (stateless, so Ray fuses it with the other CPU stages into one task)."""

    def __init__(self, domain: str, settings: OutputSettings, taxonomy_path: str = "", tracker: TrackerSpec = TrackerSpec()) -> None:
        self.domain = domain
        self.settings = settings
        self.taxonomy_path = taxonomy_path
        self.tracker = tracker
        self._taxonomy: Taxonomy | None = None

    @property
    def taxonomy(self) -> Taxonomy:
        if self._taxonomy is None:
            self._taxonomy = load_taxonomy(self.taxonomy_path or None)
        return self._taxonomy

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = []
        for unit in batch.to_pylist():
            rows = self.unit_rows(unit)
            out.extend(complete_row(unit, r, len(rows)) for r in rows)
        return pa.Table.from_pylist(out, schema=row_schema())

    def unit_rows(self, unit: dict[str, Any]) -> list[dict[str, Any]]:
        maybe_crash(unit["unit_id"])
        base = unit_key(self.domain, unit["unit_id"])
        try:  # first, so an unreadable image is reported as such even when detection found nothing in it
            tgt_full = load_uri(unit["tgt_uri"])
            ref_full = load_uri(unit["ref_uri"]) if unit["ref_uri"] else None
        except ImageReadError as exc:
            return [rejected(base, exc.reason, exc.detail)]
        objects = json.loads(unit["objects"])
        if not objects:
            return [rejected(base, "no_objects", "no object of this domain was found")]
        method = pair_method(unit)
        if method in ("track", "appearance"):
            ref_objects = json.loads(unit["ref_objects"])
            expected = distrusted = None
            if method == "track":
                tracker = self.tracker.build()
                method = "track" if tracker.name == "template" else f"track_{tracker.name}"
                try:
                    tracks, steps = tracked(unit, ref_objects, tracker)
                except ImageReadError as exc:
                    return [rejected(base, "track_failed", f"cannot follow the objects from the reference to the target frame: {exc.detail}")]
                subs = [o["subcategory"] for o in ref_objects]
                expected = [t.box for t in tracks]
                distrusted = ambiguities(tracks, [str(o["object_id"]) for o in ref_objects], steps,
                                         lambda i, j: category_factor(self.taxonomy, subs[i], subs[j]) > 0, tracker)
            objects = match_objects(tgt_full, objects, ref_full, ref_objects, self.taxonomy, self.settings.min_match_similarity,
                                    expected, distrusted=distrusted)
        tgt = Target(tgt_full, self.settings.max_side)
        return [self.object_row(unit, obj, i, tgt, ref_full, method) for i, obj in enumerate(objects)]

    def object_row(
        self, unit: dict[str, Any], obj: dict[str, Any], index: int, target: "Target", ref_full: np.ndarray | None, method: str
    ) -> dict[str, Any]:
        s = self.settings
        key = sample_key(self.domain, unit["unit_id"], index)
        try:
            fine_full = object_mask(obj, *target.full.shape[:2])
            ref_mask_full = None if ref_full is None else reference_mask(unit, obj, ref_full)
        except ImageReadError as exc:
            return rejected(key, exc.reason, exc.detail)
        if ref_full is not None and ref_mask_full is None:
            return rejected(key, obj.get("match_reason", "no_match"), obj.get("match_detail", "no matching object in the reference image"))
        if fine_full is None:
            return rejected(key, "no_mask", "object has only a box; configure a segmenter (SAM or GrabCut) for box-only input")
        tgt = target.image
        fine = fine_full if target.scale == 1.0 else cv2.resize(fine_full.astype(np.uint8), tgt.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 0
        area = float(fine.mean())
        if area == 0.0:
            return rejected(key, "empty_mask", "the object's mask is empty")
        if area < s.min_area_frac:
            return rejected(key, "mask_too_small", f"mask covers {area:.4f} of the image < {s.min_area_frac}")
        if area > s.max_area_frac:
            return rejected(key, "mask_too_large", f"mask covers {area:.4f} of the image > {s.max_area_frac}")
        box = bbox(fine)
        if min(box[2] - box[0], box[3] - box[1]) < s.min_box_side:
            return rejected(key, "box_too_small", f"box {box} has a side below {s.min_box_side} px")
        seed = sample_seed(key, s.seed)
        if ref_full is None:
            rng = np.random.default_rng([seed, 1]) if s.augment_self_pairs else None
            ref, ref_mask, aug = make_reference(tgt, fine, box, s.ref_size, rng)
        else:
            assert ref_mask_full is not None
            if not ref_mask_full.any():
                return rejected(key, "empty_ref_mask", f"the reference mask of {unit['ref_uri']} is empty")
            ref, ref_mask, aug = make_reference(ref_full, ref_mask_full, bbox(ref_mask_full), s.ref_size, None)
        sub = self.taxonomy.by_key(obj["subcategory"])
        meta = empty_meta()
        meta.update(
            key=key,
            domain=self.domain,
            subcategory=sub.key,
            subcategory_id=sub.id,
            subcategory_name=sub.name,
            rigid=sub.rigid,
            pair_kind=unit["pair_kind"],
            split=unit["split"],
            bbox=list(box),
            tgt_size=[tgt.shape[1], tgt.shape[0]],
            ref_size=[ref.shape[1], ref.shape[0]],
            labels=[{"key": sub.key, "score": float(obj.get("score", 1.0))}],
            label_source="detector" if unit["needs_detection"] else "annotation",
            mask_source=obj.get("mask_source", "annotation"),
            pair_method=method,
            augment=aug,
            taxonomy_version=self.taxonomy.version,
        )
        meta["source"].update(
            kind=unit["source_kind"],
            uri=unit["tgt_rel"],
            ref_uri=unit["ref_rel"] or unit["tgt_rel"],
            unit_id=unit["unit_id"],
            group_id=unit["group_id"],
            object_id=str(obj["object_id"]),
            ref_object_id=str(obj.get("ref_object_id", obj["object_id"])),
        )
        meta["scores"].update(fine_area=round(area, 6), sharpness=round(target.sharpness, 3))
        if "match_score" in obj:
            meta["scores"]["match"] = float(obj["match_score"])
        if "detector_score" in obj:
            meta["scores"]["detector"] = float(obj["detector_score"])
        return {
            "key": key,
            "status": "ok",
            "meta": json.dumps(meta, sort_keys=True),
            column(REF_IMAGE): encode_jpeg(ref),
            column(REF_MASK): encode_mask(ref_mask),
            column(TARGET_IMAGE): target.jpeg,
            "phash": f"{phash(target.grey[box[1] : box[3], box[0] : box[2]]):016x}",
            mask_column(FINE): encode_mask(fine),
        }
