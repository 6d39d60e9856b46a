"""The optimizer: AdamW, with the experts' moments in 8 bits when the backbone is FLUX.1-Fill.

Why 8 bits: MoT's 8 experts of rank 16 hold 4x the weights of one rank-32 LoRA (the same active rank), and with
fp32 AdamW every expert weight costs 16 bytes (weight, gradient, two moments) whether it was routed or not. On
the 11.9 B-parameter FLUX.1-Fill transformer that is 5.8 GiB against the LoRA's 1.45 GiB, which puts MoT ~18%
above a LoRA run. Block-wise 8-bit moments (torchao's ``AdamW8bit``, the bitsandbytes scheme:
one fp32 scale per 256 values) cut the moments from 8 to 2 bytes per weight, so an expert weight costs 10
bytes, and MoT stays within 1.10x of a LoRA run at any batch size (see BENCHMARKS.md). The master weights stay
fp32; tensors under 4096 values keep fp32 moments (torchao's own rule). On FLUX the router's gate and pooling
queries are above that and get 8-bit moments like the experts.

``optim.optimizer``: ``auto`` (8-bit for ``flux-fill``, plain AdamW for the small built-in editor, whose
weights are few), ``adamw`` or ``adamw8bit``. torchao compiles the 8-bit step with ``torch.compile``; on a CPU
the trainer runs it eagerly instead (the same arithmetic): there the first compile takes 15-60 s per process
and CPU runs are tests and smoke runs. The benchmarks compile it on a CPU too, to time what a GPU run does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

import torch

from unieditkit.training.config import ModelConfig, OptimConfig
from unieditkit.errors import UserError


def optimizer_kind(optim: OptimConfig, model: ModelConfig) -> str:
    """``optim.optimizer`` with ``auto`` resolved for the backbone."""
    if optim.optimizer != "auto":
        return optim.optimizer
    return "adamw8bit" if model.backbone == "flux-fill" else "adamw"


@cache
def _adamw8bit(compile_on_cpu: bool) -> type[torch.optim.Optimizer]:
    try:
        from torchao.optim import AdamW8bit
    except ImportError:
        raise UserError(
            "optim.optimizer adamw8bit needs torchao: pip install 'unieditkit[flux]' (or set optim.optimizer: adamw)"
        ) from None

    class AdamW8bitEagerOnCpu(AdamW8bit):
        def step(self, closure: Callable[[], Any] | None = None) -> Any:
            on_cpu = all(p.device.type == "cpu" for g in self.param_groups for p in g["params"])
            if compile_on_cpu or not on_cpu:
                return super().step(closure)
            with torch.compiler.set_stance("force_eager"):
                return super().step(closure)

    return AdamW8bitEagerOnCpu


def adamw(params: Iterable[torch.nn.Parameter], kind: str, lr: float, betas: tuple[float, float] = (0.9, 0.999),
          weight_decay: float = 0.0, compile_on_cpu: bool = False) -> torch.optim.Optimizer:
    """AdamW of ``kind`` (``adamw`` or ``adamw8bit``): the trainer and the benchmarks build it the same way.
    ``compile_on_cpu``: compile the 8-bit step on a CPU too, as it runs on a GPU (the benchmarks time that)."""
    cls = _adamw8bit(compile_on_cpu) if kind == "adamw8bit" else torch.optim.AdamW
    return cls(list(params), lr=lr, betas=betas, weight_decay=weight_decay)


def build_optimizer(params: Iterable[torch.nn.Parameter], optim: OptimConfig, model: ModelConfig) -> torch.optim.Optimizer:
    """The training run's optimizer over ``params`` (``optim.optimizer`` resolved, see the module doc)."""
    return adamw(params, optimizer_kind(optim, model), optim.lr, (optim.beta1, optim.beta2), optim.weight_decay)


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes a tensor really holds: a quantized optimizer state (a tensor subclass that reports fp32) counts
    its inner tensors (8-bit codes, scales, code book)."""
    if hasattr(t, "__tensor_flatten__"):
        names, _ = t.__tensor_flatten__()
        return sum(tensor_bytes(getattr(t, n)) for n in names)
    return t.numel() * t.element_size()


def optimizer_note(optim: OptimConfig, model: ModelConfig) -> str:
    """The run log's line on what ``auto`` chose, so a default never replaces a setting silently."""
    kind = optimizer_kind(optim, model)
    how = "AdamW with 8-bit block-wise moments (torchao), fp32 master weights" if kind == "adamw8bit" else "AdamW, fp32 moments"
    chosen = f"optim.optimizer {optim.optimizer} -> {kind}" if optim.optimizer == "auto" else f"optim.optimizer {kind}"
    return f"{chosen}: {how}"
