"""MoT cost: train-step time, tokens/s and peak memory against a baseline, side by side in one run.

    python bench/bench_mot.py                         # FLUX-shaped backbone: MoT vs one plain LoRA of rank 32
    python bench/bench_mot.py --dim 1024 --heads 16   # wider (MoT's extra optimizer state weighs less)
    python bench/bench_mot.py --backbone builtin      # the built-in editor: MoT vs the backbone alone

``--backbone flux`` (the paper's setting): one frozen diffusers ``FluxTransformer2DModel`` with the FLUX.1-Fill
input layout (384 input channels, 64 output, guidance embedding) shrunk to fit a CPU (``--dim``, ``--double``,
``--single``), and a [reference | target] diptych of ``--width`` x ``--height`` pixels in latent tokens. Two
copies of it (same seed) train side by side:

* ``lora-r32``   one plain LoRA of rank 32 on the same linears MoT uses, made by peft through diffusers'
  ``add_adapter`` (what diffusers' FLUX LoRA training scripts and Insert Anything do);
* ``mot``        ``unieditkit.training.backbones.flux.adapter.FluxMoT``: 8 LoRA experts of rank 16, top-2 (the same active rank
  2 x 16 = 32 per sample), the Anchor-Guided Router and its balance loss, with the optimizer ``unieditkit train``
  gives it on FLUX: AdamW with 8-bit block-wise moments (``training/runtime/optim.py``);
* ``mot-adamw``  the same with fp32 AdamW moments;
* ``lora-r32-8bit`` the LoRA with 8-bit moments too (what the same saving gives the baseline).

All train their adapter (and router) as fp32 master weights on the flow-matching MSE of the target half.

``--backbone builtin``: the built-in editor, three variants: ``backbone`` (no experts, every weight trained),
``mot`` (8 experts rank 16 top-2, every weight trained), ``mot-frozen`` (experts on a frozen backbone).

Timing: the variants run in interleaved rounds (so load from other processes hits all of them alike) and the
median step counts. On CPU the step time is the process's CPU time, which waiting for a core shared with other
jobs does not inflate; on GPU it is wall time after a synchronize. Peak memory = persistent state (weights,
buffers, optimizer state) + the largest extra allocation during one training step (activations, gradients):
``torch.cuda.max_memory_allocated`` on GPU, the profiler's allocation events on CPU. Ratios are against the
first variant; the targets are <= 1.10x time and <= 1.10x memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # gpu_flux, when imported rather than run

from gpu_flux import FLUX_FILL_DEV, build_transformer, diptych_inputs, lora_step, mot_step  # noqa: E402
from unieditkit.training.model.anchors import Anchors  # noqa: E402
from unieditkit.training.config import ModelConfig  # noqa: E402
from unieditkit.training.backbones.builtin.editor import Editor  # noqa: E402
from unieditkit.training.backbones.builtin.flow import flow_loss  # noqa: E402
from unieditkit.training.runtime.optim import tensor_bytes  # noqa: E402

Step = Callable[[int], torch.Tensor]
Built = tuple[torch.nn.Module, torch.optim.Optimizer, Step]


def _state_bytes(model: torch.nn.Module, opt: torch.optim.Optimizer) -> int:
    tensors = list(model.parameters()) + list(model.buffers())
    tensors += [t for s in opt.state.values() for t in s.values() if torch.is_tensor(t)]
    return sum(map(tensor_bytes, tensors))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_step_bytes(step: Step, device: torch.device) -> int:
    """Largest allocation above the step's starting point during one training step."""
    if device.type == "cuda":
        _sync(device)
        start = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step(0)
        _sync(device)
        return torch.cuda.max_memory_allocated() - start
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(0)
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    current = peak = 0
    for e in events:
        current += e.self_cpu_memory_usage
        peak = max(peak, current)
    return peak


# ---- FLUX-shaped backbone: MoT vs one LoRA of the same active rank -------------------------------------------


