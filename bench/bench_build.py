"""Model-free build throughput against a raw floor, scaling from 1 to 2 workers, and the driver's peak memory.

P1: the build's images/s ÷ the raw floor's. The floor is what any builder pays for the same images and the
same six members, in one plain process: decode the JPEG, encode the target and a 384 px reference as JPEG and
four PNG masks (with the build's own encoders), tar them. The build additionally cuts and augments the
reference, checks the sample and draws the MATS masks, and runs on Ray. P5: 2 workers ÷ 1 worker, and the
driver's peak RSS (its own process, not the Ray workers) for a small and a ten times larger build: sample bytes
never reach the driver, so it should stay flat.

Every figure is the median of ``--repeats`` runs (3), printed with its min and max, and each ratio is taken within
one repeat (floor, 1 worker and 2 workers measured back to back), so one noisy run cannot set a claim.

Usage: ``python bench/bench_build.py [--images 2000] [--size 640 480] [--repeats 3] [--rss-units 2000 20000]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import webdataset as wds

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from unieditkit.format import MASK_VARIANTS, REF_IMAGE, REF_MASK, TARGET_IMAGE, mask_member  # noqa: E402
from unieditkit.imageio import encode_jpeg, encode_mask  # noqa: E402


def make_coco(root: Path, n: int, size: tuple[int, int], seed: int = 0) -> Path:
    """``n`` textured JPEGs with one dress polygon each (the issue's "one object each" COCO source)."""
    w, h = size
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    base = cv2.resize(rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    for i in range(n):
        img = np.roll(base, (i * 7) % h, axis=0) // 2 + rng.integers(0, 128, (h, w, 3), dtype=np.uint8)
        cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
        rx, ry = rng.uniform(0.1, 0.25) * w, rng.uniform(0.15, 0.3) * h
        poly = [cx - rx, cy - ry, cx + rx, cy - ry * 0.8, cx + rx * 0.9, cy + ry, cx - rx * 0.8, cy + ry * 0.9]
        cv2.fillPoly(img, [np.array(poly, np.int32).reshape(-1, 2)], tuple(int(c) for c in rng.integers(0, 255, 3)))
        name = f"img_{i:06d}.jpg"
        cv2.imwrite(str(root / "images" / name), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        xs, ys = poly[0::2], poly[1::2]
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "segmentation": [poly], "iscrowd": 0,
                     "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]})
    path = root / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "dress"}]}))
    return path


