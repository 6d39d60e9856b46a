"""``unieditkit train --memory-plan``: the bytes MoT on FLUX.1-Fill holds per GPU for each ``model.backbone_quant``,
counted from the transformer's shapes, and which GPU classes that leaves room on under DDP and FSDP2.

Counted, not measured: ``FluxTransformer2DModel`` is built on the meta device from the FLUX.1-Fill-dev config (or
the ``model.pretrained`` snapshot's ``transformer/config.json``) and wrapped in ``FluxMoT`` exactly as training
wraps it, so no weights are needed and the count follows any change to the patterns, the expert count or the
router. Each tensor is then priced as the library that would hold it stores it:

* **backbone**: diffusers hands every ``nn.Linear`` of the transformer to the quantizer (torchao and bitsandbytes
  alike; FLUX has no ``modules_to_not_convert``), so only the biases, the RMSNorm weights of q/k and nothing else
  stay bf16. Per linear weight of ``n = out x in`` values: int8 ``n`` + an fp32 scale and an int8 zero point per
  row (torchao ``Int8Tensor``); fp8 ``n`` + an fp32 scale per row (``Float8Tensor``); nf4 ``n/2`` + one uint8
  absmax per block of 64, an fp32 absmax per 256 of those, and the two code books (bitsandbytes with double
  quantization); none: 2 bytes a value;
* **experts** and router: fp32 master weights; **gradients**: the same bytes again;
* **optimizer**: ``optim.optimizer`` resolved as training resolves it: AdamW's two fp32 moments, or torchao's
  ``AdamW8bit`` (uint8 codes, an fp32 scale per 256 values and a 256-entry code book per moment, fp32 moments for
  tensors under 4096 values). The step counters live on the host.

Per GPU: DDP keeps a whole replica plus its gradient buckets (a second copy of the gradients, since
``gradient_as_bucket_view`` is off); FSDP2 keeps ``1/N`` of everything plus the two blocks it has gathered (the one
running and the one prefetched) and the running block's full gradients, except that a quantized backbone is not
sharded (``distributed.wrap_model``: ``fully_shard`` cannot split torchao's or bitsandbytes' tensors), so there
every rank holds all of it and only experts, gradients and moments are divided. Not counted, and printed as such:
activations (measured on a GPU by ``bench/gpu_flux.py --quant``, which also holds the bf16 copy of one block's
weights a quantized backbone's backward keeps: 0.68 GB for a double-stream block), the CUDA context and allocator
slack. The
``tests/training/test_quant.py`` counts are checked against the bytes real torchao, bitsandbytes and optimizer
tensors hold on a tiny config.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from dataclasses import dataclass

import torch
from torch import nn

from unieditkit.training.config import BACKBONE_QUANTS, Config
from unieditkit.training.model.mot import MoTLinear
from unieditkit.training.runtime.optim import optimizer_kind

GB = 10**9
#: GPU classes as sold: 24, 40, 48 and 80 GB cards hold that many GiB
GPU_CLASSES_GIB = (24, 40, 48, 80)
FSDP_WORLD_SIZES = (2, 4, 8)
NF4_BLOCK, NF4_NESTED_BLOCK = 64, 256
ADAMW8BIT_BLOCK, ADAMW8BIT_MIN_NUMEL, QMAP_ENTRIES = 256, 4096, 256


def linear_weight_bytes(out_features: int, in_features: int, quant: str) -> int:
    """Bytes an ``out x in`` linear weight takes once ``quant`` stored it (see the module doc)."""
    n = out_features * in_features
    if quant == "none":
        return 2 * n
    if quant == "int8":
        return n + out_features * (4 + 1)
    if quant == "fp8":
        return n + out_features * 4
    if quant == "nf4":
        blocks = math.ceil(n / NF4_BLOCK)
        return math.ceil(n / 2) + blocks + 4 * math.ceil(blocks / NF4_NESTED_BLOCK) + 4 * (16 + 256 + 1)
    raise ValueError(f"unknown backbone quant {quant}")  # a programming error: the config checks the name


def adamw_state_bytes(numel: int, kind: str) -> int:
    """Bytes of the two moments AdamW of ``kind`` keeps for a parameter of ``numel`` values."""
    if kind == "adamw8bit" and numel >= ADAMW8BIT_MIN_NUMEL and numel % ADAMW8BIT_BLOCK == 0:
        return 2 * (numel + 4 * (numel // ADAMW8BIT_BLOCK) + 4 * QMAP_ENTRIES)
    return 2 * 4 * numel


@dataclass(frozen=True)
class StateBytes:
    """What one rank holds before any activation, for one ``model.backbone_quant``."""

    quant: str
    backbone: int
    experts: int
    gradients: int
    optimizer: int
    block: int  # the largest transformer block's backbone + expert bytes (FSDP2 gathers blocks whole)
    block_gradients: int

    @property
    def total(self) -> int:
        return self.backbone + self.experts + self.gradients + self.optimizer

    def ddp(self) -> int:
        return self.total + self.gradients

    def fsdp(self, world_size: int) -> int:
        if self.quant == "none":
            return math.ceil(self.total / world_size) + 2 * self.block + self.block_gradients
        trained = self.experts + self.gradients + self.optimizer
        return self.backbone + math.ceil(trained / world_size) + 3 * self.block_gradients


def transformer_config(cfg: Config) -> tuple[str, dict]:
    """The transformer's arguments: the ``model.pretrained`` snapshot's when it has them, else FLUX.1-Fill-dev's."""
    from unieditkit.training.backbones.flux.adapter import FLUX_FILL_DEV

    if cfg.model.pretrained:
        root = pathlib.Path(cfg.model.pretrained)
        for path in (root / "transformer" / "config.json", root / "config.json"):
            if path.is_file():
                data = json.loads(path.read_text(encoding="utf-8"))
                return str(path), {k: v for k, v in data.items() if not k.startswith("_")}
    return "FLUX.1-Fill-dev transformer/config.json", FLUX_FILL_DEV