def flux_config(args: argparse.Namespace) -> dict:
    """FLUX.1-Fill's layout with a CPU-sized width and depth; rope axes keep FLUX's 16:56:56 split."""
    head = args.dim // args.heads
    rope_hw = (head - head // 8) // 4 * 2  # each rope axis must be even
    return FLUX_FILL_DEV | dict(
        num_layers=args.double, num_single_layers=args.single, num_attention_heads=args.heads,
        attention_head_dim=head, joint_attention_dim=args.dim, pooled_projection_dim=args.dim // 2,
        axes_dims_rope=(head - 2 * rope_hw, rope_hw, rope_hw),
    )


def _variant(kind: str, optimizer: str, config: dict, inputs: dict, args, device, dtype, autocast) -> Built:
    transformer = build_transformer(config, dtype, device)
    if args.checkpointing:
        transformer.enable_gradient_checkpointing()
    if kind == "mot":
        return mot_step(transformer, inputs, autocast, args.experts, args.rank, args.top_k, optimizer=optimizer,
                        compile_on_cpu=not args.eager)
    return lora_step(transformer, inputs, autocast, args.rank * args.top_k, optimizer=optimizer,
                     compile_on_cpu=not args.eager)


# (name, adapter, optimizer): the baseline first (the ratios are against it)
FLUX_VARIANTS = [
    ("lora-r{r}", "lora", "adamw"),
    ("mot", "mot", "adamw8bit"),
    ("mot-adamw", "mot", "adamw"),
    ("lora-r{r}-8bit", "lora", "adamw8bit"),
]


def build_flux(args: argparse.Namespace, device: torch.device) -> tuple[dict[str, Built], int, str]:
    config = flux_config(args)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
    inputs = diptych_inputs(config, args.batch, args.width, args.height, args.text_tokens, dtype, device)
    built = {name.format(r=args.rank * args.top_k): _variant(kind, optimizer, config, inputs, args, device, dtype,
                                                            autocast)
             for name, kind, optimizer in FLUX_VARIANTS}
    image_tokens = inputs["hidden_states"].shape[1]
    tokens = args.batch * (image_tokens + args.text_tokens)
    shape = (f"FluxTransformer2DModel dim={args.dim} heads={args.heads} double={args.double} single={args.single} "
             f"diptych={args.width}x{args.height} image_tokens={image_tokens} text_tokens={args.text_tokens}")
    return built, tokens, shape


# ---- the built-in editor: MoT vs the backbone alone --------------------------------------------------------------

BUILTIN_VARIANTS = {
    "backbone": dict(experts=False, train_backbone=True),
    "mot": dict(experts=True, train_backbone=True),
    "mot-frozen": dict(experts=True, train_backbone=False),
}


def build_builtin(args: argparse.Namespace, device: torch.device) -> tuple[dict[str, Built], int, str]:
    anchors = Anchors.from_taxonomy()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
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
    built = {}
    for name, spec in BUILTIN_VARIANTS.items():
        cfg = ModelConfig(
            image_size=r, patch_size=args.patch, dim=args.dim, depth=args.depth, heads=args.heads,
            num_experts=args.experts if spec["experts"] else 0, rank=args.rank, alpha=args.rank, top_k=args.top_k,
            train_backbone=True, gradient_checkpointing=args.checkpointing,
        )
        torch.manual_seed(0)
        model = Editor(cfg, anchors)
        model.set_backbone_trainable(spec["train_backbone"])
        model.to(device).train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

        def step(i: int, model=model, opt=opt) -> torch.Tensor:
            with autocast:
                loss = flow_loss(model, batch, torch.Generator().manual_seed(i), "logit_normal", 0.01).total
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss.detach()

        built[name] = (model, opt, step)
    tokens_per_sample = 2 * (r // args.patch) ** 2
    shape = f"built-in editor dim={args.dim} depth={args.depth} heads={args.heads} tokens/sample={tokens_per_sample}"
    return built, b * tokens_per_sample, shape


# ---- measurement ---------------------------------------------------------------------------------------------------


def measure(built: dict[str, Built], tokens: int, device: torch.device, rounds: int, steps: int) -> list[dict]:
    for _, _, step in built.values():
        for i in range(2):  # warm-up; also creates the optimizer state
            step(i)
    # CPU: process CPU time, which waiting for a core shared with other jobs does not inflate; GPU: wall time
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    times: dict[str, list[float]] = {name: [] for name in built}
    losses: dict[str, list[float]] = {name: [] for name in built}
    for _ in range(rounds):
        for name, (_, _, step) in built.items():
            for i in range(steps):
                _sync(device)
                t0 = clock()
                loss = step(i)
                _sync(device)
                times[name].append(clock() - t0)
                losses[name].append(float(loss))
    rows = []
    for name, (model, opt, step) in built.items():
        if not all(map(torch.isfinite, torch.tensor(losses[name]))):
            raise RuntimeError(f"{name}: non-finite loss {losses[name]}")
        state = _state_bytes(model, opt)
        peak = state + _peak_step_bytes(step, device)
        step_s = statistics.median(times[name])
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        rows.append({"variant": name, "trainable_params": trainable, "step_ms": step_s * 1e3,
                     "step_ms_min": min(times[name]) * 1e3, "tokens_per_s": tokens / step_s,
                     "state_mib": state / 2**20, "peak_mib": peak / 2**20})
    base = rows[0]
    for row in rows:
        row["time_x"] = row["step_ms"] / base["step_ms"]
        row["memory_x"] = row["peak_mib"] / base["peak_mib"]
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="flux", choices=["flux", "builtin"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1, help="CPU threads (1: stable numbers on a shared machine)")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--rank", type=int, default=16, help="expert rank; the LoRA baseline gets rank * top_k")
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="timed steps per variant and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--bf16", action="store_true", help="bf16 backbone and autocast (fp32 adapters)")
    p.add_argument("--checkpointing", action="store_true", help="activation checkpointing per block")
    p.add_argument("--eager", action="store_true", help="run the 8-bit optimizer step eagerly (as the trainer does on "
                   "a CPU); default: compiled, as on a GPU, which is what the ratios should reflect")
    p.add_argument("--json", type=Path, help="also write the results here")
    flux = p.add_argument_group("--backbone flux")
    flux.add_argument("--double", type=int, default=2, help="double-stream blocks (FLUX.1: 19)")
    flux.add_argument("--single", type=int, default=4, help="single-stream blocks (FLUX.1: 38)")
    flux.add_argument("--width", type=int, default=512, help="diptych width in pixels (16 px per latent token)")
    flux.add_argument("--height", type=int, default=256)
    flux.add_argument("--text-tokens", type=int, default=64)
    builtin = p.add_argument_group("--backbone builtin")
    builtin.add_argument("--depth", type=int, default=4)
    builtin.add_argument("--image-size", type=int, default=64)
    builtin.add_argument("--patch", type=int, default=4)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    build = build_flux if args.backbone == "flux" else build_builtin
    built, tokens, shape = build(args, device)
    rows = measure(built, tokens, device, args.rounds, args.steps)

    print(f"{shape} batch={args.batch} experts={args.experts} rank={args.rank} top_k={args.top_k} "
          f"bf16={args.bf16} checkpointing={args.checkpointing} device={device} threads={args.threads} "
          f"steps={args.rounds}x{args.steps} torch={torch.__version__}")
    unit = "CPU ms" if device.type == "cpu" else "ms"
    print(f"| variant | trainable params | step ({unit}) | tokens/s | state (MiB) | peak memory (MiB) "
          f"| time vs {rows[0]['variant']} | memory vs {rows[0]['variant']} |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['variant']} | {row['trainable_params'] / 1e6:.2f} M | {row['step_ms']:.1f} | "
              f"{row['tokens_per_s']:.0f} | {row['state_mib']:.1f} | {row['peak_mib']:.1f} | {row['time_x']:.3f}x | "
              f"{row['memory_x']:.3f}x |")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "shape": shape,
                                         "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
