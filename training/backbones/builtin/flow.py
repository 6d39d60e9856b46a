"""Rectified flow (flow matching): ``x_t = (1 - t) x0 + t * noise``, the model predicts ``v = noise - x0``.

Only the target half of the diptych is noised and supervised; the reference is always clean context. All
randomness comes from an explicit ``torch.Generator`` so a step's noise is a function of (seed, rank, step) and a
resumed run draws exactly what an uninterrupted one would have.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unieditkit.training.backbones.builtin.editor import Editor, EditorOutput


@dataclass
class LossParts:
    total: torch.Tensor
    flow: torch.Tensor
    balance: torch.Tensor
    expert_load: torch.Tensor | None


def sample_t(n: int, mode: str, generator: torch.Generator) -> torch.Tensor:
    """Training times in (0, 1): logit-normal (SD3; more weight on the middle) or uniform."""
    if mode == "uniform":
        return torch.rand(n, generator=generator)
    return torch.sigmoid(torch.randn(n, generator=generator))


def masked_target(tgt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The condition image: the target with the edit region set to 0 (mid grey in [-1, 1])."""
    return tgt * (1.0 - mask)


def flow_loss(
    editor: torch.nn.Module,
    batch: dict,
    generator: torch.Generator,
    t_sampling: str,
    balance_coef: float,
) -> LossParts:
    """MSE between predicted and true velocity on the target, plus the router's load-balance loss."""
    tgt, mask = batch["tgt"], batch["mask"]
    n = tgt.shape[0]
    noise = torch.randn(tgt.shape, generator=generator).to(tgt.device)
    t = sample_t(n, t_sampling, generator).to(tgt.device)
    tb = t[:, None, None, None]
    x_t = (1.0 - tb) * tgt + tb * noise
    out: EditorOutput = editor(
        x_t, t, batch["ref"], masked_target(tgt, mask), mask, batch["domain"], batch["subcategory"]
    )
    flow = F.mse_loss(out.velocity.float(), (noise - tgt).float())
    if out.router is None:
        zero = flow.new_zeros(())
        return LossParts(flow, flow, zero, None)
    balance = out.router.balance_loss
    return LossParts(flow + balance_coef * balance, flow, balance, out.router.expert_load())


def noise_like(shape: torch.Size | tuple, generator: torch.Generator | list[torch.Generator]) -> torch.Tensor:
    """Gaussian noise from one generator, or one generator per sample (then a sample's noise does not depend on
    which batch it is in, so ``unieditkit edit`` gives the same image at any batch size)."""
    if isinstance(generator, list):
        return torch.cat([torch.randn((1, *shape[1:]), generator=g) for g in generator])
    return torch.randn(shape, generator=generator)


def paste_known(prediction: torch.Tensor, batch: dict) -> torch.Tensor:
    """The prediction inside the mask, the given target outside it: known pixels are never regenerated."""
    mask = batch["mask"].to(prediction.device, prediction.dtype)
    return prediction * mask + batch["tgt"].to(prediction.device, prediction.dtype) * (1.0 - mask)


@torch.no_grad()
def sample(editor: Editor, batch: dict, steps: int, generator: torch.Generator | list[torch.Generator]) -> torch.Tensor:
    """Euler integration from noise (t=1) to an image (t=0); used for previews and ``unieditkit edit``."""
    tgt, mask = batch["tgt"], batch["mask"]
    x = noise_like(tgt.shape, generator).to(tgt.device)
    cond = masked_target(tgt, mask)
    times = torch.linspace(1.0, 0.0, steps + 1)
    for i in range(steps):
        t = torch.full((tgt.shape[0],), float(times[i]), device=tgt.device)
        v = editor(x, t, batch["ref"], cond, mask, batch["domain"], batch["subcategory"]).velocity.float()
        x = x + (times[i + 1] - times[i]).item() * v
    return x.clamp(-1.0, 1.0)
