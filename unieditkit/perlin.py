"""Vectorised 2-D Perlin noise, value-for-value identical to ``noise.pnoise2`` (noise 1.2.2).

MATS rough masks are regenerated on the fly during training from a stored seed, so the noise must be both fast
(numpy over whole arrays instead of one C call per pixel) and exactly reproducible. This module re-implements
the C code of ``noise._perlin.noise2`` operation by operation in float32 (Python floats are rounded to float32
on the way in, exactly as ``PyArg_ParseTuple("f")`` does), so every value matches the C library bit for bit.
Only IEEE-exact operations are used (``+ - *``, floor, fmod, float<->int casts), so results do not depend on
the machine's libm.

One quirk is reproduced on purpose: the C code indexes its 512-entry permutation table with ``perm + j`` where
``j`` already includes ``base``, so for ``base >= 2`` it reads past the table into the next constant in memory,
which in the Linux/GCC build of the package is the float table ``GRAD4``. We append those bytes to our table,
so ``base`` in ``[0, 256]`` matches that build; other values would read unrelated memory in C and are refused.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAX_BASE", "fbm_weights", "grid_octave", "noise_coords", "noise_field", "pnoise2", "pnoise2_grid"]

MAX_BASE = 256
"""Largest ``base`` whose table reads stay within PERM + GRAD4 (the C code's own indices stay below 1024)."""

_PERM_256 = (
    151, 160, 137, 91, 90, 15, 131, 13, 201, 95, 96, 53, 194, 233, 7, 225, 140, 36, 103, 30, 69, 142, 8, 99, 37,
    240, 21, 10, 23, 190, 6, 148, 247, 120, 234, 75, 0, 26, 197, 62, 94, 252, 219, 203, 117, 35, 11, 32, 57, 177,
    33, 88, 237, 149, 56, 87, 174, 20, 125, 136, 171, 168, 68, 175, 74, 165, 71, 134, 139, 48, 27, 166, 77, 146,
    158, 231, 83, 111, 229, 122, 60, 211, 133, 230, 220, 105, 92, 41, 55, 46, 245, 40, 244, 102, 143, 54, 65, 25,
    63, 161, 1, 216, 80, 73, 209, 76, 132, 187, 208, 89, 18, 169, 200, 196, 135, 130, 116, 188, 159, 86, 164, 100,
    109, 198, 173, 186, 3, 64, 52, 217, 226, 250, 124, 123, 5, 202, 38, 147, 118, 126, 255, 82, 85, 212, 207, 206,
    59, 227, 47, 16, 58, 17, 182, 189, 28, 42, 223, 183, 170, 213, 119, 248, 152, 2, 44, 154, 163, 70, 221, 153,
    101, 155, 167, 43, 172, 9, 129, 22, 39, 253, 19, 98, 108, 110, 79, 113, 224, 232, 178, 185, 112, 104, 218, 246,
    97, 228, 251, 34, 242, 193, 238, 210, 144, 12, 191, 179, 162, 241, 81, 51, 145, 235, 249, 14, 239, 107, 49, 192,
    214, 31, 181, 199, 106, 157, 184, 84, 204, 176, 115, 121, 50, 45, 127, 4, 150, 254, 138, 236, 205, 93, 222, 114,
    67, 29, 24, 72, 243, 141, 128, 195, 78, 66, 215, 61, 156, 180,
)

# GRAD3 of _noise.h; 2-D noise uses the first two columns, indexed by hash & 15.
_GRAD3 = np.array(
    [[1, 1, 0], [-1, 1, 0], [1, -1, 0], [-1, -1, 0], [1, 0, 1], [-1, 0, 1], [1, 0, -1], [-1, 0, -1],
     [0, 1, 1], [0, -1, 1], [0, 1, -1], [0, -1, -1], [1, 0, -1], [-1, 0, -1], [0, -1, 1], [0, 1, 1]],
    dtype=np.float32,
)


def _grad4_bytes() -> np.ndarray:
    """The bytes of the C ``GRAD4`` float table, which follows PERM in memory (see the module docstring)."""
    grad4 = []
    for w in (0, 1, 2, 3):  # GRAD4 lists the vectors with a zero in column w, signs in binary order
        for signs in range(8):
            vec = [1.0 if not signs & bit else -1.0 for bit in (4, 2, 1)]
            vec.insert(w, 0.0)
            grad4.append(vec)
    return np.frombuffer(np.array(grad4, dtype="<f4").tobytes(), dtype=np.uint8)


_PERM = np.concatenate([np.array(_PERM_256 * 2, dtype=np.uint8), _grad4_bytes()]).astype(np.int32)
# Gradient components looked up directly by a permutation index k: GRAD3[PERM[k] & 15][0 or 1].
_GX = _GRAD3[_PERM & 15, 0].copy()
_GY = _GRAD3[_PERM & 15, 1].copy()

_F6, _F15, _F10, _ONE = np.float32(6), np.float32(15), np.float32(10), np.float32(1)


def _lattice(
    t: np.ndarray, repeat: np.ndarray | np.float32, base: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-axis part of C ``noise2``: wrapped cell index, next cell index, offset in the cell, fade weight."""
    i = np.floor(np.fmod(t, repeat)).astype(np.int32)
    ii = np.fmod((i + 1).astype(np.float32), repeat).astype(np.int32)  # C: (int)fmodf(i + 1, repeat)
    i &= 255
    i += base
    ii &= 255
    ii += base
    f = t - np.floor(t)
    fade = f * f * f * (f * (f * _F6 - _F15) + _F10)  # same association as the C expression
    return i, ii, f, fade


def _noise2(x: np.ndarray, y: np.ndarray, repeatx: np.float32, repeaty: np.float32, base: int) -> np.ndarray:
    """One octave: C ``noise2`` on float32 arrays of equal shape."""
    i, ii, xf, fx = _lattice(x, repeatx, base)
    j, jj, yf, fy = _lattice(y, repeaty, base)
    a = _PERM.take(i)
    b = _PERM.take(ii)
    aa = _PERM.take(a + j)
    ab = _PERM.take(a + jj)
    ba = _PERM.take(b + j)
    bb = _PERM.take(b + jj)
    xm = xf - _ONE
    ym = yf - _ONE
    g_aa = xf * _GX.take(aa) + yf * _GY.take(aa)
    g_ba = xm * _GX.take(ba) + yf * _GY.take(ba)
    g_ab = xf * _GX.take(ab) + ym * _GY.take(ab)
    g_bb = xm * _GX.take(bb) + ym * _GY.take(bb)
    low = g_aa + fx * (g_ba - g_aa)
    high = g_ab + fx * (g_bb - g_ab)
    return low + fy * (high - low)


def _check(octaves: int, base: int) -> tuple[int, int]:
    """Reject what the C code rejects (octaves < 1) or leaves undefined (a base that reads unrelated memory)."""
    if int(octaves) < 1:
        raise ValueError(f"pnoise2: octaves must be >= 1, got {octaves}")
    if not 0 <= int(base) <= MAX_BASE:
        raise ValueError(f"pnoise2: base must be in [0, {MAX_BASE}] (noise reads outside its tables), got {base}")
    return int(octaves), int(base)


def _repeats(repeatx: float, repeaty: float) -> tuple[np.float32, np.float32]:
    """The repeat periods as the C code sees them (float32); zero or negative would make fmodf return NaN."""
    rx, ry = np.float32(repeatx), np.float32(repeaty)
    if not (rx > 0 and ry > 0):
        raise ValueError(f"pnoise2: repeatx and repeaty must be > 0, got {repeatx}, {repeaty}")
    return rx, ry


def pnoise2(
    x: np.ndarray | float,
    y: np.ndarray | float,
    octaves: int = 1,
    persistence: float = 0.5,
    lacunarity: float = 2.0,
    repeatx: float = 1024,
    repeaty: float = 1024,
    base: int = 0,
) -> np.ndarray:
    """``noise.pnoise2`` over arrays: float32 result of the broadcast shape of ``x`` and ``y``.

    Arguments have the C function's meaning and types (``x``, ``y``, ``persistence``, ``lacunarity`` and the
    repeats are rounded to float32; the octave loop scales the repeat with the frequency, as the C code does).
    Coordinates whose wrapped lattice index would not fit an int32 are outside what the C code defines.
    """
    octaves, base = _check(octaves, base)
    xb, yb = np.broadcast_arrays(np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.float32))
    shape = xb.shape
    xs = xb.ravel()
    ys = yb.ravel()
    rx, ry = _repeats(repeatx, repeaty)
    if octaves == 1:
        return _noise2(xs, ys, rx, ry, base).reshape(shape)
    weights, total_amp = fbm_weights(octaves, persistence, lacunarity)
    total = np.zeros(xs.shape, dtype=np.float32)
    for freq, amp in weights:
        total += _noise2(xs * freq, ys * freq, rx * freq, ry * freq, base) * amp
    total /= total_amp
    return total.reshape(shape)


def _grid_axes(
    xs: np.ndarray, ys: np.ndarray, rx: np.float32, ry: np.float32, base: int
) -> tuple[np.ndarray, ...]:
    """Lattice data of both axes in one pass, by runs of equal cells (for sorted pixel coordinates a run is a whole
    lattice cell; unsorted input or wrapped repeats just make more runs): per axis, the run's ``i`` and ``ii``, the
    run of each coordinate, the offset in the cell and the fade weight."""
    n = xs.size
    t = np.concatenate([xs, ys])
    repeat = np.empty_like(t)
    repeat[:n] = rx
    repeat[n:] = ry
    i, ii, f, fade = _lattice(t, repeat, base)
    change = np.empty(t.shape, dtype=bool)
    change[0] = True
    np.not_equal(i[1:], i[:-1], out=change[1:])
    change[1:] |= ii[1:] != ii[:-1]
    change[n] = True
    run = np.cumsum(change, dtype=np.intp) - 1
    first_y = int(run[n])
    run_i, run_ii = i[change], ii[change]
    return (
        run_i[:first_y], run_ii[:first_y], run[:n], f[:n], fade[:n],
        run_i[first_y:], run_ii[first_y:], run[n:] - first_y, f[n:], fade[n:],
    )


# Corner order aa, ba, ab, bb (x-major as in C's lerps): offsets subtracted from the in-cell position.
_CORNER_DX = np.array([0, 1, 0, 1], dtype=np.float32)[:, None]
_CORNER_DY = np.array([0, 0, 1, 1], dtype=np.float32)[:, None]


def grid_octave(
    xs: np.ndarray,
    ys: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    freq: np.float32,
    repeatx: np.float32,
    repeaty: np.float32,
    base: int = 0,
) -> np.ndarray:
    """One fBm octave at grid points: ``noise2(xs[c] * freq, ys[r] * freq, repeatx * freq, repeaty * freq, base)``
    for each ``(r, c)`` in ``zip(rows, cols)``, float32 (the C octave loop's term before ``* amp``).

    ``xs``/``ys`` are float32 (any order is correct; sorted pixel coordinates keep the per-cell tables small);
    ``freq`` and the repeats are float32 as in C. The
    hashing and the gradient choice depend only on the lattice cell, and offsets and fades only on the column or
    the row, so they are computed once per cell / column / row and gathered; each point then goes through the C
    code's arithmetic in the C code's order, so values are bit-identical. Exposed so that callers can add
    octaves incrementally on a shrinking set of points (see :func:`fbm_weights`).
    """
    axes = _grid_axes(xs * freq, ys * freq, repeatx * freq, repeaty * freq, base)
    ci, cii, cell_x, xf, fx, cj, cjj, cell_y, yf, fy = axes
    ncx, ncy = ci.size, cj.size
    # hashes[y-corner block + cell row, x-corner block + cell column]: aa | ba over ab | bb, one PERM lookup
    x_hash = _PERM.take(np.concatenate([ci, cii]))
    hashes = _PERM.take(np.concatenate([cj, cjj])[:, None] + x_hash[None, :]).ravel()
    gx, gy = _GX.take(hashes), _GY.take(hashes)
    k = cell_y.take(rows) * (2 * ncx) + cell_x.take(cols)
    corners = k[None, :] + np.array([0, ncx, 2 * ncx * ncy, 2 * ncx * ncy + ncx], dtype=np.intp)[:, None]
    x_term = (xf.take(cols)[None, :] - _CORNER_DX) * gx.take(corners)
    grad = x_term + (yf.take(rows)[None, :] - _CORNER_DY) * gy.take(corners)
    fx = fx.take(cols)
    low_high = grad[0::2] + fx * (grad[1::2] - grad[0::2])  # lerp(fx, aa, ba) and lerp(fx, ab, bb)
    low = low_high[0]
    return low + fy.take(rows) * (low_high[1] - low)


def fbm_weights(
    octaves: int, persistence: float, lacunarity: float
) -> tuple[list[tuple[np.float32, np.float32]], np.float32]:
    """The C octave loop's ``(freq, amp)`` per octave and the final divisor ``max``, in float32 as in C.

    The result is ``total / max`` with ``total += term * amp`` in octave order (one octave: the term itself).
    """
    pers, lac = np.float32(persistence), np.float32(lacunarity)
    freq, amp, total_amp = np.float32(1), np.float32(1), np.float32(0)
    weights = []
    for _ in range(octaves):
        weights.append((freq, amp))
        total_amp += amp
        freq *= lac
        amp *= pers
    return weights, total_amp


def pnoise2_grid(
    xs: np.ndarray,
    ys: np.ndarray,
    octaves: int = 1,
    persistence: float = 0.5,
    lacunarity: float = 2.0,
    repeatx: float = 1024,
    repeaty: float = 1024,
    base: int = 0,
    rows: np.ndarray | None = None,
    cols: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`pnoise2` on a separable grid: value ``k`` is ``pnoise2(xs[cols[k]], ys[rows[k]], ...)``.

    Without ``rows``/``cols`` the whole ``(len(ys), len(xs))`` grid is returned. Pixel fields are grids, and MATS
    only needs the noise at the scattered pixels of a thin band; sharing the per-row, per-column and per-cell
    work makes that several times cheaper than :func:`pnoise2` on the gathered coordinates, with equal values.
    """
    octaves, base = _check(octaves, base)
    xs = np.asarray(xs, dtype=np.float32).ravel()
    ys = np.asarray(ys, dtype=np.float32).ravel()
    if (rows is None) != (cols is None):
        raise ValueError("pnoise2_grid: give both rows and cols, or neither")
    if rows is None:
        shape: tuple[int, ...] = (len(ys), len(xs))
        rows = np.repeat(np.arange(len(ys), dtype=np.intp), len(xs))
        cols = np.tile(np.arange(len(xs), dtype=np.intp), len(ys))
    else:
        rows = np.asarray(rows, dtype=np.intp).ravel()
        cols = np.asarray(cols, dtype=np.intp).ravel()
        if rows.shape != cols.shape:
            raise ValueError(f"pnoise2_grid: rows and cols differ in length ({rows.size} vs {cols.size})")
        shape = rows.shape
    rx, ry = _repeats(repeatx, repeaty)
    weights, total_amp = fbm_weights(octaves, persistence, lacunarity)
    if octaves == 1:
        return grid_octave(xs, ys, rows, cols, weights[0][0], rx, ry, base).reshape(shape)
    total = np.zeros(rows.shape, dtype=np.float32)
    for freq, amp in weights:
        total += grid_octave(xs, ys, rows, cols, freq, rx, ry, base) * amp
    total /= total_amp
    return total.reshape(shape)


def noise_coords(index: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """Pixel index -> noise coordinate ``(index + offset) / scale``, computed in float64 like a Python caller.

    Rounding to float32 happens afterwards (inside the noise functions), exactly as when a Python loop passes
    ``(c + offset) / scale`` to ``noise.pnoise2``, so fields built from these coordinates match such a loop.
    """
    return (np.asarray(index, dtype=np.float64) + float(offset)) / float(scale)


def noise_field(
    height: int,
    width: int,
    scale: float,
    octaves: int = 1,
    base: int = 0,
    offset: tuple[float, float] = (0.0, 0.0),
    persistence: float = 0.5,
    lacunarity: float = 2.0,
    repeat: float = 1024,
) -> np.ndarray:
    """A ``height x width`` float32 field: pixel ``(r, c)`` is ``pnoise2((c + ox) / scale, (r + oy) / scale, ...)``.

    ``scale`` is the feature size in pixels (one lattice cell); ``offset = (ox, oy)`` shifts the field so that
    different seeds see different noise without touching ``base``.
    """
    if not scale > 0:
        raise ValueError(f"noise_field: scale must be > 0, got {scale}")
    xs = noise_coords(np.arange(width), scale, offset[0])
    ys = noise_coords(np.arange(height), scale, offset[1])
    return pnoise2_grid(xs, ys, octaves, persistence, lacunarity, repeat, repeat, base)
