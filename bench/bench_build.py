"""Build throughput of the model-free stages vs a raw JPEG decode → encode → tar of the same images.

The raw loop is the floor any builder pays (read, decode, re-encode, write); the build additionally cuts and
augments the reference, rasterises the mask, makes MATS variants and writes four PNG masks per sample, but
runs on Ray with one worker per core. Both process exactly the images the build plans for the domain.

Usage: ``python bench/bench_build.py [--images-per-domain 64] [--size 640 480] [--workers 2]``
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import logging
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import webdataset as wds

ROOT = Path(__file__).resolve().parent.parent


def load_generator():
    spec = importlib.util.spec_from_file_location("make_sample_data", ROOT / "scripts" / "make_sample_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def raw_baseline(paths: list[str], out: Path) -> float:
    t0 = time.perf_counter()
    with open(out, "wb") as fh, wds.TarWriter(fh, encoder=False, mtime=0) as tw:
        for i, p in enumerate(paths):
            img = cv2.imdecode(np.fromfile(p, np.uint8), cv2.IMREAD_COLOR)
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
            tw.write({"__key__": f"s{i:06d}", "jpg": buf.tobytes()})
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images-per-domain", type=int, default=64)
    parser.add_argument("--size", type=int, nargs=2, default=(640, 480))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--domain", default="garments")
    args = parser.parse_args()

    import ray

    from pipelines.build import build
    from pipelines.config import BuildConfig, OutputSettings
    from pipelines.plan import make_plan
    from pipelines.sources import parse_source
    from taxonomy import load_taxonomy

    work = Path(tempfile.mkdtemp(prefix="bench_build_"))
    try:
        coco = load_generator().generate(work / "src", args.images_per_domain, tuple(args.size))
        settings = OutputSettings()
        shards, report = make_plan([parse_source(f"coco:{coco}")], load_taxonomy(), args.domain, settings)
        paths = [u.tgt_uri for s in shards for u in s.units]
        raw = min(raw_baseline(paths, work / "raw.tar") for _ in range(3))
        rows = [("raw decode→encode→tar, 1 process", len(paths) / raw, 1.0, "")]
        for n in args.workers:
            ray.init(num_cpus=n, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
            cfg = BuildConfig(domain=args.domain, out_dir=str(work / f"out{n}"), sources=(f"coco:{coco}",), settings=settings, progress=False)
            build(cfg)  # warm-up: worker processes and imports, then measure a fresh build
            shutil.rmtree(work / f"out{n}")
            t0 = time.perf_counter()
            summary = build(cfg)
            dt = time.perf_counter() - t0
            ray.shutdown()
            rows.append((f"unieditkit build, Ray {n} worker(s)", len(paths) / dt, (len(paths) / dt) / (len(paths) / raw), f"{summary.samples_written / dt:.1f} samples/s"))
        print(f"\n{len(paths)} images of {args.size[0]}x{args.size[1]} ({report.objects_planned} {args.domain} objects); "
              f"{platform.processor() or platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores, Python {sys.version.split()[0]}\n")
        print("| pipeline | images/s | vs raw | |")
        print("|---|---|---|---|")
        for name, ips, ratio, extra in rows:
            print(f"| {name} | {ips:.1f} | {ratio:.2f}× | {extra} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
