"""unieditkit.perlin must equal noise.pnoise2 value for value (MATS rough masks are regenerated from seeds)."""

from __future__ import annotations

import noise
import numpy as np
import pytest

from unieditkit.perlin import MAX_BASE, fbm_weights, grid_octave, noise_coords, noise_field, pnoise2, pnoise2_grid


def _reference(x: np.ndarray, y: np.ndarray, **kw) -> np.ndarray:
    """One C call per point, with Python floats, as a caller of the noise package would do."""
    return np.array([noise.pnoise2(float(a), float(b), **kw) for a, b in zip(x.ravel(), y.ravel())], dtype=np.float32)


def _points(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Small, negative, large and integer coordinates (integers sit on lattice corners)."""
    def axis() -> np.ndarray:
        return np.concatenate([
            rng.uniform(-3, 3, n), rng.uniform(-300, 300, n), rng.uniform(-2e6, 2e6, n // 4),
            rng.integers(-600, 600, n // 4).astype(np.float64), rng.uniform(1020, 1030, n // 4),
        ])
    return axis(), axis()


CASES = [
    {},
    {"octaves": 2},
    {"octaves": 4, "persistence": 0.7, "lacunarity": 2.3},
    {"octaves": 3, "persistence": 0.25, "lacunarity": 1.5},
    {"base": 1},
    {"base": 2},  # from here on the C code reads past PERM into GRAD4
    {"base": 37, "octaves": 2},
    {"base": MAX_BASE, "octaves": 3},
    {"repeatx": 7, "repeaty": 13.5, "octaves": 3},
    {"repeatx": 1, "repeaty": 2},
    {"repeatx": 300, "repeaty": 256, "octaves": 5, "base": 200},
]


@pytest.mark.parametrize("kw", CASES, ids=[str(c) or "defaults" for c in CASES])
def test_pnoise2_is_bit_identical_to_noise_package(kw):
    rng = np.random.default_rng(len(str(kw)))
    x, y = _points(rng, 1200)
    got = pnoise2(x, y, **kw)
    want = _reference(x, y, **kw)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))


def test_grid_functions_match_the_noise_package_on_a_pixel_grid():
    xs = noise_coords(np.arange(-30, 50), 7.3, 11.25)
    ys = noise_coords(np.arange(-10, 45), 5.1, -3.0)
    for kw in ({}, {"octaves": 3, "base": 9}, {"octaves": 2, "repeatx": 4, "repeaty": 6.5}):
        want = np.array([[noise.pnoise2(float(x), float(y), **kw) for x in xs] for y in ys], dtype=np.float32)
        np.testing.assert_array_equal(pnoise2_grid(xs, ys, **kw), want)
        rng = np.random.default_rng(0)
        rows, cols = rng.integers(0, len(ys), 700), rng.integers(0, len(xs), 700)
        np.testing.assert_array_equal(pnoise2_grid(xs, ys, rows=rows, cols=cols, **kw), want[rows, cols])


def test_noise_field_matches_a_per_pixel_loop():
    field = noise_field(24, 40, scale=9.5, octaves=2, offset=(123.25, 7.5))
    want = np.array(
        [[noise.pnoise2((c + 123.25) / 9.5, (r + 7.5) / 9.5, octaves=2) for c in range(40)] for r in range(24)],
        dtype=np.float32,
    )
    assert field.shape == (24, 40)
    np.testing.assert_array_equal(field, want)


def test_octaves_added_one_by_one_equal_the_fbm_sum():
    """MATS adds octaves incrementally on a shrinking band; that must be the same arithmetic as pnoise2_grid."""
    xs = noise_coords(np.arange(64), 13.0, 0.0).astype(np.float32)
    ys = noise_coords(np.arange(32), 13.0, 500.0).astype(np.float32)
    rows, cols = np.divmod(np.arange(32 * 64), 64)
    weights, total_amp = fbm_weights(3, 0.5, 2.0)
    total = np.zeros(rows.shape, dtype=np.float32)
    for freq, amp in weights:
        total += grid_octave(xs, ys, rows, cols, freq, np.float32(1024), np.float32(1024)) * amp
    total /= total_amp
    np.testing.assert_array_equal(total, pnoise2_grid(xs, ys, octaves=3, rows=rows, cols=cols))


def test_values_are_bounded_by_one():
    """MATS relies on |noise| <= 1 to skip pixels the noise cannot reach."""
    field = noise_field(256, 256, scale=3.7, octaves=1)
    assert np.abs(field).max() <= 1.0
    assert np.abs(field).max() > 0.5  # the field is not degenerate


def test_broadcasting_and_scalars():
    out = pnoise2(np.linspace(0, 5, 7)[None, :], np.linspace(0, 3, 4)[:, None], octaves=2)
    assert out.shape == (4, 7) and out.dtype == np.float32
    assert pnoise2(0.5, 0.25).shape == ()
    assert float(pnoise2(0.5, 0.25)) == np.float32(noise.pnoise2(0.5, 0.25))


@pytest.mark.parametrize(
    "kw, match",
    [({"octaves": 0}, "octaves"), ({"base": -1}, "base"), ({"base": MAX_BASE + 1}, "base"), ({"repeatx": 0}, "repeat")],
)
def test_invalid_arguments_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        pnoise2(np.zeros(3), np.zeros(3), **kw)
    with pytest.raises(ValueError, match=match):
        pnoise2_grid(np.zeros(3), np.zeros(3), **kw)


def test_noise_package_rejects_zero_octaves_too():
    with pytest.raises(ValueError):
        noise.pnoise2(0.5, 0.5, octaves=0)


def test_grid_needs_both_index_arrays():
    with pytest.raises(ValueError, match="rows and cols"):
        pnoise2_grid(np.zeros(3), np.zeros(3), rows=np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="differ"):
        pnoise2_grid(np.zeros(3), np.zeros(3), rows=np.zeros(2, dtype=int), cols=np.zeros(3, dtype=int))
