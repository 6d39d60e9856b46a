"""MoT on a diffusers ``FluxTransformer2DModel`` (FLUX.1-Fill), the backbone A2-Edit builds on.

Optional: needs ``pip install 'unieditkit[flux]'`` (diffusers) and the FLUX.1-Fill-dev weights on disk; neither is
imported or touched until one of these functions is called. What this module does:

* ``load_flux_fill_transformer(path)`` loads the transformer (one-line errors for a missing package or weights);
* ``FluxMoT(transformer, anchors, ...)`` freezes it, turns the image-stream attention (q/k/v/out) and FFN linears of
  the double-stream blocks and the q/k/v and MLP linears of the single-stream blocks into ``MoTLinear``, and adds
  an ``AnchorGuidedRouter`` fed with the mean of the reference tokens after ``x_embedder``.

The text stream (``add_*_proj``, ``ff_context``) keeps the backbone only: experts are meant to specialise on the
object category, which the image tokens carry. Latent encoding (VAE), text embeddings and packing are the
diffusers FLUX.1-Fill pipeline's; this module covers the transformer.
"""

from __future__ import annotations

import pathlib
from typing import Any

import torch
from torch import nn

from training.anchors import Anchors
from training.mot import apply_mot, mot_layers, set_routing
from training.routing import AnchorGuidedRouter, RouterOutput
from unieditkit.errors import MissingModelError, UserError

FLUX_MOT_PATTERNS = [
    r"transformer_blocks\.\d+\.attn\.(to_q|to_k|to_v|to_out\.0)",
    r"transformer_blocks\.\d+\.ff\.net\.(0\.proj|2)",
    r"single_transformer_blocks\.\d+\.attn\.(to_q|to_k|to_v)",
    r"single_transformer_blocks\.\d+\.(proj_mlp|proj_out)",
]

FLUX_FILL_REPO = "black-forest-labs/FLUX.1-Fill-dev"


def _diffusers() -> Any:
    try:
        import diffusers
    except ImportError:
        raise UserError(
            "diffusers is not installed: pip install 'unieditkit[flux]' to train MoT on FLUX.1-Fill "
            "(the built-in editor needs nothing extra)"
        ) from None
    return diffusers


def load_flux_fill_transformer(path: str | pathlib.Path, dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """The FLUX.1-Fill transformer from a local folder (the repo snapshot, or its ``transformer/`` subfolder)."""
    diffusers = _diffusers()
    root = pathlib.Path(path)
    sub = "transformer" if (root / "transformer" / "config.json").is_file() else None
    if sub is None and not (root / "config.json").is_file():
        raise MissingModelError(
            f"FLUX.1-Fill weights not found at {root}: run `huggingface-cli download {FLUX_FILL_REPO} "
            f"--local-dir {root}` (accept the model licence on huggingface.co first)"
        )
    return diffusers.FluxTransformer2DModel.from_pretrained(str(root), subfolder=sub, torch_dtype=dtype)


class FluxMoT(nn.Module):
    """A frozen FLUX transformer with LoRA experts in attention and FFN, routed per sample by AGR."""

    def __init__(
        self,
        transformer: nn.Module,
        anchors: Anchors,
        num_experts: int = 8,
        rank: int = 16,
        alpha: float = 16.0,
        top_k: int = 2,
        prior_scale: float = 2.0,
        patterns: list[str] | None = None,
    ) -> None:
        super().__init__()
        transformer.requires_grad_(False)
        self.transformer = transformer
        self.mot_names = apply_mot(transformer, patterns or FLUX_MOT_PATTERNS, num_experts, rank, alpha)
        self._mot = mot_layers(transformer)
        embedder: nn.Linear = transformer.x_embedder
        self.router = AnchorGuidedRouter(
            num_experts, top_k, anchors.num_domains, anchors.num_subcategories, embedder.out_features,
            prior_scale, list(anchors.subcategory_domains),
        ).to(device=embedder.weight.device)

    def route(self, domain: torch.Tensor, subcategory: torch.Tensor, ref_tokens: torch.Tensor) -> RouterOutput:
        """Route from packed reference latents ``(B, N_ref, C_in)`` (the left half of the Fill diptych)."""
        features = self.transformer.x_embedder(ref_tokens).mean(dim=1)
        out = self.router(domain, subcategory, features)
        set_routing(self._mot, out.routing)
        return out

    def forward(
        self, *, domain: torch.Tensor, subcategory: torch.Tensor, ref_tokens: torch.Tensor, **flux_kwargs: Any
    ) -> tuple[Any, RouterOutput]:
        """Route, then run the transformer with the usual FluxTransformer2DModel keyword arguments."""
        routed = self.route(domain, subcategory, ref_tokens)
        return self.transformer(**flux_kwargs), routed
