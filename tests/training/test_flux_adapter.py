"""FLUX.1-Fill adapter: clear errors without diffusers or weights; MoT placement and routing on the tiny snapshot's
real FluxTransformer2DModel (FLUX.1-Fill's 384 / 64 channel layout)."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from unieditkit.training.model.anchors import Anchors
from unieditkit.training.backbones.flux.adapter import FluxMoT, load_flux_fill_transformer
from unieditkit.training.model.mot import MoTLinear
from unieditkit.errors import MissingModelError, UserError

ANCHORS = Anchors(("a", "b"), (0, 0, 1, 1))


def _transformer(snapshot):
    """The tiny snapshot's FluxTransformer2DModel (diffusers' class, FLUX.1-Fill's 384 / 64 channels), in fp32."""
    return load_flux_fill_transformer(snapshot, torch.float32)


def _inputs(config, batch: int = 2, image_tokens: int = 8, text_tokens: int = 3) -> dict:
    """The keyword arguments FluxFillPipeline gives the transformer, random, for ``batch`` samples."""
    return {
        "hidden_states": torch.randn(batch, image_tokens, config.in_channels),
        "encoder_hidden_states": torch.randn(batch, text_tokens, config.joint_attention_dim),
        "pooled_projections": torch.randn(batch, config.pooled_projection_dim),
        "timestep": torch.full((batch,), 0.5), "guidance": torch.full((batch,), 30.0),
        "img_ids": torch.zeros(image_tokens, 3), "txt_ids": torch.zeros(text_tokens, 3), "return_dict": False,
    }


def test_without_diffusers_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)
    with pytest.raises(UserError, match=r"diffusers is not installed: pip install 'unieditkit\[flux\]'"):
        load_flux_fill_transformer("/nowhere")


def test_missing_weights_name_the_path_and_the_download(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "diffusers", types.ModuleType("diffusers"))
    with pytest.raises(MissingModelError, match=f"not found at {tmp_path}.*huggingface-cli download "
                                                "black-forest-labs/FLUX.1-Fill-dev") as info:
        load_flux_fill_transformer(tmp_path)
    assert "\n" not in str(info.value)


def test_experts_go_into_image_attention_and_ffn_not_the_text_stream(tiny_flux):
    flux = FluxMoT(_transformer(tiny_flux), ANCHORS, num_experts=4, rank=2)
    mot = {n for n, m in flux.transformer.named_modules() if isinstance(m, MoTLinear)}
    expected = {f"transformer_blocks.0.{n}"
                for n in ("attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "ff.net.0.proj", "ff.net.2")}
    expected |= {f"single_transformer_blocks.0.{n}" for n in ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp",
                                                               "proj_out")}
    assert mot == expected
    trainable = {n for n, p in flux.named_parameters() if p.requires_grad}
    assert all(".lora_" in n or n.startswith("router.") for n in trainable)


def test_routing_per_sample_and_forward(tiny_flux):
    torch.manual_seed(0)
    flux = FluxMoT(_transformer(tiny_flux), ANCHORS, num_experts=4, rank=2, top_k=1)
    kwargs = _inputs(flux.transformer.config)
    (out,), routed = flux(domain=torch.tensor([0, 1]), subcategory=torch.tensor([0, 3]),
                          ref_tokens=kwargs["hidden_states"][:, :4], **kwargs)
    assert out.shape == (2, 8, 64)  # FLUX.1-Fill's 64 output channels per packed token
    assert routed.routing.indices[:, 0].tolist() == [0, 1]
    out.pow(2).mean().backward()
    assert flux.transformer.transformer_blocks[0].attn.to_q.lora_B.grad[:2].abs().sum() > 0
