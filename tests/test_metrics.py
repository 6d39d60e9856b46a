"""Masked pixel metrics against closed-form values, and the baselines' promise never to read the ground truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unieditkit.baselines import BASELINES, mean_fill, paste_reference
from unieditkit.metrics import PSNR_CAP_DB, SSIM_RADIUS, masked_mse, masked_psnr, masked_ssim, ssim_map


def _image(seed: int, h: int = 40, w: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _square_mask(h: int = 40, w: int = 48, y0: int = 10, y1: int = 30, x0: int = 12, x1: int = 36) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_identical_images_score_perfect() -> None:
    img, mask = _image(0), _square_mask()
    assert masked_mse(img, img, mask) == 0.0
    assert masked_psnr(img, img, mask) == PSNR_CAP_DB
    assert masked_ssim(img, img, mask) == pytest.approx(1.0, abs=1e-12)


def test_known_values() -> None:
    mask = _square_mask()
    black = np.zeros((40, 48, 3), np.uint8)
    white = np.full((40, 48, 3), 255, np.uint8)
    assert masked_mse(black, white, mask) == pytest.approx(1.0)
    assert masked_psnr(black, white, mask) == pytest.approx(0.0, abs=1e-12)
    off = np.full((40, 48, 3), 51, np.uint8)  # 0.2 from black in every channel
    assert masked_mse(off, black, mask) == pytest.approx(0.04)
    assert masked_psnr(off, black, mask) == pytest.approx(-10 * math.log10(0.04))
    # one channel of one masked pixel off by one level: MSE = (1/255)^2 / (3 * mask pixels)
    one = black.copy()
    one[15, 20, 1] = 1
    assert masked_mse(one, black, mask) == pytest.approx((1 / 255) ** 2 / (3 * mask.sum()))
    # flat images have no variance, so SSIM reduces to its luminance term (2ab + C1) / (a^2 + b^2 + C1)
    a, b = 51 / 255, 204 / 255
    flat_b = np.full((40, 48, 3), 204, np.uint8)
    assert masked_ssim(off, flat_b, mask) == pytest.approx((2 * a * b + 0.01**2) / (a * a + b * b + 0.01**2), rel=1e-9)


def test_ssim_map_is_scikit_images() -> None:
    """The per-pixel map equals scikit-image's Wang-compatible SSIM (Gaussian window, population statistics)."""
    from skimage.metrics import structural_similarity

    gt = _image(8, 37, 53)
    pred = np.clip(gt.astype(int) + np.random.default_rng(9).integers(-40, 40, gt.shape), 0, 255).astype(np.uint8)
    _, full = structural_similarity(pred / 255, gt / 255, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=1.0, full=True)
    mask = np.zeros(gt.shape[:2], bool)
    mask[3:30, 20:50] = True
    assert np.abs(ssim_map(pred, gt) - full.mean(axis=2)).max() < 1e-12
    assert masked_ssim(pred, gt, mask) == pytest.approx(full.mean(axis=2)[mask].mean(), abs=1e-12)


def test_pixels_outside_the_mask_do_not_count() -> None:
    gt, mask = _image(1), _square_mask()
    pred = gt.copy()
    pred[~mask] = 255 - pred[~mask]  # everything outside the mask wrong
    assert masked_mse(pred, gt, mask) == 0.0
    assert masked_psnr(pred, gt, mask) == PSNR_CAP_DB
    # SSIM's window reaches SSIM_RADIUS pixels past the mask: errors beyond that are invisible to it ...
    far = ~_square_mask(y0=10 - SSIM_RADIUS, y1=30 + SSIM_RADIUS, x0=12 - SSIM_RADIUS, x1=36 + SSIM_RADIUS)
    pred = gt.copy()
    pred[far] = 255 - pred[far]
    assert masked_ssim(pred, gt, mask) == pytest.approx(1.0, abs=1e-12)
    # ... and errors at the seam are seen, as a badly blended edit should be
    assert masked_ssim(np.where(mask[..., None], gt, 255 - gt), gt, mask) < 0.95
    # inside the mask, a wrong half scores worse than a right one
    half = gt.copy()
    half[10:20, 12:36] = 255 - half[10:20, 12:36]
    assert masked_mse(half, gt, mask) == pytest.approx(masked_mse(half[10:20], gt[10:20], mask[10:20]) / 2)
    assert masked_ssim(half, gt, mask) < 0.6


def test_metric_inputs_are_checked() -> None:
    img = _image(2)
    with pytest.raises(ValueError, match="mask is empty"):
        masked_mse(img, img, np.zeros((40, 48), bool))
    with pytest.raises(ValueError, match="differ in size"):
        masked_psnr(img, img[:20], _square_mask())
    with pytest.raises(ValueError, match="uint8"):
        masked_ssim(img.astype(np.float32), img, _square_mask())


def test_mean_fill_uses_the_visible_mean_colour() -> None:
    target, mask = _image(3), _square_mask()
    out = mean_fill(target, mask)
    assert np.array_equal(out[~mask], target[~mask])
    expected = np.rint(target[~mask].astype(np.float64).mean(axis=0)).astype(np.uint8)
    assert (out[mask] == expected).all()
    assert (mean_fill(target, np.ones((40, 48), bool)) == 127).all(), "a fully masked image has no visible colour"


def test_paste_reference_stretches_the_object_into_the_mask_box() -> None:
    target, mask = _image(4), _square_mask()
    ref = np.full((30, 30, 3), 127, np.uint8)
    ref[5:15, 10:25] = (200, 10, 10)  # the object: a red 15 x 10 rectangle on grey
    ref_mask = np.zeros((30, 30), bool)
    ref_mask[5:15, 10:25] = True
    out = paste_reference(target, mask, ref, ref_mask)
    assert np.array_equal(out[~mask], target[~mask])
    assert (out[mask] == (200, 10, 10)).all(), "the object's box fills the whole mask box"
    # a mask that is not its own box: only pixels under both masks are pasted, the rest is mean-filled
    ring = mask.copy()
    ring[15:25, 20:28] = False
    out = paste_reference(target, ring, ref, ref_mask)
    assert (out[ring] == (200, 10, 10)).all() and np.array_equal(out[~ring], target[~ring])
    # without a ref mask the whole reference is pasted, grey included
    whole = paste_reference(target, mask, ref, None)
    assert (whole[mask] == 127).any() and (whole[mask] == (200, 10, 10)).all(axis=1).any()
    with pytest.raises(ValueError, match="ref_mask is empty"):
        paste_reference(target, mask, ref, np.zeros((30, 30), bool))


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baselines_never_read_the_masked_ground_truth(name: str) -> None:
    target, mask = _image(5), _square_mask()
    ref = _image(6, 32, 24)
    ref_mask = np.zeros((32, 24), bool)
    ref_mask[4:28, 3:20] = True
    changed = target.copy()
    changed[mask] = _image(7)[mask]
    out = BASELINES[name](target, mask, ref, ref_mask)
    assert np.array_equal(out, BASELINES[name](changed, mask, ref, ref_mask))
    assert np.array_equal(out[~mask], target[~mask]), "a baseline keeps every pixel outside the mask"
    assert masked_mse(out, target, mask) > 0.01, "it did not copy the ground truth either"
