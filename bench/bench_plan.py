"""Planning time and the driver's peak memory at 10K, 100K and 500K units: ``unieditkit build --dry-run``.

A unit is one manifest line: one image with one annotated object (mask file named), the input a ``self`` sample
is made from. Planning is everything a build does before its first shard: read the manifest, map categories onto
the taxonomy, split by group, sort and cut into shards, fingerprint the plan and stat every input file (a resume
must see the same inputs), and check which shards are done. ``--dry-run`` does exactly that and writes nothing,
so each run is a fresh process whose peak RSS (``wait4``'s ``ru_maxrss``) is the driver's planning peak. The
input files are not created (a missing file is one ``stat`` that fails: about as fast as one that succeeds), so
the figures leave out a slow disk.

Usage: ``python bench/bench_plan.py [--units 10000 100000 500000] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_manifest(path: Path, n: int) -> Path:
    """``n`` self units of one dress each, ten units to a group."""
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"image": f"images/{i:07d}.jpg", "group": f"g{i // 10}",
                                 "objects": [{"category": "dress", "bbox": [10, 20, 200, 300], "mask": f"masks/{i:07d}.png"}]}) + "\n")
    return path


def dry_run(manifest: Path, out: Path) -> tuple[float, float, str]:
    """Seconds, peak RSS in GiB and the first output line of one ``build --dry-run`` in a fresh process."""
    cmd = [sys.executable, "-m", "unieditkit.cli", "build", "--domain", "garments", "--source", f"manifest:{manifest}",
           "--out", str(out), "--dry-run"]
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak, which Popen.wait would not report
        seconds = time.perf_counter() - t0
        stdout.seek(0)
        stderr.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"dry run failed: {stderr.read().decode()[-2000:]}")
        return seconds, usage.ru_maxrss / 2**20, stdout.read().decode().splitlines()[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--units", type=int, nargs="+", default=[10_000, 100_000, 500_000])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="bench-plan-") as tmp:
        for n in args.units:
            manifest = make_manifest(Path(tmp) / f"m{n}.jsonl", n)
            runs = [dry_run(manifest, Path(tmp) / "out") for _ in range(args.repeats)]
            line = runs[0][2]
            assert not (Path(tmp) / "out").exists(), "a dry run created the output folder"
            shards = re.search(r" in (\d+) shards", line)
            print(f"{n:>8} units: {shards[1] if shards else '?'} shards, planning {statistics.median(r[0] for r in runs):.1f} s "
                  f"(runs {', '.join(f'{r[0]:.1f}' for r in runs)}), driver peak RSS {statistics.median(r[1] for r in runs):.2f} GiB "
                  f"(runs {', '.join(f'{r[1]:.2f}' for r in runs)})", flush=True)


if __name__ == "__main__":
    main()
