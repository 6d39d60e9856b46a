"""Mixture-of-Transformers layers: a frozen backbone ``nn.Linear`` plus K LoRA experts routed per sample.

A2-Edit splits attention as well as the FFN into experts, so the same layer type is applied to every linear of
both (by module-name patterns). The backbone (the *anchor* expert) is always active; each sample adds its top-k
assistant experts, weighted by the router. Routing is per sample, not per token: the router decides from the
sample's anchor (domain/subcategory) and its reference, so all tokens of one sample go through the same experts.

Only the experts a sample was routed to are computed (the expert weights are gathered per sample and applied
with two batched matmuls of rank ``k*r``), which keeps the cost close to a single LoRA of rank ``k*r`` instead
of ``K*r``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from unieditkit.errors import UserError


@dataclass(frozen=True)
class Routing:
    """The experts each sample of a batch uses: ``indices`` (B, k) long and ``weights`` (B, k) float.

    ``weights`` carries the router's gradient, so it must come from the same forward pass that uses it.
    """

    indices: torch.Tensor
    weights: torch.Tensor


class MoTLinear(nn.Module):
    """``y = base(x) + (alpha/r) * sum_j w[b, j] * (x A_e^T) B_e`` over the experts ``e = indices[b, j]``.

    ``lora_A`` is ``(K, r, in)`` and ``lora_B`` is ``(K, r, out)``, so a sample's gathered experts stack into
    contiguous ``(k*r, in)`` / ``(k*r, out)`` factors without a copy.

    ``lora_B`` starts at zero so a freshly wrapped model computes exactly what the backbone computed; that is
    what lets MoT be added to a pretrained model without disturbing it. Without a routing set (``routing is
    None``) the layer is the backbone alone.
    """

    def __init__(
        self, base: nn.Linear, num_experts: int, rank: int, alpha: float, freeze_base: bool = True,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if num_experts < 1 or rank < 1:
            raise UserError(f"model.num_experts ({num_experts}) and model.rank ({rank}) must be >= 1 for MoT")
        self.base = base
        self.num_experts = num_experts
        self.rank = rank
        self.scale = alpha / rank
        w = base.weight
        dtype = dtype or w.dtype  # fp32 experts beside a bf16 backbone: the optimizer updates fp32 master weights
        self.lora_A = nn.Parameter(torch.empty(num_experts, rank, base.in_features, dtype=dtype, device=w.device))
        self.lora_B = nn.Parameter(torch.zeros(num_experts, rank, base.out_features, dtype=dtype, device=w.device))
        for e in range(num_experts):
            nn.init.kaiming_uniform_(self.lora_A.data[e], a=math.sqrt(5))
        if freeze_base:
            base.requires_grad_(False)
        self.routing: Routing | None = None

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        routing = self.routing
        if routing is None:
            return out
        idx, w = routing.indices, routing.weights
        batch, k = idx.shape
        if x.shape[0] != batch:
            raise RuntimeError(f"MoTLinear: input batch {x.shape[0]} but routing was set for batch {batch}")
        kr = k * self.rank
        a = self.lora_A[idx].reshape(batch, kr, self.in_features).to(x.dtype)  # (B, k*r, in): stacked experts
        b = self.lora_B[idx].reshape(batch, kr, self.out_features)  # (B, k*r, out)
        gate = (w * self.scale).repeat_interleave(self.rank, dim=1)  # (B, k*r)
        b = b * gate[:, :, None].to(b.dtype)  # scale the small factor, not the (B, N, k*r) activations
        h = torch.bmm(x.reshape(batch, -1, self.in_features), a.transpose(1, 2))
        # out + h @ b as one kernel, without a (B, N, out) temporary. Not in place: a Linear's 3-D output is a
        # view, and an in-place op on a view makes autograd copy the whole gradient (measured: slower).
        return torch.baddbmm(out.reshape(batch, -1, self.out_features), h, b.to(h.dtype)).reshape(out.shape)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, experts={self.num_experts}, rank={self.rank}"


def apply_mot(
    model: nn.Module,
    patterns: Iterable[str],
    num_experts: int,
    rank: int,
    alpha: float,
    freeze_base: bool = True,
    dtype: torch.dtype | None = None,
) -> list[str]:
    """Replace every ``nn.Linear`` whose qualified name fully matches one of ``patterns`` by a ``MoTLinear``.

    Returns the replaced names (sorted). A pattern that matches no linear is an error rather than a silent no-op,
    because a typo there would train a model without experts in that place.
    """
    compiled = [(p, re.compile(p)) for p in patterns]
    if not compiled:
        raise UserError("model.mot_patterns is empty: give regexes for the attention and FFN linears")
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and not _inside_mot(model, n)]
    hits: dict[str, list[str]] = {p: [] for p, _ in compiled}
    chosen: list[str] = []
    for name, _ in linears:
        matched = [p for p, rx in compiled if rx.fullmatch(name)]
        for p in matched:
            hits[p].append(name)
        if matched:
            chosen.append(name)
    missing = [p for p, names in hits.items() if not names]
    if missing:
        raise UserError(
            f"model.mot_patterns: '{missing[0]}' matches no nn.Linear in {type(model).__name__} "
            f"(e.g. '{linears[0][0] if linears else '-'}'); fix the regex"
        )
    for name in chosen:
        parent, attr = _parent(model, name)
        setattr(parent, attr, MoTLinear(getattr(parent, attr), num_experts, rank, alpha, freeze_base, dtype))
    return sorted(chosen)


def mot_layers(model: nn.Module) -> list[MoTLinear]:
    """All MoT layers of ``model`` in module order."""
    return [m for m in model.modules() if isinstance(m, MoTLinear)]


def set_routing(layers: Iterable[MoTLinear], routing: Routing | None) -> None:
    """Give every MoT layer the batch's routing (``None``: backbone only).

    The routing stays set after the forward pass on purpose: activation checkpointing re-runs the layers during
    backward and must see the same experts.
    """
    for layer in layers:
        layer.routing = routing


def expert_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The LoRA expert weights of all MoT layers."""
    return [p for m in mot_layers(model) for p in (m.lora_A, m.lora_B)]


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    head, _, attr = name.rpartition(".")
    return (model.get_submodule(head) if head else model), attr


def _inside_mot(model: nn.Module, name: str) -> bool:
    """True for the ``base`` linear of an existing MoT layer, so applying MoT twice does not nest it."""
    head, _, attr = name.rpartition(".")
    return attr == "base" and isinstance(model.get_submodule(head) if head else model, MoTLinear)
