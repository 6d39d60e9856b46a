"""MATS masks: fine mask -> rough mask (a sloppy, user-like scribble around the object) -> bounding box.

A2-Edit's Mask Annealing Training Strategy trains on precise masks first, then on rough ones, then on boxes, so
the editor learns to work with whatever a user draws. The build pipeline stores all three per sample; training
regenerates the rough mask on the fly from the stored seed, so :func:`rough_mask` is a pure function of
``(fine, seed, params)`` that is fast and bit-identical across machines:

* parameters are drawn with ``np.random.default_rng(seed).random()`` (exact bit arithmetic) and turned into
  sizes with ``+ - * /`` and ``sqrt`` only, all IEEE-exact, so no libm difference can change a pixel;
* the rough mask is ``fine`` dilated by an elliptical kernel whose boundary is pushed in and out by Perlin noise
  (bit-identical to ``noise.pnoise2``, see :mod:`unieditkit.perlin`);
* the noise is only evaluated in the thin band where it can change the answer, inside a crop around the object;
* a large object is worked on in ``k x k`` pixel blocks (``MatsParams.work_side``): the definition below is
  applied to the block grid, where a block is object when any of its pixels is and a block's noise is taken at its
  centre, and the rough mask is the union of the blocks that pass. Its boundary then has a ``k`` px step (2 px
  for an object of 96-143 px side, 7 px at 340 px: 2% of its side), which a sloppy user mask does not notice, and
  its cost stops growing with the object (``bench/bench_mats.py``). Objects below ``2 * work_side`` px side
  (``k = 1``) get the per-pixel definition, as before; ``work_side: 0`` gives it at every size.

Geometry: for a pixel ``p`` let ``q`` be its nearest object pixel (the Voronoi label of OpenCV's 5x5 chamfer
distance transform) and ``(u, v)`` the offset ``p - q`` in the kernel's rotated frame. Its elliptical distance is
``De = sqrt(u^2 + (v / aspect)^2)``, and ``p`` is in the rough mask when
``De <= dilate_px + noise_amp_px * clip(noise(p), -1, 1)``, or when it is in the fine mask. Without noise this
is the object dilated by an ellipse with semi-axes ``dilate_px`` and ``aspect * dilate_px`` (measured along the
offset to the nearest pixel, which is what a Minkowski dilation does at straight or convex boundaries). Hence
``rough ⊇ fine`` always, and since ``De >= |p - q|`` every rough pixel lies within ``dilate_px + noise_amp_px``
of the object, inside the fine mask's box grown by that margin (and by ``2 (k - 1)`` more on a block grid). Parameters and OpenCV's labels are the only
inputs besides IEEE arithmetic; a different OpenCV release could in principle break label ties differently
(``tests/test_mats.py`` pins a golden mask to catch that).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import UserError
from .perlin import fbm_weights, grid_octave, noise_coords, pnoise2_grid

__all__ = [
    "EmptyMaskError",
    "MaskVariants",
    "MatsParams",
    "RoughInfo",
    "bbox",
    "box_mask",
    "mask_variants",
    "rough_mask",
    "sample_seed",
]

_NOISE_PERIOD = 1024  # pnoise2's default repeat: offsets are drawn within one period
_PERSISTENCE, _LACUNARITY = 0.5, 2.0  # pnoise2's defaults
_LIPSCHITZ = 3.0  # bound on |grad noise2| per lattice unit (measured maximum 2.75)
_COARSE_BOUND = 0.15  # block size for the coarse noise step: its bound spans about this much noise
_SHRINK = 0.75  # factor applied to the dilation and the amplitude while the rough mask is over the area cap
_MAX_SHRINKS = 12  # 0.75**12 < 0.032: after that the rough mask is the fine mask itself


class EmptyMaskError(UserError, ValueError):
    """The fine mask has no object pixel, so it has no box and no rough mask."""


@dataclass(frozen=True)
class MatsParams:
    """How rough a rough mask is. Sizes are fractions of ``sqrt(object area)`` so the look is scale-free.

    Attributes:
        dilate_frac: range of the kernel's major semi-axis (``dilate_px``), as a fraction of ``sqrt(area)``.
        noise_amp_frac: range of the boundary displacement amplitude (``noise_amp_px``), same unit.
        noise_scale: range of the Perlin feature size (pixels per lattice cell, ``noise_scale`` in the
            metadata), same unit; larger is smoother.
        octaves: Perlin octaves; the second adds small wiggles on top of the large bulges.
        max_area_frac: the rough mask never covers more than this fraction of the image: dilation and amplitude
            shrink (by 0.75 at a time) until it fits, down to the fine mask itself if even that is larger.
        aspect: range of the kernel's minor/major axis ratio (1 = disc); the orientation is uniform.
        min_dilate_px: floor on ``dilate_px`` so that tiny objects still get a visible margin.
        min_noise_amp_px: floor on ``noise_amp_px``; it is also capped at ``dilate_px - 1`` so the noise never
            eats the margin completely.
        min_noise_scale_px: floor on the feature size, so tiny objects do not get pixel-level speckle.
        work_side: an object of side ``sqrt(area)`` is worked on in blocks of ``k = sqrt(area) // work_side``
            pixels (at least 1), so every object is worked on at about ``work_side`` to ``2 * work_side`` blocks
            of side; 0 works per pixel at every size (builds made before this setting existed).
    """

    dilate_frac: tuple[float, float] = (0.05, 0.25)
    noise_amp_frac: tuple[float, float] = (0.02, 0.10)
    noise_scale: tuple[float, float] = (0.3, 0.8)
    octaves: int = 2
    max_area_frac: float = 0.85
    aspect: tuple[float, float] = (0.6, 1.0)
    min_dilate_px: int = 3
    min_noise_amp_px: float = 1.0
    min_noise_scale_px: float = 4.0
    work_side: int = 48

    def __post_init__(self) -> None:
        for name in ("dilate_frac", "noise_amp_frac", "noise_scale", "aspect"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise UserError(f"MatsParams.{name}: expected (low, high) with 0 <= low <= high, got ({lo}, {hi})")
        if self.noise_scale[0] <= 0 and self.min_noise_scale_px <= 0:
            raise UserError(
                "MatsParams.noise_scale: the feature size must be > 0; raise the low end or min_noise_scale_px"
            )
        if not 0 < self.aspect[0] <= self.aspect[1] <= 1:
            raise UserError(
                f"MatsParams.aspect: expected 0 < low <= high <= 1 (minor/major axis ratio), got {self.aspect}"
            )
        if not (isinstance(self.octaves, int) and 1 <= self.octaves <= 8):
            raise UserError(f"MatsParams.octaves: expected an integer in 1..8, got {self.octaves!r}")
        if not 0 < self.max_area_frac <= 1:
            raise UserError(f"MatsParams.max_area_frac: expected a fraction in (0, 1], got {self.max_area_frac}")
        if self.min_dilate_px < 0 or self.min_noise_amp_px < 0:
            raise UserError("MatsParams.min_dilate_px / min_noise_amp_px: must be >= 0")
        if not (isinstance(self.work_side, int) and self.work_side >= 0):
            raise UserError(f"MatsParams.work_side: expected an integer >= 0 (0: per pixel at every size), got {self.work_side!r}")


@dataclass(frozen=True)
class RoughInfo:
    """What :func:`rough_mask` used (stored as the ``mats`` metadata); ``seed`` alone regenerates the mask."""

    seed: int
    dilate_px: int
    noise_amp_px: float
    noise_scale: float
    octaves: int
    block_px: int = 1


@dataclass(frozen=True)
class MaskVariants:
    """The three MATS stages of one object, as boolean ``H x W`` arrays: ``fine ⊆ rough`` and ``fine ⊆ box``."""

    fine: np.ndarray
    rough: np.ndarray
    box: np.ndarray
    info: RoughInfo


def sample_seed(key: str, seed: int) -> int:
    """Per-sample seed from the sample key and the global ``--seed``: stable across runs, processes and machines.

    ``hash()`` is salted per process, so this uses SHA-256; the result fits in 63 bits (an int64 column).
    """
    digest = hashlib.sha256(f"{int(seed)}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _as_mask(mask: np.ndarray) -> np.ndarray:
    """A 2-D boolean view of a mask given as bool or as 0/non-zero numbers (e.g. a 0/255 PNG)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise UserError(f"mask: expected a 2-D (H, W) array, got shape {mask.shape}; pass a single-channel mask")
    return mask if mask.dtype == bool else mask != 0


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        raise EmptyMaskError(
            f"fine mask is empty (all {mask.shape[0]}x{mask.shape[1]} pixels are 0): "
            "MATS needs at least one object pixel; drop the sample or fix its mask"
        )
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of the non-zero pixels, upper bounds exclusive; :class:`EmptyMaskError` if none."""
    return _bbox(_as_mask(mask))


def box_mask(mask: np.ndarray) -> np.ndarray:
    """The filled bounding box of ``mask``, as a boolean array of the same shape."""
    mask = _as_mask(mask)
    x0, y0, x1, y1 = _bbox(mask)
    box = np.zeros(mask.shape, dtype=bool)
    box[y0:y1, x0:x1] = True
    return box


def _draw(area: int, seed: int, params: MatsParams) -> tuple[int, float, float, float, float, float, float, float]:
    """The seeded random choices: (dilate_px, amp_px, scale_px, aspect, cos, sin, offset_x, offset_y).

    One ``random(8)`` call, so the stream use is fixed; orientation comes from the rational parametrisation
    ``(1 - t^2, 2t) / (1 + t^2)`` instead of cos/sin, which could differ in the last bit between libms.
    """
    u = np.random.default_rng(seed).random(8)
    size = math.sqrt(area)

    def pick(rng: tuple[float, float], x: float) -> float:
        return rng[0] + (rng[1] - rng[0]) * x

    dilate = max(params.min_dilate_px, int(pick(params.dilate_frac, u[0]) * size + 0.5))
    amp = min(max(params.min_noise_amp_px, pick(params.noise_amp_frac, u[1]) * size), max(dilate - 1.0, 0.0))
    scale = max(params.min_noise_scale_px, pick(params.noise_scale, u[2]) * size)
    aspect = pick(params.aspect, u[3])
    t = 2.0 * u[4] - 1.0  # orientation in (-90, 90) degrees: all an ellipse needs
    cos, sin = (1.0 - t * t) / (1.0 + t * t), 2.0 * t / (1.0 + t * t)
    offset_x, offset_y = u[5] * _NOISE_PERIOD * scale, u[6] * _NOISE_PERIOD * scale
    return dilate, amp, scale, aspect, cos, sin, offset_x, offset_y


# OpenCV's 5x5 chamfer distance D to a pixel's label and the Euclidean distance e to it satisfy
# 0.9825 e <= D <= 1.0192 e (the chamfer unit ball, weights 1, 1.4, 2.1969, has radii in [0.981, 1.018]; measured
# the same). The bounds in _threshold use 1.03 and one extra pixel, so they only skip pixels whose answer is certain.
_CHAMFER_SLACK = 1.03


class _Geometry:
    """Per-object data shared by every attempt under the area cap: chamfer distances, Voronoi labels, object
    pixels, and the ellipse frame."""

    def __init__(self, fine_crop: np.ndarray, aspect: float, cos: float, sin: float) -> None:
        self.fine = fine_crop
        self.width = fine_crop.shape[1]
        dist, labels = cv2.distanceTransformWithLabels(
            np.logical_not(fine_crop).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5, labelType=cv2.DIST_LABEL_PIXEL
        )
        self.chamfer = dist.ravel()
        self.labels = labels.ravel()
        # label k (1-based) is the k-th object pixel in raster order; int32 halves the integer work in De
        self.objects = np.flatnonzero(fine_crop).astype(np.int32)
        self.aspect = aspect
        self.cos, self.sin, self.inv_aspect = np.float32(cos), np.float32(sin), np.float32(1.0 / aspect)

    def elliptic_distance(self, flat: np.ndarray) -> np.ndarray:
        """``De`` at the crop pixels ``flat`` (float32): ``p - q`` to the nearest object pixel ``q``, in the frame
        of the kernel, with the minor axis stretched by ``1 / aspect``."""
        q = self.objects.take(self.labels.take(flat) - 1)
        p = flat.astype(np.int32)
        q_row = q // self.width
        dy = p // self.width - q_row
        dx = (p - q) - dy * self.width
        dy = dy.astype(np.float32)
        dx = dx.astype(np.float32)
        u = self.cos * dx + self.sin * dy
        v = (self.cos * dy - self.sin * dx) * self.inv_aspect
        return np.sqrt(u * u + v * v)


def block_side(area: int, params: MatsParams) -> int:
    """The side ``k`` of the pixel blocks the rough mask of an object of ``area`` pixels is worked on in."""
    return max(1, math.isqrt(area) // params.work_side) if params.work_side else 1


def _any_per_block(mask: np.ndarray, k: int) -> np.ndarray:
    """``mask`` on a grid of ``k x k`` blocks (the last row and column of blocks padded): a block is set when any
    of its pixels is."""
    h, w = mask.shape
    padded = np.zeros((-(-h // k) * k, -(-w // k) * k), bool)
    padded[:h, :w] = mask
    return padded.reshape(padded.shape[0] // k, k, padded.shape[1] // k, k).any(axis=(1, 3))


def rough_mask(fine: np.ndarray, seed: int, params: MatsParams = MatsParams()) -> tuple[np.ndarray, RoughInfo]:
    """The MATS rough mask of ``fine`` for ``seed``: a boolean ``H x W`` array ``⊇ fine``, and what was used.

    Same ``(fine, seed, params)`` -> bit-identical mask on any machine (see the module docstring for the
    geometry). The mask covers at most ``params.max_area_frac`` of the image unless the fine mask alone does.
    """
    fine = _as_mask(fine)
    x0, y0, x1, y1 = _bbox(fine)
    height, width = fine.shape
    area = int(np.count_nonzero(fine[y0:y1, x0:x1]))
    dilate, amp, scale, aspect, cos, sin, off_x, off_y = _draw(area, seed, params)
    k = block_side(area, params)

    margin = math.ceil(dilate + amp) + 1  # beyond it De > dilate + amp: never in the mask
    cy0, cx0 = max(0, y0 - margin) // k * k, max(0, x0 - margin) // k * k  # blocks aligned to the image's grid
    cy1, cx1 = min(height, y1 + margin), min(width, x1 + margin)
    fine_crop = fine[cy0:cy1, cx0:cx1]
    geo = _Geometry(fine_crop if k == 1 else _any_per_block(fine_crop, k), aspect, cos, sin)
    centre = (k - 1) / 2  # a block's noise is the field's value at the block's centre pixel
    field = _Noise(scale / k, (cx0 + centre + off_x) / k, (cy0 + centre + off_y) / k, params.octaves)

    cap = params.max_area_frac * height * width / (k * k)  # blocks: a block covers at most k * k pixels
    for _ in range(_MAX_SHRINKS):
        crop = _threshold(geo, field, dilate / k, amp / k, cap)
        if crop is not None:
            if k > 1:
                crop = crop.repeat(k, axis=0).repeat(k, axis=1)[: cy1 - cy0, : cx1 - cx0]
            break
        dilate, amp = int(dilate * _SHRINK), amp * _SHRINK
    else:
        crop, dilate, amp = fine_crop, 0, 0.0

    rough = np.zeros_like(fine)
    rough[cy0:cy1, cx0:cx1] = crop
    info = RoughInfo(
        seed=int(seed), dilate_px=int(dilate), noise_amp_px=float(amp), noise_scale=float(scale), octaves=params.octaves,
        block_px=k,
    )
    return rough, info


def _threshold(geo: _Geometry, field: "_Noise", dilate: float, amp: float, cap: float) -> np.ndarray | None:
    """``fine | (De <= dilate + amp * clip(noise, -1, 1))`` on the crop (float32), or None if it covers more
    than ``cap`` pixels. The work is cut to where the answer is open; the result equals evaluating every pixel:

    1. Chamfer bounds settle most pixels without computing ``De`` (see ``_CHAMFER_SLACK``); object pixels have
       chamfer distance 0, so they are always in.
    2. float32 rounding is monotone, so ``De <= dilate - amp`` passes for every noise value and
       ``De > dilate + amp`` fails: only the band in between needs the noise (:meth:`_Noise.decide`).
    """
    d32, a32 = np.float32(dilate), np.float32(amp)
    lo, hi = d32 - a32, d32 + a32
    sure_in = max(((dilate - amp) * geo.aspect - 1.0) / _CHAMFER_SLACK, 0.5)
    maybe_in = (dilate + amp) * _CHAMFER_SLACK + 1.0
    chamfer = geo.chamfer
    inside = chamfer <= sure_in
    open_ = np.flatnonzero(chamfer <= maybe_in)
    open_ = open_[~inside.take(open_)]
    if open_.size:
        de = geo.elliptic_distance(open_)
        inside[open_[de <= lo]] = True
        if np.count_nonzero(inside) > cap:  # over the cap whatever the noise: skip it
            return None
        in_band = (de > lo) & (de <= hi)
        band, de = open_[in_band], de[in_band]
        if band.size:
            inside[field.decide(band, de, geo.width, dilate, amp)] = True
    if np.count_nonzero(inside) > cap:
        return None
    return inside.reshape(geo.fine.shape)


class _Noise:
    """The rough mask's noise: ``pnoise2((c + ox) / scale, (r + oy) / scale, octaves)`` at crop pixel (r, c), where
    ``ox``/``oy`` include the crop origin, so values are those of the full-image field.

    :meth:`decide` only computes exact values where they matter, in two exact steps:

    * Coarse: the fBm is Lipschitz (``|grad noise2| <= 2.75`` per lattice unit, measured over every corner
      gradient combination; ``_LIPSCHITZ`` adds margin), so one exact sample per ``g x g`` block bounds the noise
      of every pixel in the block; pixels whose answer the bound settles need nothing more.
    * Octaves are added one at a time; ``|noise2| <= 1`` bounds what the remaining octaves can still add.
    """

    def __init__(self, scale: float, offset_x: float, offset_y: float, octaves: int) -> None:
        self.scale, self.offset_x, self.offset_y, self.octaves = scale, offset_x, offset_y, octaves
        self.weights, self.total_amp = fbm_weights(octaves, _PERSISTENCE, _LACUNARITY)
        freq_sum = sum(float(f) * float(w) for f, w in self.weights) / float(self.total_amp)
        self.lipschitz_px = _LIPSCHITZ * freq_sum / scale  # noise units per pixel
        # block side g: pixels are at most g // 2 per axis from the block's sample, so the bound is lip * sqrt2 * g // 2
        self.block = int(_COARSE_BOUND / (self.lipschitz_px * math.sqrt(2.0)) * 2)

    def coords(self, index: np.ndarray, axis: int) -> np.ndarray:
        return noise_coords(index, self.scale, self.offset_y if axis == 0 else self.offset_x).astype(np.float32)

    def decide(self, band: np.ndarray, de: np.ndarray, width: int, dilate: float, amp: float) -> np.ndarray:
        """The band pixels (flat crop indices, sorted) with ``de <= dilate + amp * clip(noise, -1, 1)``."""
        # In noise units pixel p is in iff noise >= (de - dilate) / amp =: even; clipping only narrows the range.
        slack = 1e-3 / max(amp, 1e-6) + 1e-5
        even = (de - np.float32(dilate)) * np.float32(1.0 / max(amp, 1e-6))
        accepted = []
        g = self.block
        if g >= 2 and band.size >= 256:
            n_bx = -(-width // g)
            n_by = int(band[-1]) // (width * g) + 1
            flat = band.astype(np.int32)  # int32 division is several times faster than int64
            block = (flat // (width * g)) * n_bx + (flat % width) // g
            needed = np.zeros(n_by * n_bx, dtype=bool)
            needed[block] = True
            needed_blocks = np.flatnonzero(needed)
            centre = g // 2
            coarse = np.zeros(needed.shape, dtype=np.float32)
            coarse[needed_blocks] = pnoise2_grid(
                self.coords(np.arange(n_bx) * g + centre, 1), self.coords(np.arange(n_by) * g + centre, 0),
                self.octaves, _PERSISTENCE, _LACUNARITY, _NOISE_PERIOD, _NOISE_PERIOD,
                rows=needed_blocks // n_bx, cols=needed_blocks % n_bx,
            )
            near = coarse.take(block)
            reach = np.float32(self.lipschitz_px * math.sqrt(2.0) * centre + slack)
            sure = near >= even + reach
            accepted.append(band[sure])
            keep = np.flatnonzero(~sure & (near >= even - reach))
            band, de, even = band.take(keep), de.take(keep), even.take(keep)
        rows = band // width
        accepted.append(self._exact(band, rows, band - rows * width, de, even, dilate, amp, slack))
        return np.concatenate(accepted)

    def _exact(
        self, band: np.ndarray, rows: np.ndarray, cols: np.ndarray, de: np.ndarray, even: np.ndarray,
        dilate: float, amp: float, slack: float,
    ) -> np.ndarray:
        """The exact noise, octave by octave, on the pixels still open."""
        if band.size == 0:
            return band
        xs = self.coords(np.arange(int(cols.max()) + 1), 1)
        ys = self.coords(np.arange(int(rows[-1]) + 1), 0)
        repeat = np.float32(_NOISE_PERIOD)
        total_amp = self.total_amp
        accepted = []
        total = np.zeros(band.shape, dtype=np.float32)
        for octave, (freq, weight) in enumerate(self.weights):
            term = grid_octave(xs, ys, rows, cols, freq, repeat, repeat)
            if self.octaves == 1:  # C returns the single octave's term as it is
                total = term
                break
            total += term * weight
            if octave == self.octaves - 1:
                total /= total_amp
                break
            rest = sum(float(w) for _, w in self.weights[octave + 1 :]) / float(total_amp)
            reach = np.float32(rest * 1.01 + 1e-5 + slack)
            partial = total * np.float32(1.0 / float(total_amp))
            sure = partial >= even + reach
            accepted.append(band[sure])
            keep = np.flatnonzero(~sure & (partial >= even - reach))
            band, rows, cols, de, even, total = (a.take(keep) for a in (band, rows, cols, de, even, total))
        np.clip(total, np.float32(-1), np.float32(1), out=total)
        accepted.append(band[de <= np.float32(dilate) + np.float32(amp) * total])
        return np.concatenate(accepted)


def mask_variants(fine: np.ndarray, seed: int, params: MatsParams = MatsParams()) -> MaskVariants:
    """Fine, rough and box masks of one object (boolean ``H x W``), plus the rough mask's parameters."""
    fine = _as_mask(fine)
    rough, info = rough_mask(fine, seed, params)
    return MaskVariants(fine=fine.copy(), rough=rough, box=box_mask(fine), info=info)
