"""FLUX.1-Fill adapter: clear errors without diffusers or weights; MoT placement on a FLUX-shaped module tree."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

from training.anchors import Anchors
from training.flux_adapter import FluxMoT, load_flux_fill_transformer
from training.mot import MoTLinear
from unieditkit.errors import MissingModelError, UserError

ANCHORS = Anchors(("a", "b"), (0, 0, 1, 1))


class _Attn(nn.Module):
    def __init__(self, d: int, joint: bool) -> None:
        super().__init__()
        self.to_q, self.to_k, self.to_v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        if joint:
            self.to_out = nn.ModuleList([nn.Linear(d, d), nn.Dropout(0.0)])
            self.add_q_proj, self.add_k_proj, self.add_v_proj = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
            self.to_add_out = nn.Linear(d, d)


class _FF(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        proj = nn.Module()
        proj.proj = nn.Linear(d, 2 * d)
        self.net = nn.ModuleList([proj, nn.Dropout(0.0), nn.Linear(2 * d, d)])

    def forward(self, x):
        return self.net[2](torch.relu(self.net[0].proj(x)))


class _Double(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.attn, self.ff, self.ff_context = _Attn(d, True), _FF(d), _FF(d)

    def forward(self, x, c):
        a = self.attn
        x = x + a.to_out[0](a.to_q(x) + a.to_k(x) + a.to_v(x)) + self.ff(x)
        return x, c + a.to_add_out(a.add_q_proj(c)) + self.ff_context(c)


class _Single(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.attn, self.proj_mlp, self.proj_out = _Attn(d, False), nn.Linear(d, d), nn.Linear(2 * d, d)

    def forward(self, x):
        a = self.attn
        return x + self.proj_out(torch.cat([a.to_q(x) + a.to_k(x) + a.to_v(x), self.proj_mlp(x)], dim=-1))


class FakeFlux(nn.Module):
    """The module names of diffusers' FluxTransformer2DModel, at toy size."""

    def __init__(self, d=8, c_in=12):
        super().__init__()
        self.x_embedder = nn.Linear(c_in, d)
        self.context_embedder = nn.Linear(c_in, d)
        self.transformer_blocks = nn.ModuleList([_Double(d) for _ in range(2)])
        self.single_transformer_blocks = nn.ModuleList([_Single(d) for _ in range(2)])
        self.proj_out = nn.Linear(d, c_in)

    def forward(self, hidden_states, encoder_hidden_states):
        x, c = self.x_embedder(hidden_states), self.context_embedder(encoder_hidden_states)
        for block in self.transformer_blocks:
            x, c = block(x, c)
        x = torch.cat([c, x], dim=1)
        for block in self.single_transformer_blocks:
            x = block(x)
        return self.proj_out(x[:, c.shape[1]:])


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


def test_experts_go_into_image_attention_and_ffn_not_the_text_stream():
    flux = FluxMoT(FakeFlux(), ANCHORS, num_experts=4, rank=2)
    mot = {n for n, m in flux.transformer.named_modules() if isinstance(m, MoTLinear)}
    expected = {f"transformer_blocks.{i}.{n}" for i in range(2)
                for n in ("attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "ff.net.0.proj", "ff.net.2")}
    expected |= {f"single_transformer_blocks.{i}.{n}" for i in range(2)
                 for n in ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp", "proj_out")}
    assert mot == expected
    trainable = {n for n, p in flux.named_parameters() if p.requires_grad}
    assert all(".lora_" in n or n.startswith("router.") for n in trainable)


def test_routing_per_sample_and_forward():
    torch.manual_seed(0)
    flux = FluxMoT(FakeFlux(), ANCHORS, num_experts=4, rank=2, top_k=1)
    x, c = torch.randn(2, 5, 12), torch.randn(2, 3, 12)
    out, routed = flux(domain=torch.tensor([0, 1]), subcategory=torch.tensor([0, 3]), ref_tokens=x[:, :2],
                       hidden_states=x, encoder_hidden_states=c)
    assert out.shape == (2, 5, 12)
    assert routed.routing.indices[:, 0].tolist() == [0, 1]
    out.pow(2).mean().backward()
    assert flux.transformer.transformer_blocks[0].attn.to_q.lora_B.grad[:2].abs().sum() > 0
