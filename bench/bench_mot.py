"""MoT cost: train-step time, tokens/s and peak memory of the editor with and without experts, in one run.

    python bench/bench_mot.py                      # CPU, 1 thread, dim 512 x 4 blocks, 512 tokens/sample
    python bench/bench_mot.py --device cuda --dim 1024 --depth 8 --batch 16

Three variants of the same editor on the same batch, timed in interleaved rounds (so load from other processes
hits all of them alike; the median step counts). On CPU the step time is the process's CPU time, which time
spent waiting for a core shared with other jobs does not inflate; on GPU it is wall time after a synchronize:

* ``backbone``      the backbone alone, every weight trained (what you would train without MoT);
* ``mot``           the same plus 8 LoRA experts (rank 16, top-2) in attention and FFN, every weight trained;
* ``mot-frozen``    the same experts on a frozen backbone (the paper's fine-tuning setting).

Peak memory = the variant's persistent state (weights, buffers, optimizer state) + the largest extra allocation
during one training step (activations, gradients): ``torch.cuda.max_memory_allocated`` on GPU, the profiler's
allocation events on CPU. Ratios are against ``backbone``; the targets are <= 1.15x time and <= 1.10x memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.anchors import Anchors  # noqa: E402
from training.config import ModelConfig  # noqa: E402
from training.editor import Editor  # noqa: E402
from training.flow import flow_loss  # noqa: E402

VARIANTS = {
    "backbone": dict(num_experts=0, train_backbone=True),
    "mot": dict(num_experts=None, train_backbone=True),
    "mot-frozen": dict(num_experts=None, train_backbone=False),
}


def _state_bytes(model: torch.nn.Module, opt: torch.optim.Optimizer) -> int:
    tensors = list(model.parameters()) + list(model.buffers())
    tensors += [t for s in opt.state.values() for t in s.values() if torch.is_tensor(t)]
    return sum(t.numel() * t.element_size() for t in tensors)


def _build(name: str, args: argparse.Namespace, anchors: Anchors, device: torch.device):
    spec = VARIANTS[name]
    cfg = ModelConfig(
        image_size=args.image_size, patch_size=args.patch, dim=args.dim, depth=args.depth, heads=args.heads,
        num_experts=args.experts if spec["num_experts"] is None else 0, rank=args.rank, alpha=args.rank,
        top_k=args.top_k, train_backbone=True, gradient_checkpointing=args.checkpointing,
    )
    torch.manual_seed(0)
    model = Editor(cfg, anchors)
    model.set_backbone_trainable(spec["train_backbone"])
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    return model, torch.optim.AdamW(params, lr=1e-4), sum(p.numel() for p in params)


def _step(model, opt, batch, step: int, autocast) -> None:
    with autocast:
        loss = flow_loss(model, batch, torch.Generator().manual_seed(step), "logit_normal", 0.01).total
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_step_bytes(model, opt, batch, device, autocast) -> int:
    """Largest allocation above the step's starting point during one training step."""
    if device.type == "cuda":
        _sync(device)
        start = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        _step(model, opt, batch, 0, autocast)
        _sync(device)
        return torch.cuda.max_memory_allocated() - start
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        _step(model, opt, batch, 0, autocast)
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    current = peak = 0
    for e in events:
        current += e.self_cpu_memory_usage
        peak = max(peak, current)
    return peak


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1, help="CPU threads (1: stable numbers on a shared machine)")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--patch", type=int, default=4)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="timed steps per variant and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast")
    p.add_argument("--checkpointing", action="store_true", help="activation checkpointing per block")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
    anchors = Anchors.from_taxonomy()

    gen = torch.Generator().manual_seed(0)
    r, b = args.image_size, args.batch
    batch = {
        "ref": torch.rand(b, 3, r, r, generator=gen) * 2 - 1,
        "tgt": torch.rand(b, 3, r, r, generator=gen) * 2 - 1,
        "mask": (torch.rand(b, 1, r, r, generator=gen) > 0.5).float(),
        "domain": torch.arange(b) % anchors.num_domains,
        "subcategory": torch.arange(b) * 7 % anchors.num_subcategories,
    }
    batch = {k: v.to(device) for k, v in batch.items()}
    tokens = b * 2 * (r // args.patch) ** 2

    built = {name: _build(name, args, anchors, device) for name in VARIANTS}
    for model, opt, _ in built.values():
        for i in range(2):  # warm-up; also creates the optimizer state
            _step(model, opt, batch, i, autocast)
    # CPU: process CPU time, which waiting for a core shared with other jobs does not inflate; GPU: wall time
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, (model, opt, _) in built.items():
            for i in range(args.steps):
                _sync(device)
                t0 = clock()
                _step(model, opt, batch, i, autocast)
                _sync(device)
                times[name].append(clock() - t0)

    rows = []
    for name, (model, opt, trainable) in built.items():
        peak = _state_bytes(model, opt) + _peak_step_bytes(model, opt, batch, device, autocast)
        step_s = statistics.median(times[name])
        rows.append({"variant": name, "trainable_params": trainable, "step_ms": step_s * 1e3,
                     "tokens_per_s": tokens / step_s, "peak_mib": peak / 2**20})
    base = rows[0]
    for row in rows:
        row["time_x"] = row["step_ms"] / base["step_ms"]
        row["memory_x"] = row["peak_mib"] / base["peak_mib"]

    print(f"device={device} threads={args.threads} dim={args.dim} depth={args.depth} heads={args.heads} "
          f"tokens/sample={2 * (r // args.patch) ** 2} batch={b} experts={args.experts} rank={args.rank} "
          f"top_k={args.top_k} bf16={args.bf16} steps={args.rounds}x{args.steps}")
    unit = "CPU ms" if device.type == "cpu" else "ms"
    print(f"| variant | trainable params | step ({unit}) | tokens/s | peak memory (MiB) | time vs backbone "
          "| memory vs backbone |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['variant']} | {row['trainable_params'] / 1e6:.2f} M | {row['step_ms']:.1f} | "
              f"{row['tokens_per_s']:.0f} | {row['peak_mib']:.1f} | {row['time_x']:.2f}x | {row['memory_x']:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
