"""Exponential moving average of the trainable weights (``train.ema_decay`` > 0).

The averaged weights usually sample cleaner edits than the last step's. They are kept in fp32 on every rank
beside the parameters they follow (under FSDP each rank averages only its own shard), updated after every
optimizer step, and saved in the checkpoint as ``ema``: full tensors under the same names as ``model``, so
``unieditkit edit`` loads them in place of the raw weights when they are there.
"""

from __future__ import annotations

import pathlib

import torch
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor

from unieditkit.training.runtime.distributed import unwrap
from unieditkit.errors import UserError


class Ema:
    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.params = {name: p for name, p in unwrap(model).named_parameters() if p.requires_grad}
        self.shadow = {name: p.detach().float().clone() for name, p in self.params.items()}

    @torch.no_grad()
    def update(self) -> None:
        for name, p in self.params.items():
            self.shadow[name].lerp_(p.detach().float(), 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Collective under FSDP (shards are gathered): every rank must call it."""
        return {name: (t.full_tensor() if isinstance(t, DTensor) else t).cpu() for name, t in self.shadow.items()}

    def load(self, path: pathlib.Path) -> bool:
        """Continue the average saved in ``path``; False when the checkpoint has none (EMA turned on later: the
        average then starts from the restored weights)."""
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("ema")
        if saved is None:
            return False
        missing = sorted(set(self.shadow) - set(saved))
        if missing:
            raise UserError(f"{path}: its ema has no '{missing[0]}'; resume with the run's own config.yaml")
        for name, t in self.shadow.items():
            full = saved[name].to(torch.float32)
            if isinstance(t, DTensor):
                full = distribute_tensor(full.to(t.device), t.device_mesh, t.placements)
            t.copy_(full)
        return True
