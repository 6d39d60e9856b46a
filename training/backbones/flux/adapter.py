"""MoT on a diffusers ``FluxTransformer2DModel`` (FLUX.1-Fill), the backbone A2-Edit builds on.

Optional: needs ``pip install 'unieditkit[flux]'`` (diffusers) and a FLUX.1-Fill-dev snapshot on disk (or the tiny
random one ``scripts/make_tiny_flux.py`` writes); neither is imported or touched until one of these is called:

* ``check_snapshot(path)`` names every missing part of a snapshot in one line, with how to get it;
* ``load_flux_fill_transformer(path, dtype, device, quant)`` loads the transformer with diffusers' own class,
  straight onto the rank's device, its linear weights quantized when ``model.backbone_quant`` asks
  (``quantization_config``: diffusers' own ``quantization_config``, torchao or bitsandbytes, applied as it loads);
* ``FluxMoT(transformer, anchors, ...)`` freezes it, turns the image-stream attention (q/k/v/out) and FFN linears of
  the double-stream blocks and the q/k/v and MLP linears of the single-stream blocks into ``MoTLinear`` (fp32
  experts beside a bf16 backbone by default), and adds the router ``model.routing`` names (``routing.py``),
  fed with the *clean* reference tokens (see ``route``). A quantized base linear stays what diffusers made it
  (torchao's int8 / float8 tensor inside ``nn.Linear``, or bitsandbytes' ``Linear4bit``): the expert adds its
  delta beside the base output and only experts and router get gradients.

The text stream (``add_*_proj``, ``ff_context``) keeps the backbone only: experts are meant to specialise on the
object category, which the image tokens carry. Latents, text embeddings and packing are in ``flux_inputs.py``.
"""

from __future__ import annotations

import pathlib
from typing import Any

import torch
from torch import nn

from unieditkit.training.model.anchors import Anchors
from unieditkit.training.config import ModelConfig
from unieditkit.training.model.mot import apply_mot, mot_layers, set_routing
from unieditkit.training.model.routing import RouterOutput, make_router
from unieditkit.errors import MissingModelError, UserError

FLUX_MOT_PATTERNS = [
    r"transformer_blocks\.\d+\.attn\.(to_q|to_k|to_v|to_out\.0)",
    r"transformer_blocks\.\d+\.ff\.net\.(0\.proj|2)",
    r"single_transformer_blocks\.\d+\.attn\.(to_q|to_k|to_v)",
    r"single_transformer_blocks\.\d+\.(proj_mlp|proj_out)",
]

FLUX_FILL_REPO = "black-forest-labs/FLUX.1-Fill-dev"
#: the transformer's ``FluxTransformer2DModel`` arguments in that repository's ``transformer/config.json``: what
#: the benchmarks build with random weights and ``memory.py`` counts, without the 23.8 GB download
FLUX_FILL_DEV = dict(
    patch_size=1, in_channels=384, out_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
    num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
    axes_dims_rope=(16, 56, 56),
)


def require_diffusers() -> Any:
    """The diffusers module, imported only when a FLUX backbone is used, or a one-line install hint."""
    try:
        import diffusers
    except ImportError:
        raise UserError(
            "diffusers is not installed: pip install 'unieditkit[flux]' to train MoT on FLUX.1-Fill "
            "(the built-in editor needs nothing extra)"
        ) from None
    return diffusers


# what a snapshot folder must hold: (relative path, alternatives that may stand in for it)
SNAPSHOT_PARTS = {
    "model_index.json": (),
    "scheduler/scheduler_config.json": (),
    "transformer/config.json": (),
    "vae/config.json": (),
    "text_encoder/config.json": (),
    "text_encoder_2/config.json": (),
    "tokenizer/vocab.json": ("tokenizer/tokenizer.json",),
    "tokenizer_2/tokenizer.json": ("tokenizer_2/spiece.model",),
}
WEIGHT_FOLDERS = ("transformer", "vae", "text_encoder", "text_encoder_2")
GET_SNAPSHOT = (
    "get it with `huggingface-cli download {repo} --local-dir {root}` (accept the model licence on huggingface.co "
    "first), or write a tiny random one for tests with `python scripts/make_tiny_flux.py {root}`"
)


def check_snapshot(path: str | pathlib.Path) -> pathlib.Path:
    """The snapshot folder if it has every part ``FluxFillPipeline`` loads; else one line naming what is missing."""
    root = pathlib.Path(path)
    how = GET_SNAPSHOT.format(repo=FLUX_FILL_REPO, root=root)
    if not root.is_dir():
        raise MissingModelError(f"--pretrained {root}: no such folder; {how}")
    missing = [rel for rel, alts in SNAPSHOT_PARTS.items()
               if not any((root / p).is_file() for p in (rel, *alts))]
    missing += [f"{folder}/ weights (*.safetensors)" for folder in WEIGHT_FOLDERS
                if (root / folder).is_dir() and not any((root / folder).glob("*.safetensors"))
                and not any((root / folder).glob("*.bin"))]
    if missing:
        raise MissingModelError(
            f"--pretrained {root}: not a complete FLUX.1-Fill snapshot, missing {', '.join(missing)}; {how}"
        )
    return root