def raw_floor(coco: Path, out: Path) -> tuple[int, float]:
    data = json.loads(coco.read_text())
    polys = {a["image_id"]: a["segmentation"][0] for a in data["annotations"]}
    t0 = time.perf_counter()
    with open(out, "wb") as fh, wds.TarWriter(fh, encoder=False, mtime=0) as tw:
        for im in data["images"]:
            rgb = cv2.imdecode(np.fromfile(coco.parent / "images" / im["file_name"], np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
            mask = np.zeros(rgb.shape[:2], np.uint8)
            cv2.fillPoly(mask, [np.array(polys[im["id"]], np.int32).reshape(-1, 2)], 1)
            ys, xs = np.nonzero(mask)
            crop = cv2.resize(rgb[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1], (384, 384))
            crop_mask = cv2.resize(mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1], (384, 384), interpolation=cv2.INTER_NEAREST)
            masks = {mask_member(v): encode_mask(mask > 0) for v in MASK_VARIANTS}
            tw.write({"__key__": f"s{im['id']:06d}", TARGET_IMAGE: encode_jpeg(rgb), REF_IMAGE: encode_jpeg(crop),
                      REF_MASK: encode_mask(crop_mask > 0), **masks})
    return len(data["images"]), time.perf_counter() - t0


def timed_build(coco: Path, warm_up: Path, out: Path, workers: int) -> tuple[float, int]:
    import ray

    from unieditkit.pipelines.build import build
    from unieditkit.pipelines.config import BuildConfig, OutputSettings

    try:
        def config(src: Path, dest: Path) -> BuildConfig:  # the build starts Ray itself, as `unieditkit build` does
            return BuildConfig(domain="garments", out_dir=str(dest), sources=(f"coco:{src}",), num_workers=workers,
                               settings=OutputSettings(split_ratios=(1.0, 0.0, 0.0)), progress=False)

        build(config(warm_up, out.with_name(out.name + "-warm")))  # worker processes and imports, on a small input
        t0 = time.perf_counter()
        summary = build(config(coco, out))
        return time.perf_counter() - t0, summary.samples_written
    finally:
        ray.shutdown()


DRIVER = """
import resource, sys
from unieditkit.pipelines.build import build
from unieditkit.pipelines.config import BuildConfig, OutputSettings
build(BuildConfig(domain="garments", out_dir=sys.argv[2], sources=("coco:" + sys.argv[1],), num_workers=2, settings=OutputSettings(split_ratios=(1.0, 0.0, 0.0)), progress=False))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def driver_peak_rss_mib(coco: Path, out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", DRIVER, str(coco), str(out)], capture_output=True, text=True, env=env, check=True)
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, nargs=2, default=(640, 480))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each figure; the median is reported with min and max")
    parser.add_argument("--rss-units", type=int, nargs="*", default=[2000, 20000])
    parser.add_argument("--rss-size", type=int, nargs=2, default=(96, 72), help="image size of the RSS builds (small: only the unit count matters)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_build_"))
    try:
        coco = make_coco(work / "src", args.images, tuple(args.size))
        warm_up = make_coco(work / "warm", 64, tuple(args.size), seed=1)
        floor: list[float] = []
        speed: dict[int, list[float]] = {w: [] for w in args.workers}
        samples: dict[int, list[float]] = {w: [] for w in args.workers}
        for rep in range(args.repeats):
            n, raw = min((raw_floor(coco, work / "raw.tar") for _ in range(2)), key=lambda r: r[1])
            floor.append(n / raw)
            for w in args.workers:
                out = work / f"out{w}-{rep}"
                dt, written = timed_build(coco, warm_up, out, w)
                speed[w].append(n / dt)
                samples[w].append(written / dt)
                shutil.rmtree(out)
                shutil.rmtree(out.with_name(out.name + "-warm"))
        rss = []
        for units in args.rss_units:
            src = make_coco(work / f"rss{units}", units, tuple(args.rss_size), seed=units)
            rss.append((units, driver_peak_rss_mib(src, work / f"rssout{units}")))
            shutil.rmtree(work / f"rss{units}")
            shutil.rmtree(work / f"rssout{units}")
        print(f"\n{args.images} images of {args.size[0]}x{args.size[1]}, one object each; {platform.processor() or platform.machine()}, "
              f"{len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.1f}, Python {sys.version.split()[0]}; "
              f"median [min-max] of {args.repeats} runs\n")
        print("| pipeline | images/s | vs raw (P1) | samples/s |")
        print("|---|---:|---:|---:|")
        print(f"| raw floor: decode, 2 JPEG + 4 PNG, tar; 1 process | {_spread(floor)} | 1.00× | |")
        for w in args.workers:
            p1 = [b / f for b, f in zip(speed[w], floor)]
            print(f"| unieditkit build, Ray {w} worker(s) | {_spread(speed[w])} | {_spread(p1, '×', 2)} | {_spread(samples[w])} |")
        if 1 in speed and 2 in speed:
            print(f"\nP5 scaling, 2 workers ÷ 1 worker: {_spread([b / a for a, b in zip(speed[1], speed[2])], '×', 2)}")
        for units, mib in rss:
            print(f"driver peak RSS, {units} units of {args.rss_size[0]}x{args.rss_size[1]}: {mib:.0f} MiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _spread(values: list[float], unit: str = "", digits: int = 1) -> str:
    """``median unit [min-max]``: one figure and how far the runs strayed from it."""
    return f"{statistics.median(values):.{digits}f}{unit} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


if __name__ == "__main__":
    main()
