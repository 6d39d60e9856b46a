"""MATS rough-mask speed at 512x512: a per-pixel ``noise.pnoise2`` field vs the vectorised field vs ``rough_mask``.

Usage: ``python bench/bench_mats.py [--seeds 40]``. Prints a markdown table (median wall and CPU milliseconds,
speed-up over the per-pixel field) and checks that the vectorised field equals the per-pixel one bit for bit.
The per-pixel field uses the noise parameters ``rough_mask`` draws for the medium object and seed 0, so the same
values are being computed; ``rough_mask`` itself needs them only in a thin band around the object. On a shared
machine compare the CPU columns: CPU time is what other processes disturb least.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable

import cv2
import noise
import numpy as np

from unieditkit import mats
from unieditkit.mats import MatsParams, rough_mask
from unieditkit.perlin import noise_field

SIZE = 512


def objects() -> dict[str, np.ndarray]:
    """Three object sizes on a 512x512 image (fraction of the image in the name is measured, not assumed)."""
    out = {}
    for name, axes, bar in (("small", (40, 25), 12), ("medium", (120, 90), 20), ("large", (220, 160), 40)):
        m = np.zeros((SIZE, SIZE), np.uint8)
        cv2.ellipse(m, (256, 256), axes, 30, 0, 360, 1, -1)
        cv2.rectangle(m, (256, 256 - 2 * axes[1]), (256 + bar, 256), 1, -1)  # a handle: not convex
        out[f"{name} object ({m.mean():.0%} of the image)"] = m.astype(bool)
    return out


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds of ``fn`` (CPU time is less disturbed by other processes)."""
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return statistics.median(wall) * 1e3, statistics.median(cpu) * 1e3


def per_pixel_field(scale: float, octaves: int, offset: tuple[float, float]) -> np.ndarray:
    """The reference: one ``noise.pnoise2`` call per pixel."""
    ox, oy = offset
    return np.array(
        [[noise.pnoise2((c + ox) / scale, (r + oy) / scale, octaves) for c in range(SIZE)] for r in range(SIZE)],
        dtype=np.float32,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=40, help="rough masks timed per object (one seed each)")
    parser.add_argument("--reference-repeats", type=int, default=3, help="per-pixel fields timed")
    args = parser.parse_args()
    params = MatsParams()
    shapes = objects()
    medium = list(shapes.values())[1]
    _, _, scale, _, _, _, off_x, off_y = mats._draw(int(medium.sum()), 0, params)
    offset = (off_x, off_y)

    reference = per_pixel_field(scale, params.octaves, offset)
    vectorised = noise_field(SIZE, SIZE, scale, params.octaves, offset=offset)
    equal = np.array_equal(reference.view(np.int32), vectorised.view(np.int32))

    ref_wall, ref_cpu = timed(lambda: per_pixel_field(scale, params.octaves, offset), args.reference_repeats)
    rows = [("per-pixel `noise.pnoise2` field", ref_wall, ref_cpu)]
    wall, cpu = timed(lambda: noise_field(SIZE, SIZE, scale, params.octaves, offset=offset), 10)
    rows.append(("vectorised field (`perlin.noise_field`)", wall, cpu))
    for name, fine in shapes.items():
        for seed in range(3):  # warm-up
            rough_mask(fine, seed, params)
        seeds = iter(range(args.seeds))
        wall, cpu = timed(lambda: rough_mask(fine, next(seeds), params), args.seeds)
        rows.append((f"`rough_mask`, {name}", wall, cpu))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"MATS at {SIZE}x{SIZE}, octaves={params.octaves}, feature size {scale:.1f} px; "
          f"{os.cpu_count()} CPUs, load average {load:.2f}; medians over {args.seeds} seeds per object")
    print()
    print("| what | wall ms | CPU ms | speed-up (wall) | speed-up (CPU) |")
    print("|---|---:|---:|---:|---:|")
    for name, wall, cpu in rows:
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {ref_wall / wall:.0f}x | {ref_cpu / cpu:.0f}x |")
    print()
    print(f"vectorised field == per-pixel field, bit for bit: {equal}")
    checks = [not (fine & ~rough_mask(fine, 0, params)[0]).any() for fine in shapes.values()]
    print(f"rough ⊇ fine for every object: {all(checks)}")
    if not equal or not all(checks):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
