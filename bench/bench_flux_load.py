"""Host memory at start: the peak RSS of one rank loading the FLUX.1-Fill transformer, against its bytes.

    python bench/bench_flux_load.py                  # writes a random FLUX-wide snapshot (4.7 GiB), measures, deletes it
    python bench/bench_flux_load.py --snapshot /models/FLUX.1-Fill-dev --device cuda     # a real one, on a GPU
    python bench/bench_flux_load.py --device cuda --compare   # also the old way: the whole model on the CPU, then moved

What is measured is what a training rank does (``unieditkit.training.backbones.flux.flow.FluxBackend``):
``load_flux_fill_transformer(snapshot, bf16, device)``, where diffusers builds the model on the meta device and moves
each tensor of the memory-mapped safetensors shards to ``device`` as it reads it (``device_map``). Then every
weight is read once (a sum), so that on a CPU, where a memory-mapped page counts only once it is touched, the whole
model is resident, as it is after the first training step. ``--compare`` adds the loading this replaced
(``from_pretrained`` on the CPU, then ``.to(device)``); on a CPU the two are the same thing.

Each repeat is a fresh process; its peak RSS is ``VmHWM`` (``/proc/self/status``), which includes the interpreter
and the libraries (``rss_before``: torch, diffusers and the toolkit imported, nothing loaded). ``ratio`` = peak RSS /
transformer bytes (the target: <= 1.25, no second copy of the weights in a rank); ``load_ratio`` = (peak RSS -
rss_before) / transformer bytes. The medians of ``--repeats`` runs are reported.

The random snapshot is ``scripts/make_tiny_flux.py`` at FLUX's width (24 heads of 128, bf16 on disk, as
FLUX.1-Fill-dev ships it) with ``--double`` double-stream and ``--single`` single-stream blocks (FLUX.1: 19 and 38;
the default 4 and 8 make 2.54 B parameters, 4.7 GiB), written to a temporary folder and deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _status(field: str) -> int:
    """A ``/proc/self/status`` memory field in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def child(snapshot: str, device: str, way: str) -> dict:
    """One rank's load, in this (fresh) process: returns the transformer's bytes and this process's RSS figures."""
    sys.path.insert(0, str(ROOT))
    import torch

    from unieditkit.training.backbones.flux.adapter import load_flux_fill_transformer, require_diffusers

    require_diffusers()
    dev = torch.device(device)
    before = _status("VmRSS")
    if way == "device_map":
        model = load_flux_fill_transformer(snapshot, torch.bfloat16, dev)
    else:
        model = load_flux_fill_transformer(snapshot, torch.bfloat16).to(dev)
    with torch.no_grad():
        for p in model.parameters():
            p.sum()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return {"way": way, "transformer_bytes": weights, "rss_before": before, "peak_rss": _status("VmHWM"),
            "on": str(next(model.parameters()).device)}


def make_snapshot(folder: Path, args: argparse.Namespace) -> list[str]:
    """Write the random FLUX-wide snapshot with the script itself; returns the command."""
    cmd = [sys.executable, str(ROOT / "scripts" / "make_tiny_flux.py"), str(folder), "--heads", str(args.heads),
           "--head-dim", str(args.head_dim), "--double", str(args.double), "--single", str(args.single),
           "--dtype", "bf16"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return cmd


def measure(snapshot: str, device: str, way: str, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, __file__, "--child", snapshot, "--device", device, "--way", way],
                             check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    weights = runs[0]["transformer_bytes"]
    peak = statistics.median(r["peak_rss"] for r in runs)
    before = statistics.median(r["rss_before"] for r in runs)
    return {"way": way, "device": runs[0]["on"], "transformer_bytes": weights, "rss_before_median": before,
            "peak_rss_median": peak, "ratio": peak / weights, "load_ratio": (peak - before) / weights,
            "peak_rss_runs": [r["peak_rss"] for r in runs]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--snapshot", help="an existing snapshot folder (default: write a random FLUX-wide one)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N: where the rank puts the transformer")
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per way; the median counts")
    p.add_argument("--compare", action="store_true", help="also the old way: on the CPU first, then .to(device)")
    p.add_argument("--heads", type=int, default=24)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--double", type=int, default=4, help="double-stream blocks of the random snapshot")
    p.add_argument("--single", type=int, default=8, help="single-stream blocks of the random snapshot")
    p.add_argument("--keep", action="store_true", help="keep the random snapshot (its folder is printed)")
    p.add_argument("--json", type=Path, help="also write the result here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--way", default="device_map", choices=["device_map", "cpu_then_move"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.device, args.way)))
        return 0
    made = None
    try:
        if args.snapshot:
            snapshot, make_cmd = args.snapshot, None
        else:
            made = Path(tempfile.mkdtemp(prefix="flux-load-")) / "FLUX-wide-random"
            snapshot, make_cmd = str(made), make_snapshot(made, args)
        rows = [measure(snapshot, args.device, way, args.repeats)
                for way in (["device_map", "cpu_then_move"] if args.compare else ["device_map"])]
    finally:
        if made is not None and not args.keep:
            shutil.rmtree(made.parent, ignore_errors=True)
    result = {
        "command": shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(["bench_flux_load.py", *argv]),
        "snapshot_command": shlex.join(make_cmd) if make_cmd else None, "snapshot": snapshot,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                   f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM",
        "repeats": args.repeats, "rows": rows,
    }
    for r in rows:
        print(f"{r['way']:>14} on {r['device']}: transformer {r['transformer_bytes'] / 2**30:.2f} GiB, RSS before "
              f"{r['rss_before_median'] / 2**30:.2f} GiB, peak RSS {r['peak_rss_median'] / 2**30:.2f} GiB (median of "
              f"{args.repeats}): ratio {r['ratio']:.2f}, load_ratio {r['load_ratio']:.2f}")
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
