"""Where a model-free build spends its CPU: per part of a sample's work, and per process of a Ray build.

Two views of the same input (``bench_build.make_coco``: generated JPEGs, one object each):

1. **Per part, in one process.** The stage chain a Ray worker runs, batch by batch as Ray Data feeds it
   (``batch_size`` rows of Arrow), then the shard writes, under cProfile. Each part is the cumulative CPU of the
   functions that do it (decode, reference cut and augmentation, JPEG and PNG encoding, MATS, checks, Arrow
   conversions, tar + sidecar); "other" is the rest (Python per row, JSON). cProfile slows Python-heavy parts
   more than native ones, so the shares are approximate; the total is also given without the profiler.
2. **Per process, on Ray.** A real ``build`` with ``--workers`` Ray workers (after a warm-up build, as
   ``bench_build.py`` does), CPU seconds of every process of this build's own tree, polled while it runs:
   the driver, the Ray workers, raylet, GCS and Ray's other daemons. The workers' CPU beyond view 1's total is
   what running on Ray Data costs them (task start, serialization of blocks, object store).

Usage: ``python bench/profile_build.py [--images 1000] [--size 640 480] [--workers 2]``
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_build import make_coco  # noqa: E402

#: (part, functions whose CPU it is): (file name suffix, function name), cumulative CPU, or own CPU with ":self"
PARTS: list[tuple[str, list[tuple[str, str]]]] = [
    ("decode target JPEG", [("unieditkit/media.py", "load_uri")]),
    ("reference: warp, tone, composite", [("pipelines/stages/pair.py", "make_reference")]),
    ("JPEG encode (target, reference)", [("unieditkit/imageio.py", "encode_jpeg")]),
    ("PNG encode (4 masks)", [("unieditkit/imageio.py", "encode_mask")]),
    ("PNG decode (masks read back)", [("unieditkit/imageio.py", "decode_mask")]),
    ("MATS rough + box masks", [("unieditkit/mats.py", "mask_variants")]),
    ("checks: sharpness, pHash, components", [("pipelines/stages/pair.py", "sharpness"), ("pipelines/stages/pair.py", "phash"),
                                               ("pipelines/stages/filter.py", "largest_component_fraction")]),
    # pyarrow's conversions are invisible to cProfile: they are the own time of the functions that call them
    ("Arrow ↔ Python rows", [("pipelines/stages/pair.py", "__call__:self"), ("pipelines/stages/filter.py", "__call__:self"),
                              ("pipelines/stages/mats.py", "__call__:self"), ("pipelines/distributor.py", "write_from_blocks:self")]),
    ("shard write: tar, sidecar, hashes", [("pipelines/writer.py", "write_shard")]),
]


def _config(src: Path, dest: Path, workers: int) -> Any:
    from unieditkit.pipelines.config import BuildConfig, OutputSettings

    return BuildConfig(domain="garments", out_dir=str(dest), sources=(f"coco:{src}",), num_workers=workers,
                       settings=OutputSettings(split_ratios=(1.0, 0.0, 0.0)), progress=False)


def worker_work(coco: Path, out: Path) -> tuple[int, Any]:
    """Run what the workers run, in this process; returns the number of images and a callable that does it."""
    import pyarrow as pa

    from unieditkit.pipelines.distributor import write_from_blocks
    from unieditkit.pipelines.plan import make_plan
    from unieditkit.pipelines.runner import unit_rows
    from unieditkit.pipelines.sources import parse_source
    from unieditkit.pipelines.stages.registry import build_chain
    from unieditkit.taxonomy import load_taxonomy
    from unieditkit.storage import Folder

    config = _config(coco, out, 1)
    shards, _ = make_plan([parse_source(s) for s in config.sources], load_taxonomy(None), config.domain, config.settings)
    rows = unit_rows(shards)
    chain = [st.instantiate() for st in build_chain(config, None)]
    folder = Folder(out)
    folder.makedirs()

    def run() -> None:
        blocks = []
        for i in range(0, len(rows), config.batch_size):
            table = pa.Table.from_pylist(rows[i : i + config.batch_size])
            for fn in chain:
                table = fn(table)
            blocks.append(table)
        for shard in shards:
            write_from_blocks(folder, shard, config.settings.dedupe_hamming, [[] for _ in blocks], *blocks)

    return len(rows), run


def parts_profile(coco: Path, work: Path) -> tuple[int, float, list[tuple[str, float]]]:
    n, run = worker_work(coco, work / "plain")
    t0 = time.process_time()
    run()
    plain = time.process_time() - t0
    n, run = worker_work(coco, work / "profiled")
    prof = cProfile.Profile(time.process_time)
    prof.enable()
    run()
    prof.disable()
    stats = pstats.Stats(prof).stats  # {(file, line, func): (cc, nc, tottime, cumtime, callers)}
    total = sum(v[2] for v in stats.values())
    parts = []
    for name, funcs in PARTS:
        cpu = 0.0
        for suffix, spec in funcs:
            func, _, own = spec.partition(":")
            cpu += sum(v[2] if own else v[3] for (file, _, f), v in stats.items() if f == func and file.endswith(suffix))
        parts.append((name, cpu))
    parts.append(("other (Python per row, JSON, numpy glue)", total - sum(p for _, p in parts)))
    return n, plain, [(name, cpu * plain / total) for name, cpu in parts]  # scaled to the unprofiled total


def _kind(proc: Any, driver: int) -> str:
    if proc.pid == driver:
        return "driver"
    name, cmd = proc.name(), " ".join(proc.cmdline()[:3])
    if name.startswith("ray::") or "default_worker.py" in cmd:
        return "Ray workers"
    if "raylet" in name:
        return "raylet"
    if "gcs_server" in name:
        return "GCS"
    return "Ray's other daemons"


def process_profile(coco: Path, warm: Path, work: Path, workers: int) -> tuple[float, int, dict[str, float]]:
    """CPU seconds per process kind of this build's own process tree (other Ray clusters on the machine are not
    counted), polled so that processes which exit during the build are counted too."""
    import psutil
    import ray

    from unieditkit.pipelines.build import build

    me = psutil.Process()
    try:
        build(_config(warm, work / "warm-out", workers))

        def snapshot() -> dict[int, tuple[str, float]]:
            seen = {}
            for proc in [me, *me.children(recursive=True)]:
                try:
                    t = proc.cpu_times()
                    seen[proc.pid] = (_kind(proc, me.pid), t.user + t.system)
                except psutil.Error:
                    continue
            return seen

        before = snapshot()
        last = dict(before)
        done = threading.Event()

        def poll() -> None:
            while not done.wait(0.25):
                last.update(snapshot())

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        t0 = time.perf_counter()
        summary = build(_config(coco, work / "out", workers))
        wall = time.perf_counter() - t0
        done.set()
        poller.join()
        last.update(snapshot())
    finally:
        ray.shutdown()
    cpu: dict[str, float] = {}
    for pid, (kind, seconds) in last.items():
        cpu[kind] = cpu.get(kind, 0.0) + seconds - before.get(pid, (kind, 0.0))[1]
    return wall, summary.samples_written, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, nargs=2, default=(640, 480))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("OPENCV_FOR_THREADS_NUM", "1")  # as the Ray workers run (cluster.start_ray)
    import cv2

    cv2.setNumThreads(1)
    work = Path(tempfile.mkdtemp(prefix="profile_build_"))
    try:
        coco = make_coco(work / "src", args.images, tuple(args.size))
        warm = make_coco(work / "warm", 64, tuple(args.size), seed=1)
        n, plain, parts = parts_profile(coco, work)
        wall, samples, cpu = process_profile(coco, warm, work, args.workers)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    w, h = args.size
    print(f"\n{n} images of {w}x{h}, one object each; {len(os.sched_getaffinity(0))} cores, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| part of a sample's work (one process) | CPU s | ms / image | share |")
    print("|---|---:|---:|---:|")
    for name, seconds in parts:
        print(f"| {name} | {seconds:.2f} | {1000 * seconds / n:.2f} | {seconds / plain:.0%} |")
    print(f"| **total** (without the profiler) | {plain:.2f} | {1000 * plain / n:.2f} | 100% |")
    print(f"\nRay build, {args.workers} worker(s): {samples} samples from {n} images in {wall:.1f} s ({n / wall:.1f} images/s)\n")
    print("| process | CPU s | ms / image | share |")
    print("|---|---:|---:|---:|")
    total = sum(cpu.values())
    for kind in ("Ray workers", "driver", "raylet", "GCS", "Ray's other daemons"):
        print(f"| {kind} | {cpu.get(kind, 0.0):.2f} | {1000 * cpu.get(kind, 0.0) / n:.2f} | {cpu.get(kind, 0.0) / total:.0%} |")
    overhead = cpu.get("Ray workers", 0.0) - plain
    print(f"| **total** | {total:.2f} | {1000 * total / n:.2f} | 100% |")
    print(f"\nRay workers beyond the one-process work: {overhead:.2f} CPU s ({1000 * overhead / n:.2f} ms / image); "
          f"CPU in use on average: {total / wall:.2f} of {len(os.sched_getaffinity(0))} cores")


if __name__ == "__main__":
    main()