def quantization_config(quant: str, device: torch.device | str) -> Any:
    """diffusers' ``quantization_config`` for ``model.backbone_quant`` on ``device`` (``None`` for none), or one
    line saying why this machine cannot run it. int8 and fp8 are torchao weight-only tensors, which run wherever
    torch does (torchao's float8 *matmuls* need compute capability 8.9, so fp8 here stores e4m3 weights and
    computes in bf16, as kohya's ``fp8_base`` does); NF4 goes through bitsandbytes, which diffusers loads on a
    CUDA GPU only."""
    if quant == "none":
        return None
    diffusers = require_diffusers()
    if quant == "nf4":
        if torch.device(device).type != "cuda":
            raise UserError(f"model.backbone_quant nf4: bitsandbytes 4-bit loading needs a CUDA GPU and this rank runs "
                            f"on {device}; use --backbone-quant int8 or fp8 (torchao, any device)")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise UserError("model.backbone_quant nf4 needs bitsandbytes: pip install 'unieditkit[flux]' (or use "
                            "--backbone-quant int8)") from None
        return diffusers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                            bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)
    try:
        from torchao.quantization import Float8WeightOnlyConfig, Int8WeightOnlyConfig
    except ImportError:
        raise UserError(f"model.backbone_quant {quant} needs torchao: pip install 'unieditkit[flux]'") from None
    return diffusers.TorchAoConfig(Int8WeightOnlyConfig() if quant == "int8" else Float8WeightOnlyConfig())


def load_flux_fill_transformer(path: str | pathlib.Path, dtype: torch.dtype = torch.bfloat16,
                               device: torch.device | str = "cpu", quant: str = "none") -> nn.Module:
    """The FLUX.1-Fill transformer from a local folder (the repo snapshot, or its ``transformer/`` subfolder),
    loaded straight onto ``device``: with ``device_map`` diffusers builds the model on the meta device and moves each
    tensor of the memory-mapped safetensors shards to ``device`` as it reads it, so on a GPU a rank's host memory
    holds at most the shard being read (pages the OS shares between ranks), never the whole 23.8 GB model waiting
    for a ``.to(device)``. On a CPU, when ``dtype`` is the file's, the weights stay memory-mapped: one copy, in
    pages ranks share. ``bench/bench_flux_load.py`` measures the peak RSS. ``quant`` (``model.backbone_quant``)
    quantizes each linear weight as it is read (``quantization_config``)."""
    diffusers = require_diffusers()
    quantized = quantization_config(quant, device)
    root = pathlib.Path(path)
    sub = "transformer" if (root / "transformer" / "config.json").is_file() else None
    if sub is None and not (root / "config.json").is_file():
        raise MissingModelError(
            f"FLUX.1-Fill weights not found at {root}: run `huggingface-cli download {FLUX_FILL_REPO} "
            f"--local-dir {root}` (accept the model licence on huggingface.co first)"
        )
    return diffusers.FluxTransformer2DModel.from_pretrained(str(root), subfolder=sub, torch_dtype=dtype,
                                                            device_map={"": torch.device(device)},
                                                            quantization_config=quantized)


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
        expert_dtype: torch.dtype | None = torch.float32,
        anchor_floor: float = ModelConfig.anchor_floor,
        routing: str = ModelConfig.routing,
    ) -> None:
        super().__init__()
        transformer.requires_grad_(False)
        self.transformer = transformer
        self.mot_names = apply_mot(transformer, patterns or FLUX_MOT_PATTERNS, num_experts, rank, alpha,
                                   dtype=expert_dtype)
        self._mot = mot_layers(transformer)
        embedder: nn.Linear = transformer.x_embedder
        self.router = make_router(
            routing, num_experts, top_k, anchors, embedder.out_features, embedder.in_features, prior_scale,
            anchor_floor,
        ).to(device=embedder.weight.device)

    def route(self, domain: torch.Tensor, subcategory: torch.Tensor, ref_tokens: torch.Tensor) -> RouterOutput:
        """Route from the reference half of the Fill diptych as clean tokens ``(B, N_ref, C_in)``: the reference
        latents in the noisy-latent slot (i.e. at t = 0), then its masked-image latents and an all-zero mask, so
        the routing of a sample never depends on the timestep or the noise. The anchor router pools them after
        ``x_embedder``, the random ablation before it."""
        out = self.router(domain, subcategory, raw=ref_tokens, embedded=self.transformer.x_embedder(ref_tokens))
        set_routing(self._mot, out.routing)
        return out

    def forward(
        self, *, domain: torch.Tensor, subcategory: torch.Tensor, ref_tokens: torch.Tensor, **flux_kwargs: Any
    ) -> tuple[Any, RouterOutput]:
        """Route, then run the transformer with the usual FluxTransformer2DModel keyword arguments."""
        routed = self.route(domain, subcategory, ref_tokens)
        return self.transformer(**flux_kwargs), routed
