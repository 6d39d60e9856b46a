"""The two backbones the trainer and ``unieditkit edit`` drive through one interface.

``make_backend(cfg, device)`` returns the built-in editor (``editor.py``, pixels, trains on a CPU) or FLUX.1-Fill
(``flux_flow.py``). A backend owns the module that is wrapped for DDP/FSDP and checkpointed (``module``: the
editor, or the transformer with its experts and router) and says how a batch becomes a loss and how an edit is
sampled; the training loop, checkpoints, logs and the edit command are the same for both.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from unieditkit.training.model.anchors import Anchors
from unieditkit.training.config import Config
from unieditkit.training.backbones.builtin.editor import Editor, load_backbone
from unieditkit.training.backbones.builtin.flow import LossParts, flow_loss, paste_known, sample


class Backend(Protocol):
    module: nn.Module
    anchors: Anchors

    def prepare(self, batch: dict) -> dict:
        """Add what the loss needs beyond the decoded batch (FLUX: latents and text embeddings)."""

    def loss(self, model: nn.Module, batch: dict, generator: torch.Generator, t_sampling: str,
             balance_coef: float) -> LossParts:
        """The training loss of ``model`` (the wrapped ``module``) on a prepared batch."""

    def sample(self, batch: dict, steps: int, generator: torch.Generator | list[torch.Generator]) -> torch.Tensor:
        """Edited targets ``(B, 3, R, R)`` in [-1, 1] with the known pixels pasted back (a decoded batch)."""


class BuiltinBackend:
    def __init__(self, cfg: Config, device: torch.device) -> None:
        self.anchors = Anchors.from_taxonomy(cfg.model.taxonomy)
        self.module = Editor(cfg.model, self.anchors)
        if cfg.model.init_checkpoint:
            load_backbone(self.module, cfg.model.init_checkpoint)
        self.module.to(device)

    def prepare(self, batch: dict) -> dict:
        return batch

    def loss(self, model: nn.Module, batch: dict, generator: torch.Generator, t_sampling: str,
             balance_coef: float) -> LossParts:
        return flow_loss(model, batch, generator, t_sampling, balance_coef)

    def sample(self, batch: dict, steps: int, generator: torch.Generator | list[torch.Generator]) -> torch.Tensor:
        was_training = self.module.training
        self.module.eval()
        out = paste_known(sample(self.module, batch, steps, generator), batch)
        self.module.train(was_training)
        return out


def make_backend(cfg: Config, device: torch.device) -> Backend:
    """Seeds the global RNG first: expert and router initialisation must be identical on every rank."""
    torch.manual_seed(cfg.train.seed)
    if cfg.model.backbone == "flux-fill":
        from unieditkit.training.backbones.flux.flow import FluxBackend

        return FluxBackend(cfg, device)
    return BuiltinBackend(cfg, device)
