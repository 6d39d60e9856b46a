"""MATS mask variants: rough ⊇ fine always, bounded, reproducible from the seed, and equal to the plain definition."""

from __future__ import annotations

import hashlib
import math

import cv2
import numpy as np
import pytest

from unieditkit import mats
from unieditkit.errors import UserError
from unieditkit.mats import EmptyMaskError, MatsParams, bbox, box_mask, mask_variants, rough_mask, sample_seed
from unieditkit.perlin import noise_field


def random_shape(rng: np.random.Generator) -> np.ndarray:
    """A random object mask: blobs, boxes, thin lines, single pixels, holes; often touching the image border."""
    h, w = (int(v) for v in rng.integers(6, 140, 2))
    canvas = np.zeros((h, w), np.uint8)
    kind = rng.integers(0, 6)
    if kind == 0:  # a single pixel or a tiny speck, anywhere including corners
        y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
        canvas[y : y + int(rng.integers(1, 3)), x : x + int(rng.integers(1, 3))] = 1
    elif kind == 1:  # a thin line, possibly diagonal
        p = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(2)]
        cv2.line(canvas, p[0], p[1], 1, int(rng.integers(1, 3)))
    elif kind == 2:  # a box clipped by the border
        x0, y0 = int(rng.integers(-w // 2, w)), int(rng.integers(-h // 2, h))
        cv2.rectangle(canvas, (x0, y0), (x0 + int(rng.integers(1, w)), y0 + int(rng.integers(1, h))), 1, -1)
    elif kind == 3:  # the whole image but a few pixels (over any area cap)
        canvas[:] = 1
        canvas[int(rng.integers(0, h)), int(rng.integers(0, w))] = 0
    else:  # one to three rotated ellipses, some with holes
        for _ in range(int(rng.integers(1, 4))):
            centre = (int(rng.integers(-5, w + 5)), int(rng.integers(-5, h + 5)))
            axes = (int(rng.integers(1, max(2, w // 2))), int(rng.integers(1, max(2, h // 2))))
            cv2.ellipse(canvas, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        if kind == 5:
            cv2.circle(canvas, (w // 2, h // 2), int(rng.integers(1, max(2, min(h, w) // 4))), 0, -1)
    if not canvas.any():
        canvas[int(rng.integers(0, h)), int(rng.integers(0, w))] = 1
    return canvas.astype(bool)


def random_params(rng: np.random.Generator) -> MatsParams:
    return MatsParams(
        dilate_frac=(0.0, float(rng.uniform(0.05, 0.4))),
        noise_amp_frac=(0.0, float(rng.uniform(0.02, 0.2))),
        noise_scale=(0.1, float(rng.uniform(0.2, 1.5))),
        octaves=int(rng.integers(1, 4)),
        max_area_frac=float(rng.uniform(0.2, 1.0)),
    )


def on_blocks(fine: np.ndarray, k: int) -> np.ndarray:
    """A block of the ``k x k`` grid is object when any of its pixels is (the grid starts at the image's corner)."""
    rows, cols = np.arange(0, fine.shape[0], k), np.arange(0, fine.shape[1], k)
    return np.maximum.reduceat(np.maximum.reduceat(fine.astype(np.uint8), rows, axis=0), cols, axis=1) > 0


def reference_rough(fine: np.ndarray, seed: int, params: MatsParams) -> tuple[np.ndarray, int, float]:
    """The module docstring's definition evaluated on every pixel (every block of the grid, for a large object):
    no crop, no chamfer bounds, no band, no octave pruning. Parameter draws are shared with the implementation;
    the geometry and noise are not."""
    h, w = fine.shape
    dilate, amp, scale, aspect, cos, sin, off_x, off_y = mats._draw(int(fine.sum()), seed, params)
    k = mats.block_side(int(fine.sum()), params)
    grid = on_blocks(fine, k) if k > 1 else fine
    gh, gw = grid.shape
    _, labels = cv2.distanceTransformWithLabels(
        (~grid).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5, labelType=cv2.DIST_LABEL_PIXEL
    )
    obj_r, obj_c = np.nonzero(grid)
    nearest = labels - 1
    dy = (np.arange(gh)[:, None] - obj_r[nearest]).astype(np.float32)
    dx = (np.arange(gw)[None, :] - obj_c[nearest]).astype(np.float32)
    c, s, inv_aspect = np.float32(cos), np.float32(sin), np.float32(1.0 / aspect)
    u = c * dx + s * dy
    v = (c * dy - s * dx) * inv_aspect
    de = np.sqrt(u * u + v * v)
    centre = (k - 1) / 2  # each block's noise at its centre pixel
    n = np.clip(noise_field(gh, gw, scale / k, params.octaves, offset=((centre + off_x) / k, (centre + off_y) / k)), -1, 1)
    for _ in range(mats._MAX_SHRINKS):
        rough = grid | (de <= np.float32(dilate / k) + np.float32(amp / k) * n)
        if rough.sum() * k * k <= params.max_area_frac * h * w:
            return (rough.repeat(k, axis=0).repeat(k, axis=1)[:h, :w] if k > 1 else rough), dilate, amp
        dilate, amp = int(dilate * mats._SHRINK), amp * mats._SHRINK
    return fine.copy(), 0, 0.0


def test_rough_mask_equals_its_plain_definition():
    """Crop, chamfer bounds, noise band and octave pruning are pure speed-ups: the masks are the same."""
    rng = np.random.default_rng(123)
    for case in range(120):
        fine = random_shape(rng)
        params = MatsParams() if case % 3 == 0 else random_params(rng)
        seed = int(rng.integers(0, 2**63))
        rough, info = rough_mask(fine, seed, params)
        want, dilate, amp = reference_rough(fine, seed, params)
        assert np.array_equal(rough, want), f"case {case}: {fine.shape}, {params}"
        assert (info.dilate_px, info.noise_amp_px) == (dilate, amp)


def test_rough_mask_equals_its_plain_definition_with_coarse_noise_blocks():
    """Large objects with smooth noise take the coarse (one sample per block, Lipschitz bound) path."""
    rng = np.random.default_rng(99)
    coarse_cases = 0
    for case in range(24):
        h, w = (int(v) for v in rng.integers(150, 300, 2))
        fine = np.zeros((h, w), np.uint8)
        cv2.ellipse(fine, (w // 2, h // 2), (int(rng.integers(20, w // 2)), int(rng.integers(20, h // 2))),
                    float(rng.uniform(0, 180)), 0, 360, 1, -1)
        cv2.rectangle(fine, (w // 2, int(rng.integers(0, h // 2))), (w // 2 + int(rng.integers(3, 30)), h // 2), 1, -1)
        fine = fine.astype(bool)
        params = MatsParams(
            dilate_frac=(0.05, 0.4), noise_amp_frac=(0.05, 0.2), noise_scale=(0.3, 1.5), octaves=int(rng.integers(1, 4))
        )
        seed = int(rng.integers(0, 2**63))
        scale = mats._draw(int(fine.sum()), seed, params)[2]
        coarse_cases += mats._Noise(scale, 0.0, 0.0, params.octaves).block >= 2
        assert np.array_equal(rough_mask(fine, seed, params)[0], reference_rough(fine, seed, params)[0]), f"case {case}"
    assert coarse_cases >= 12


def test_rough_mask_equals_its_plain_definition_at_512():
    fine = np.zeros((512, 512), np.uint8)
    cv2.ellipse(fine, (250, 270), (150, 90), 25, 0, 360, 1, -1)
    cv2.rectangle(fine, (300, 60), (340, 260), 1, -1)
    fine = fine.astype(bool)
    for seed in (0, 1, 2**40 + 3):
        assert np.array_equal(rough_mask(fine, seed)[0], reference_rough(fine, seed, MatsParams())[0])


def test_rough_contains_fine_and_stays_near_it():
    rng = np.random.default_rng(7)
    growth = []
    for case in range(400):
        fine = random_shape(rng)
        params = MatsParams() if case % 2 else random_params(rng)
        rough, info = rough_mask(fine, int(rng.integers(0, 2**31)), params)
        assert rough.dtype == bool and rough.shape == fine.shape
        assert not (fine & ~rough).any(), f"case {case}: rough does not contain fine"
        # every rough pixel is within dilate + amp (Euclidean) of the object, so inside the grown box
        x0, y0, x1, y1 = bbox(fine)
        m = math.ceil(info.dilate_px + info.noise_amp_px) + 2 * (info.block_px - 1)
        grown = np.zeros_like(rough)
        grown[max(0, y0 - m) : y1 + m, max(0, x0 - m) : x1 + m] = True
        assert not (rough & ~grown).any(), f"case {case}: rough reaches beyond the grown box"
        # area cap: only the fine mask itself may exceed it
        h, w = fine.shape
        if fine.sum() <= params.max_area_frac * h * w:
            assert rough.sum() <= params.max_area_frac * h * w
        else:
            assert np.array_equal(rough, fine) and info.dilate_px == 0
        if params == MatsParams() and fine.mean() < 0.3:
            growth.append(rough.sum() / fine.sum())
    assert min(growth) > 1.0, "with default parameters a rough mask always grows the object"
    assert np.median(growth) > 1.3


def test_default_sizes_scale_with_the_object():
    for radius in (2, 10, 40, 120):
        fine = np.zeros((300, 300), np.uint8)
        cv2.circle(fine, (150, 150), radius, 1, -1)
        fine = fine.astype(bool)
        size = math.sqrt(fine.sum())
        for seed in range(10):
            info = rough_mask(fine, seed)[1]
            p = MatsParams()
            assert p.min_dilate_px <= info.dilate_px <= max(p.min_dilate_px, p.dilate_frac[1] * size + 0.5)
            assert info.noise_amp_px <= max(info.dilate_px - 1, 0)
            assert p.min_noise_scale_px <= info.noise_scale <= max(p.min_noise_scale_px, p.noise_scale[1] * size)
            assert info.octaves == p.octaves


def test_area_cap_shrinks_the_dilation():
    fine = np.zeros((40, 40), bool)
    fine[5:35, 5:35] = True  # 56% of the image; a 15 px dilation would cover all of it
    wide = MatsParams(dilate_frac=(0.5, 0.5))
    uncapped, info_uncapped = rough_mask(fine, 3, MatsParams(dilate_frac=(0.5, 0.5), max_area_frac=1.0))
    assert uncapped.all()
    rough, info = rough_mask(fine, 3, wide)
    assert 0.5625 < rough.mean() <= 0.85
    assert info.dilate_px < info_uncapped.dilate_px and info.noise_amp_px < info_uncapped.noise_amp_px


def test_same_seed_same_mask_different_seed_different_mask():
    fine = np.zeros((96, 128), np.uint8)
    cv2.ellipse(fine, (60, 50), (30, 20), 15, 0, 360, 1, -1)
    fine = fine.astype(bool)
    masks = [rough_mask(fine, seed) for seed in range(20)]
    again = [rough_mask(fine.copy(), seed) for seed in range(20)]
    for (a, info_a), (b, info_b) in zip(masks, again):
        assert np.array_equal(a, b) and info_a == info_b
    distinct = {hashlib.sha256(np.packbits(m).tobytes()).hexdigest() for m, _ in masks}
    assert len(distinct) == 20


def test_masks_are_pinned_across_machines_and_versions():
    """Golden values: a change here means stored datasets no longer regenerate their rough masks."""
    fine = np.zeros((64, 80), np.uint8)
    cv2.ellipse(fine, (40, 30), (20, 12), 30, 0, 360, 1, -1)
    rough, info = rough_mask(fine.astype(bool), 12345)
    digest = hashlib.sha256(np.packbits(rough).tobytes()).hexdigest()
    assert (info.dilate_px, round(info.noise_amp_px, 6), round(info.noise_scale, 6)) == GOLDEN_INFO
    assert digest == GOLDEN_DIGEST
    assert sample_seed("garments_coco_ab12cd_0", 0) == GOLDEN_SAMPLE_SEED


GOLDEN_INFO = (3, 1.276805, 19.675084)
GOLDEN_DIGEST = "d6abdd29a3814e948e1ed78102eb0571ee57ae54e52b10e1bcae9a17046a859c"
GOLDEN_SAMPLE_SEED = 2409453402432139784


def test_sample_seed_is_stable_and_spread():
    assert sample_seed("a", 1) == sample_seed("a", 1)
    seeds = {sample_seed(f"key_{i}", s) for i in range(200) for s in (0, 1)}
    assert len(seeds) == 400
    assert all(0 <= s < 2**63 for s in seeds)


def test_box_is_the_exact_filled_bounding_box():
    rng = np.random.default_rng(5)
    for _ in range(200):
        fine = random_shape(rng)
        ys, xs = np.nonzero(fine)
        want = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert bbox(fine) == want and all(type(v) is int for v in bbox(fine))
        box = box_mask(fine)
        assert box.sum() == (want[2] - want[0]) * (want[3] - want[1])
        assert box[want[1] : want[3], want[0] : want[2]].all() and not (fine & ~box).any()


def test_mask_variants_bundles_the_three_stages():
    fine = np.zeros((50, 60), np.uint8)
    fine[10:20, 30:45] = 255  # 0/255 like a decoded PNG
    v = mask_variants(fine, 99)
    assert v.fine.dtype == v.rough.dtype == v.box.dtype == bool
    assert np.array_equal(v.fine, fine > 0)
    assert np.array_equal(v.rough, rough_mask(fine > 0, 99)[0]) and v.info == rough_mask(fine > 0, 99)[1]
    assert np.array_equal(v.box, box_mask(fine)) and v.info.seed == 99
    assert not (v.fine & ~v.rough).any() and not (v.fine & ~v.box).any()


@pytest.mark.parametrize("fn", [bbox, box_mask, lambda m: rough_mask(m, 0), lambda m: mask_variants(m, 0)])
def test_empty_mask_is_a_clear_error(fn):
    with pytest.raises(EmptyMaskError, match="empty") as err:
        fn(np.zeros((8, 9), np.uint8))
    assert isinstance(err.value, ValueError) and isinstance(err.value, UserError)


def test_non_2d_mask_is_refused():
    with pytest.raises(UserError, match="2-D"):
        rough_mask(np.ones((4, 4, 3), bool), 0)


@pytest.mark.parametrize(
    "kw",
    [
        {"dilate_frac": (0.2, 0.1)},
        {"noise_amp_frac": (-0.1, 0.1)},
        {"aspect": (0.0, 1.0)},
        {"aspect": (0.5, 1.5)},
        {"octaves": 0},
        {"max_area_frac": 0.0},
        {"max_area_frac": 1.5},
        {"min_dilate_px": -1},
    ],
)
def test_bad_params_name_the_field(kw):
    with pytest.raises(UserError, match=f"MatsParams.{next(iter(kw))}"):
        MatsParams(**kw)


def test_large_objects_are_worked_on_a_block_grid_and_work_side_0_keeps_pixels():
    fine = np.zeros((512, 512), np.uint8)
    cv2.ellipse(fine, (250, 270), (150, 90), 25, 0, 360, 1, -1)
    fine = fine.astype(bool)
    rough, info = rough_mask(fine, 5)
    k = info.block_px
    assert k == math.isqrt(int(fine.sum())) // MatsParams().work_side >= 2
    n = 512 // k * k
    blocks = rough[:n, :n].reshape(n // k, k, n // k, k)
    assert (blocks.all(axis=(1, 3)) | ~blocks.any(axis=(1, 3))).all(), "each block is all in or all out"
    exact, exact_info = rough_mask(fine, 5, MatsParams(work_side=0))
    assert exact_info.block_px == 1 and (exact_info.dilate_px, exact_info.noise_amp_px) == (info.dilate_px, info.noise_amp_px)
    assert np.array_equal(exact, reference_rough(fine, 5, MatsParams(work_side=0))[0])
    assert 0.97 < rough.sum() / exact.sum() < 1.03, "the block grid changes the boundary, not the size"