def meta_model(cfg: Config, config: dict) -> nn.Module:
    """``FluxMoT`` on the meta device: every shape training would allocate, no memory."""
    from unieditkit.training.model.anchors import Anchors
    from unieditkit.training.backbones.flux.adapter import FluxMoT, require_diffusers

    m = cfg.model
    with torch.device("meta"):
        transformer = require_diffusers().FluxTransformer2DModel(**config)
        return FluxMoT(transformer, Anchors.from_taxonomy(m.taxonomy), num_experts=m.num_experts, rank=m.rank,
                       alpha=m.alpha, top_k=m.top_k, prior_scale=m.prior_scale, patterns=m.mot_patterns or None,
                       anchor_floor=m.anchor_floor, routing=m.routing)


def backbone_bytes(module: nn.Module, quant: str) -> int:
    """The frozen backbone tensors of ``module`` (experts excluded) as ``quant`` stores them."""
    total = 0
    for sub in module.modules():
        own = dict(sub.named_parameters(recurse=False))
        if isinstance(sub, nn.Linear):
            total += linear_weight_bytes(sub.out_features, sub.in_features, quant)
            own.pop("weight")
        if isinstance(sub, MoTLinear):
            own = {}
        total += sum(2 * p.numel() for p in own.values())
        total += sum(2 * b.numel() for b in sub.buffers(recurse=False))
    return total


def flux_optimizer(cfg: Config) -> str:
    """``optim.optimizer`` as a flux-fill run resolves it, whichever backbone the config names."""
    return optimizer_kind(cfg.optim, dataclasses.replace(cfg.model, backbone="flux-fill"))


def count_model(model: nn.Module, quant: str, optimizer: str) -> StateBytes:
    """Counted bytes for ``quant`` and ``optimizer`` on a built (meta or real) ``FluxMoT``."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    numel = sum(p.numel() for p in trainable)
    blocks = [*model.transformer.transformer_blocks, *model.transformer.single_transformer_blocks]
    biggest = max(blocks, key=lambda b: sum(p.numel() for p in b.parameters()))
    block_trainable = sum(p.numel() for p in biggest.parameters() if p.requires_grad)
    return StateBytes(
        quant=quant,
        backbone=backbone_bytes(model.transformer, quant),
        experts=4 * numel,
        gradients=4 * numel,
        optimizer=sum(adamw_state_bytes(p.numel(), optimizer) for p in trainable),
        block=backbone_bytes(biggest, quant) + 4 * block_trainable,
        block_gradients=4 * block_trainable,
    )


def _gb(n: int) -> str:
    return f"{n / GB:.2f}"


def plan_lines(cfg: Config) -> list[str]:
    """The ``--memory-plan`` report: counted state per quant, then the room it leaves on each GPU class."""
    source, config = transformer_config(cfg)
    model = meta_model(cfg, config)
    kind = flux_optimizer(cfg)
    rows = [count_model(model, q, kind) for q in BACKBONE_QUANTS]
    backbone_params = sum(p.numel() for p in model.transformer.parameters() if not p.requires_grad)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    m = cfg.model
    lines = [
        f"memory plan, counted from shapes (meta device), GB = 10^9 bytes: {source}, {backbone_params / 1e9:.2f} B "
        f"backbone parameters; {m.num_experts} experts of rank {m.rank} and the router: {trainable / 1e6:.1f} M fp32 "
        f"weights; optimizer {kind}",
        f"{'backbone_quant':<15}{'backbone':>9}{'experts':>9}{'grads':>9}{'optim':>9}{'total':>9}  activation peak",
    ]
    for r in rows:
        lines.append(f"{r.quant:<15}{_gb(r.backbone):>9}{_gb(r.experts):>9}{_gb(r.gradients):>9}"
                     f"{_gb(r.optimizer):>9}{_gb(r.total):>9}  not measured (bench/gpu_flux.py --quant {r.quant} "
                     "measures it on a GPU)")
    cards = "".join(f"{f'{c} GB':>9}" for c in GPU_CLASSES_GIB)
    lines += ["", "per GPU: counted state, then GB left on each card for activations, CUDA context and allocator "
              "(none counted; a card holds its size in GiB); FSDP2 shards a quantized backbone's experts and "
              "optimizer, not the backbone itself",
              f"{'strategy':<12}{'quant':<7}{'per GPU':>9}{cards}"]
    strategies = [("ddp", StateBytes.ddp)] + [(f"fsdp2 x{n}", lambda r, n=n: r.fsdp(n)) for n in FSDP_WORLD_SIZES]
    for name, per_gpu in strategies:
        for r in rows:
            need = per_gpu(r)
            room = "".join(f"{_gb(c * 2**30 - need):>9}" if c * 2**30 > need else f"{'no':>9}"
                           for c in GPU_CLASSES_GIB)
            lines.append(f"{name:<12}{r.quant:<7}{_gb(need):>9}{room}")
    return lines
