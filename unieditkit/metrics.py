"""Ground-truth pixel metrics of an edit, restricted to the pixels the editor generated (no weights needed).

An editor keeps every pixel outside its mask, so a whole-image score is mostly the copied background and rises
with the share of the image the mask leaves untouched. Every metric here is therefore taken over the mask's
pixels only: the same editor scores the same on a small object in a large photo as on a close-up.

Inputs are ``uint8`` ``H x W x 3`` arrays (prediction and ground truth of the same size) and an ``H x W`` bool
mask; pixels are scaled to ``[0, 1]``, so PSNR has peak 1.0 and the SSIM constants are Wang et al.'s
``(0.01 * 1)^2`` and ``(0.03 * 1)^2``. An empty mask has no generated pixel and is an error, not a zero.
"""

from __future__ import annotations

import math

import numpy as np

#: PSNR reported for identical pixels (and any MSE below 1e-10): finite, so means over samples and the JSON of
#: ``unieditkit eval`` stay finite numbers; a one-level error in one channel of one pixel already scores below
#: it for masks under ~51,000 pixels
PSNR_CAP_DB = 100.0

#: Wang et al. (2004): an 11-tap Gaussian window with sigma 1.5 (as scikit-image's ``gaussian_weights=True``)
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5
_C1 = 0.01**2
_C2 = 0.03**2


def _check(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``mask`` as bool after checking the three arrays agree; returns it so callers index with it directly."""
    for name, image in (("pred", pred), ("gt", gt)):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{name}: expected a uint8 HxWx3 image, got {image.dtype} {image.shape}")
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} differ in size")
    if mask.shape != gt.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match the image {gt.shape[:2]}")
    mask = mask.astype(bool)
    if not mask.any():
        raise ValueError("mask is empty: no generated pixel to score")
    return mask


def masked_mse(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared error over the mask's pixels and all three channels, pixels in ``[0, 1]``."""
    mask = _check(pred, gt, mask)
    diff = (pred[mask].astype(np.float64) - gt[mask].astype(np.float64)) / 255.0
    return float(np.mean(diff * diff))


def masked_psnr(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    """PSNR in dB (peak 1.0) of :func:`masked_mse`, capped at :data:`PSNR_CAP_DB` for identical pixels."""
    mse = masked_mse(pred, gt, mask)
    return PSNR_CAP_DB if mse < 1e-10 else min(PSNR_CAP_DB, -10.0 * math.log10(mse))


def _gaussian_blur(x: np.ndarray) -> np.ndarray:
    """Separable Gaussian filter of an ``H x W x C`` float array with symmetric border padding (SciPy's
    ``mode='reflect'``, which scikit-image's SSIM uses), so the result has the input's size."""
    taps = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=np.float64)
    kernel = np.exp(-(taps**2) / (2 * SSIM_SIGMA**2))
    kernel /= kernel.sum()
    padded = np.pad(x, ((SSIM_RADIUS, SSIM_RADIUS), (SSIM_RADIUS, SSIM_RADIUS), (0, 0)), mode="symmetric")
    h, w = x.shape[:2]
    rows = sum(k * padded[i : i + h] for i, k in enumerate(kernel))
    return sum(k * rows[:, i : i + w] for i, k in enumerate(kernel))


def ssim_map(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM (``H x W``, mean over channels) with a Gaussian window and population statistics, the
    values of scikit-image's ``structural_similarity(..., gaussian_weights=True, use_sample_covariance=False,
    data_range=1, full=True)``."""
    x = pred.astype(np.float64) / 255.0
    y = gt.astype(np.float64) / 255.0
    mu_x, mu_y = _gaussian_blur(x), _gaussian_blur(y)
    var_x = _gaussian_blur(x * x) - mu_x * mu_x
    var_y = _gaussian_blur(y * y) - mu_y * mu_y
    cov = _gaussian_blur(x * y) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + _C1) * (2 * cov + _C2)) / ((mu_x**2 + mu_y**2 + _C1) * (var_x + var_y + _C2))
    return s.mean(axis=2)


def masked_ssim(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    """SSIM of the whole image's SSIM map averaged over the mask's pixels.

    Not SSIM of a crop: a crop of the mask's box also scores the kept pixels around a non-rectangular mask
    (identical, so SSIM 1, inflating the score by how much of the box the mask leaves out) and would put an
    artificial border at the box edge. Averaging the full map over the mask scores exactly the generated pixels,
    the same set as :func:`masked_mse`, while each pixel's window still sees its real neighbourhood, so a seam
    between the generated region and the kept background lowers the score as it should.
    """
    mask = _check(pred, gt, mask)
    return float(ssim_map(pred, gt)[mask].mean())
