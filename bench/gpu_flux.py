"""Full-size FLUX.1-Fill MoT training step: step time, tokens/s and peak memory (random weights, bf16, one GPU).

    python bench/gpu_flux.py                         # FLUX.1-Fill-dev transformer, 1024x512 diptych, checkpointing
    python bench/gpu_flux.py --baseline --json out.json   # also one plain LoRA of rank 32: default and like-for-like
    python bench/gpu_flux.py --tiny --device cpu     # the same code path on a shrunken config: a check, not a number

What is timed is what a MoT fine-tuning step on FLUX.1-Fill costs the GPU: the frozen 11.9 B-parameter
transformer in bf16 (diffusers ``FluxTransformer2DModel`` with the FLUX.1-Fill-dev config, random weights: the
cost does not depend on the values), ``unieditkit.training.backbones.flux.adapter.FluxMoT`` with 8 LoRA experts of rank 16, top-2,
in fp32 master weights, the Anchor-Guided Router, gradient checkpointing per block, bf16 autocast, a flow-matching
MSE on the target half plus the balance loss, backward and an AdamW step over experts and router (8-bit moments,
as ``unieditkit train`` does for FLUX; ``--mot-optimizer adamw`` for fp32 moments).

``--baseline`` times four variants and compares them in pairs. The *default* pair is each method as it is
usually run: ``mot`` (8-bit moments, the trainer's default) against ``lora-r32`` (fp32 AdamW, the diffusers FLUX
LoRA scripts' default); it mixes the cost of MoT with that of the optimizer. The *like-for-like* pairs give both
the same optimizer: ``mot-adamw`` against ``lora-r32`` (fp32 AdamW) and ``mot`` against ``lora-r32-8bit`` (8-bit
AdamW), so the ratio is MoT's alone.

Inputs are random tensors of the shapes the FLUX.1-Fill pipeline feeds: a 1024x512 (WxH) [reference | target] diptych is
a 128x64 VAE latent, packed 2x2 into 64x32 = 2048 image tokens of 384 channels (noisy latents 64 + masked-image
latents 64 + packed mask 256), plus 512 T5 tokens (4096 wide) and the pooled CLIP vector (768). VAE and text
encoders are not run (a training run caches their outputs; see docs/TRAINING.md).

Peak memory is ``torch.cuda.max_memory_allocated`` over the timed steps, weights included. tokens/s counts the
joint sequence (image + text tokens) of every sample in the batch.

``--quant none,int8,fp8,nf4`` times MoT with the frozen backbone loaded as ``model.backbone_quant`` loads it
(``unieditkit.training.backbones.flux.adapter.load_flux_fill_transformer``, diffusers' ``quantization_config``): the random transformer
is saved once as a snapshot under ``--scratch`` (23.8 GB of disk for the full size) and loaded once per choice,
``none`` (bf16) included, so every row takes the same path. Each row gives the state held before a step
(``memory_allocated`` after the warm-up: weights, experts, optimizer state), the peak, their difference (the
activation peak, with the gradients a step holds), and ``unieditkit.training.backbones.flux.memory``'s counted bytes beside them.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unieditkit.training.model.anchors import Anchors  # noqa: E402
from unieditkit.training.config import BACKBONE_QUANTS  # noqa: E402
from unieditkit.training.backbones.flux.adapter import (  # noqa: E402
    FLUX_FILL_DEV, FLUX_MOT_PATTERNS, FluxMoT, load_flux_fill_transformer, quantization_config,
)
from unieditkit.training.backbones.flux.memory import count_model  # noqa: E402
from unieditkit.training.model.mot import expert_parameters  # noqa: E402
from unieditkit.training.runtime.optim import adamw  # noqa: E402
from unieditkit.errors import UserError  # noqa: E402

TINY = FLUX_FILL_DEV | dict(  # the Fill input layout, everything else shrunk: runs on a CPU in seconds
    num_layers=1, num_single_layers=2, attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
    pooled_projection_dim=32, axes_dims_rope=(4, 6, 6),
)

Step = Callable[[int], torch.Tensor]


def build_transformer(config: dict, dtype: torch.dtype, device: torch.device, seed: int = 0) -> nn.Module:
    """A randomly initialised FluxTransformer2DModel built directly in ``dtype`` on ``device`` (a full-size
    one in fp32 would need 48 GB before the cast)."""
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(seed)
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = FluxTransformer2DModel(**config)
    finally:
        torch.set_default_dtype(before)
    return model.requires_grad_(False)


def diptych_inputs(config: dict, batch: int, width: int, height: int, text_tokens: int, dtype: torch.dtype,
                   device: torch.device, seed: int = 0) -> dict:
    """Random inputs in the shapes FluxFillPipeline gives the transformer for a ``width`` x ``height`` diptych.

    ``ref_index`` / ``tgt_index`` are the packed tokens of the left (reference) and right (target) halves.
    """
    gen = torch.Generator().manual_seed(seed)
    rows, cols = height // 16, width // 16  # VAE /8, then 2x2 packing
    img_ids = torch.zeros(rows, cols, 3)
    img_ids[..., 1] = torch.arange(rows)[:, None]
    img_ids[..., 2] = torch.arange(cols)[None, :]
    left = (torch.arange(cols) < cols // 2).expand(rows, cols).flatten()
    n = rows * cols

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)

    return {
        "hidden_states": rand(batch, n, config["in_channels"]),
        "encoder_hidden_states": rand(batch, text_tokens, config["joint_attention_dim"]),
        "pooled_projections": rand(batch, config["pooled_projection_dim"]),
        "timestep": torch.rand(batch, generator=gen).to(device=device, dtype=dtype),
        "guidance": torch.full((batch,), 30.0, device=device, dtype=dtype),
        "img_ids": img_ids.reshape(n, 3).to(device=device, dtype=dtype),
        "txt_ids": torch.zeros(text_tokens, 3, device=device, dtype=dtype),
        "target": rand(batch, n, config["out_channels"]),
        "ref_index": left.nonzero().flatten().to(device),
        "tgt_index": (~left).nonzero().flatten().to(device),
        "domain": torch.arange(batch, device=device) % 8,
        "subcategory": torch.arange(batch, device=device) * 27 % 209,
    }


FLUX_KEYS = ("hidden_states", "encoder_hidden_states", "pooled_projections", "timestep", "guidance", "img_ids",
             "txt_ids")


def flux_loss(pred: torch.Tensor, inputs: dict) -> torch.Tensor:
    """Flow-matching MSE on the target half only (the reference half is context, as in training)."""
    idx = inputs["tgt_index"]
    return F.mse_loss(pred[:, idx].float(), inputs["target"][:, idx].float())


def mot_step(transformer: nn.Module, inputs: dict, autocast: AbstractContextManager, experts: int = 8,
             rank: int = 16, top_k: int = 2, balance_coef: float = 0.01,
             optimizer: str = "adamw8bit", compile_on_cpu: bool = True) -> tuple[nn.Module, torch.optim.Optimizer, Step]:
    """Wrap ``transformer`` in FluxMoT with fp32 experts and router; returns the model, its optimizer (by default
    the one ``unieditkit train`` uses for FLUX: AdamW with 8-bit moments) and a step."""
    model = FluxMoT(transformer, Anchors.from_taxonomy(), num_experts=experts, rank=rank, alpha=float(rank),
                    top_k=top_k)
    for p in [*expert_parameters(transformer), *model.router.parameters()]:
        p.data = p.data.float()  # fp32 master weights; the frozen backbone stays in its own dtype
    params = [p for p in model.parameters() if p.requires_grad]
    opt = adamw(params, optimizer, lr=1e-4, compile_on_cpu=compile_on_cpu)
    flux_kwargs = {k: inputs[k] for k in FLUX_KEYS}
    ref_tokens = inputs["hidden_states"][:, inputs["ref_index"]]

    def step(_: int) -> torch.Tensor:
        with autocast:
            (pred,), routed = model(domain=inputs["domain"], subcategory=inputs["subcategory"],
                                    ref_tokens=ref_tokens, return_dict=False, **flux_kwargs)
            loss = flux_loss(pred, inputs) + balance_coef * routed.balance_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    return model.train(), opt, step


def lora_step(transformer: nn.Module, inputs: dict, autocast: AbstractContextManager,
              rank: int = 32, optimizer: str = "adamw", compile_on_cpu: bool = True) -> tuple[nn.Module, torch.optim.Optimizer, Step]:
    """One plain LoRA of ``rank`` on the linears MoT would route, made by peft through diffusers' ``add_adapter``
    (the FLUX LoRA training scripts' way, whose default optimizer is fp32 AdamW), fp32 adapter weights; returns
    the model, its optimizer and a step."""
    from peft import LoraConfig

    target = "|".join(f"(?:{p})" for p in FLUX_MOT_PATTERNS)  # peft fullmatches a string against module names
    transformer.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=target, init_lora_weights="gaussian"))
    params = [p for p in transformer.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    opt = adamw(params, optimizer, lr=1e-4, compile_on_cpu=compile_on_cpu)
    flux_kwargs = {k: inputs[k] for k in FLUX_KEYS}

    def step(_: int) -> torch.Tensor:
        with autocast:
            (pred,) = transformer(return_dict=False, **flux_kwargs)
            loss = flux_loss(pred, inputs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    return transformer.train(), opt, step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def variant_name(kind: str, optimizer: str, lora_rank: int, quant: str | None = None) -> str:
    """``mot`` / ``lora-rR`` with each one's usual optimizer (8-bit / fp32 AdamW), suffixed when it has the other;
    ``mot-QUANT`` for a backbone loaded with ``--quant`` (``mot-bf16`` for none)."""
    if kind == "mot":
        name = "mot" if optimizer == "adamw8bit" else "mot-adamw"
        return name if quant is None else f"{name}-{'bf16' if quant == 'none' else quant}"
    return f"lora-r{lora_rank}" + ("-8bit" if optimizer == "adamw8bit" else "")


def write_snapshot(config: dict, device: torch.device, folder: Path) -> Path:
    """A random bf16 transformer saved where ``load_flux_fill_transformer`` reads one (``--quant`` rows load it)."""
    transformer = build_transformer(config, torch.bfloat16, device)
    transformer.save_pretrained(folder)
    del transformer
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return folder


def run_variant(kind: str, optimizer: str, args: argparse.Namespace, config: dict, device: torch.device,
                quant: str | None = None, snapshot: Path | None = None) -> dict:
    """Build one variant (``mot`` or ``lora``, with ``optimizer``) from scratch, or with ``quant`` load the backbone
    from ``snapshot`` as training would, time ``args.steps`` steps after ``args.warmup``, and free it again."""
    dtype = torch.bfloat16
    if quant is None:
        transformer = build_transformer(config, dtype, device)
    else:
        transformer = load_flux_fill_transformer(snapshot, dtype, device, quant).requires_grad_(False)
    backbone_params = sum(p.numel() for p in transformer.parameters())
    if not args.no_checkpointing:
        transformer.enable_gradient_checkpointing()
    inputs = diptych_inputs(config, args.batch, args.width, args.height, args.text_tokens, dtype, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)
    if kind == "mot":
        model, opt, step = mot_step(transformer, inputs, autocast, args.experts, args.rank, args.top_k,
                                    optimizer=optimizer, compile_on_cpu=not args.eager)
    else:
        model, opt, step = lora_step(transformer, inputs, autocast, args.rank * args.top_k, optimizer,
                                     compile_on_cpu=not args.eager)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    router = sum(p.numel() for p in model.router.parameters()) if kind == "mot" else 0
    counted = count_model(model, quant, optimizer) if kind == "mot" and quant is not None else None
    losses = [float(step(i)) for i in range(args.warmup)]
    state = torch.cuda.memory_allocated() / 2**30 if device.type == "cuda" else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(args.steps):
        _sync(device)
        t0 = time.perf_counter()
        losses.append(float(step(args.warmup + i)))
        _sync(device)
        times.append(time.perf_counter() - t0)
    name = variant_name(kind, optimizer, args.rank * args.top_k, quant)
    if not all(map(math.isfinite, losses)):
        raise RuntimeError(f"{name}: non-finite loss {losses}")
    image_tokens = inputs["hidden_states"].shape[1]
    step_s = statistics.median(times)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    del model, opt, step, transformer, inputs
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "variant": name, "optimizer": optimizer, "backbone_params": backbone_params,
        "trainable_params": trainable, "router_params": router, "image_tokens": image_tokens, "step_s_median": step_s,
        "step_s_min": min(times), "tokens_per_s": args.batch * (image_tokens + args.text_tokens) / step_s,
        "peak_gib": peak, "losses": losses, "quant": quant, "state_gib": state,
        "activation_peak_gib": peak - state if peak is not None else None,
        "counted_state_gib": None if counted is None else (counted.total - counted.gradients) / 2**30,
    }


#: ``--baseline``: (kind, optimizer) of the four variants, timed in this order
PAIRS_PLAN = [("lora", "adamw"), ("mot", "adamw8bit"), ("lora", "adamw8bit"), ("mot", "adamw")]


def compare(rows: list[dict], lora_rank: int) -> list[dict]:
    """MoT over the LoRA: the default pair (each with its usual optimizer), then the two like-for-like pairs."""
    by = {r["variant"]: r for r in rows}
    lora = f"lora-r{lora_rank}"
    pairs = [("default", "mot", lora), ("like-for-like", "mot-adamw", lora),
             ("like-for-like", "mot", f"{lora}-8bit")]
    out = []
    for kind, mot, base in pairs:
        m, b = by[mot], by[base]
        memory = m["peak_gib"] / b["peak_gib"] if m["peak_gib"] is not None else None
        out.append({"pair": kind, "mot": mot, "lora": base, "mot_optimizer": m["optimizer"],
                    "lora_optimizer": b["optimizer"], "time_x": m["step_s_median"] / b["step_s_median"],
                    "memory_x": memory})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--tiny", action="store_true", help="shrunken FLUX config (checks the code path on a CPU)")
    p.add_argument("--baseline", action="store_true",
                   help="also one plain LoRA of rank experts-rank x top-k: MoT against it with each one's usual "
                        "optimizer (default pair) and with the same one (like-for-like pairs)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--width", type=int, default=1024, help="diptych width in pixels (reference | target)")
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--text-tokens", type=int, default=512, help="T5 sequence length (FLUX.1-dev: 512)")
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--mot-optimizer", default="adamw8bit", choices=["adamw8bit", "adamw"],
                   help="MoT's optimizer without --baseline (unieditkit train's FLUX default: adamw8bit)")
    p.add_argument("--eager", action="store_true",
                   help="on a CPU, run the 8-bit optimizer step eagerly (as the trainer does there) instead of compiling it")
    p.add_argument("--no-checkpointing", action="store_true", help="keep all activations (more memory)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--quant", help="comma list of model.backbone_quant choices (none,int8,fp8,nf4): MoT with the "
                                   "backbone loaded quantized, one row each")
    p.add_argument("--scratch", type=Path, help="--quant: folder for the random snapshot (default: a temporary one)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    quants = [q.strip() for q in args.quant.split(",") if q.strip()] if args.quant else []
    bad = [q for q in quants if q not in BACKBONE_QUANTS]
    if bad or (args.quant is not None and not quants):
        print(f"error: --quant {args.quant}: use a comma list of {', '.join(BACKBONE_QUANTS)}", file=sys.stderr)
        return 2
    if quants and args.baseline:
        print("error: pass --quant or --baseline, not both (the LoRA baseline rows are bf16)", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here; run on a GPU machine, or check the code path with --tiny --device cpu",
              file=sys.stderr)
        return 2
    if device.type == "cpu":
        torch.set_num_threads(1)  # a code-path check; extra threads only contend on a shared machine
    config = TINY if args.tiny else FLUX_FILL_DEV
    try:
        for quant in quants:  # a choice this machine cannot load stops here, before anything is built
            quantization_config(quant, device)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if quants:
        with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
            snapshot = write_snapshot(config, device, Path(scratch))
            rows = [run_variant("mot", args.mot_optimizer, args, config, device, q, snapshot) for q in quants]
    else:
        plan = PAIRS_PLAN if args.baseline else [("mot", args.mot_optimizer)]
        rows = [run_variant(kind, optimizer, args, config, device) for kind, optimizer in plan]
    result = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "config": "tiny" if args.tiny else "FLUX.1-Fill-dev", "batch": args.batch,
        "diptych": f"{args.width}x{args.height}", "text_tokens": args.text_tokens,
        "gradient_checkpointing": not args.no_checkpointing, "experts": args.experts, "rank": args.rank,
        "top_k": args.top_k, "steps": args.steps, "torch": torch.__version__, "rows": rows,
        "comparisons": compare(rows, args.rank * args.top_k) if args.baseline else [],
    }
    print(json.dumps(result | {"rows": [{k: v for k, v in r.items() if k != "losses"} for r in rows]}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
