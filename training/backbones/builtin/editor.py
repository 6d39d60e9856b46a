"""The built-in editor: a small DiT that sees the reference and the masked target as one token sequence.

Layout (in-context diptych, as FLUX.1-Fill editors such as Insert Anything use it): the reference occupies the
left half and the target the right half of a ``R x 2R`` canvas, which is cut into ``p x p`` pixel patches. Every
patch carries 7 channels:

    left  (reference): reference RGB (clean, t = 0) | reference RGB        | 0
    right (target):    noisy target x_t            | masked target RGB    | edit mask

so the mask is an extra input channel and the unmasked target pixels are given as a condition. Tokens get a
fixed 2-D sin-cos position over the whole canvas, so attention relates reference and target positions the same
way for every image. Transformer blocks are DiT blocks with adaLN-Zero conditioning on the flow-matching time.
Only target tokens are decoded; the output is the velocity ``noise - x0`` of rectified flow (see ``flow.py``).

MoT: the attention q/k/v/o and FFN fc1/fc2 linears of every block are ``MoTLinear`` (``model.mot_patterns``);
the router (``model.routing``, ``routing.py``) reads the reference tokens after the patch embedding (the random
ablation: before it), i.e. before any routed layer, so routing is known before the first block runs, and sets
the batch's routing on all MoT layers.
"""

from __future__ import annotations

import math
import pathlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from unieditkit.training.model.anchors import Anchors
from unieditkit.training.config import DIT_MOT_PATTERNS, ModelConfig, backbone_trains
from unieditkit.training.model.mot import apply_mot, mot_layers, set_routing
from unieditkit.training.model.routing import AnchorGuidedRouter, RandomRouter, RouterOutput, make_router
from unieditkit.errors import UserError

IN_CHANNELS = 7
OUT_CHANNELS = 3


@dataclass
class EditorOutput:
    velocity: torch.Tensor  # (B, 3, R, R) predicted velocity of the target
    router: RouterOutput | None


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (proj(x).view(b, n, self.heads, d // self.heads).transpose(1, 2) for proj in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v)
        return self.o(y.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class Block(nn.Module):
    """DiT block with adaLN-Zero: starts as the identity so a deep stack is stable from the first step."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c)[:, None].chunk(6, dim=-1)
        x = x + gate1 * self.attn(self.norm1(x) * (1 + scale1) + shift1)
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


class FinalLayer(nn.Module):
    def __init__(self, dim: int, out: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, out)
        for lin in (self.ada[1], self.linear):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.ada(c)[:, None].chunk(2, dim=-1)
        return self.linear(self.norm(x) * (1 + scale) + shift)


class TimestepEmbedder(nn.Module):
    def __init__(self, dim: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = (t.float() * 1000.0)[:, None] * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


def sincos_2d(dim: int, rows: int, cols: int) -> torch.Tensor:
    """(rows*cols, dim) fixed position embedding, row-major."""
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    ys, xs = torch.meshgrid(torch.arange(rows, dtype=torch.float64), torch.arange(cols, dtype=torch.float64), indexing="ij")
    parts = []
    for coord in (ys.flatten(), xs.flatten()):
        ang = coord[:, None] * omega[None]
        parts += [torch.sin(ang), torch.cos(ang)]
    emb = torch.cat(parts, dim=1)
    return F.pad(emb, (0, dim - emb.shape[1])).float()


def patchify(img: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/p * W/p, C*p*p), row-major patches."""
    b, c, h, w = img.shape
    x = img.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


def unpatchify(tokens: torch.Tensor, p: int, c: int, h: int, w: int) -> torch.Tensor:
    b = tokens.shape[0]
    x = tokens.reshape(b, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, h, w)


class Editor(nn.Module):
    """Reference-guided inpainting DiT with optional MoT experts (``cfg.num_experts = 0``: backbone only)."""

    def __init__(self, cfg: ModelConfig, anchors: Anchors) -> None:
        super().__init__()
        self.cfg = cfg
        self.anchors = anchors
        p, r, d = cfg.patch_size, cfg.image_size, cfg.dim
        self.grid = r // p
        self.embed = nn.Linear(IN_CHANNELS * p * p, d)
        pos = sincos_2d(d, self.grid, 2 * self.grid).reshape(self.grid, 2 * self.grid, d)
        self.register_buffer("pos_ref", pos[:, : self.grid].reshape(-1, d).clone(), persistent=False)
        self.register_buffer("pos_tgt", pos[:, self.grid :].reshape(-1, d).clone(), persistent=False)
        self.t_embed = TimestepEmbedder(d)
        self.blocks = nn.ModuleList(Block(d, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.final = FinalLayer(d, OUT_CHANNELS * p * p)
        self.router: AnchorGuidedRouter | RandomRouter | None = None
        self.mot_names: list[str] = []
        if cfg.num_experts > 0:
            self.mot_names = apply_mot(
                self, cfg.mot_patterns or DIT_MOT_PATTERNS, cfg.num_experts, cfg.rank, cfg.alpha, freeze_base=True
            )
            self.router = make_router(cfg.routing, cfg.num_experts, cfg.top_k, anchors, d, IN_CHANNELS * p * p,
                                      cfg.prior_scale, cfg.anchor_floor)
        self._mot = mot_layers(self)
        self.set_backbone_trainable(backbone_trains(cfg))

    def set_backbone_trainable(self, trainable: bool) -> None:
        """Backbone = every parameter except the LoRA experts and the router (those always train)."""
        own = {id(p) for m in self._mot for p in (m.lora_A, m.lora_B)}
        if self.router is not None:
            own |= {id(p) for p in self.router.parameters()}
        for p in self.parameters():
            p.requires_grad_(trainable or id(p) in own)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        ref: torch.Tensor,
        masked_tgt: torch.Tensor,
        mask: torch.Tensor,
        domain: torch.Tensor,
        subcategory: torch.Tensor,
    ) -> EditorOutput:
        p = self.cfg.patch_size
        ref_in = torch.cat([ref, ref, torch.zeros_like(mask)], dim=1)
        tgt_in = torch.cat([x_t, masked_tgt, mask], dim=1)
        ref_patches = patchify(ref_in, p)
        ref_tok = self.embed(ref_patches) + self.pos_ref
        tgt_tok = self.embed(patchify(tgt_in, p)) + self.pos_tgt
        routed: RouterOutput | None = None
        if self.router is not None:
            routed = self.router(domain, subcategory, raw=ref_patches, embedded=ref_tok)
            set_routing(self._mot, routed.routing)
        x = torch.cat([ref_tok, tgt_tok], dim=1)
        c = self.t_embed(t)
        for block in self.blocks:
            if self.cfg.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, c, use_reentrant=False)
            else:
                x = block(x, c)
        out = self.final(x[:, ref_tok.shape[1] :], c)
        r = self.cfg.image_size
        return EditorOutput(unpatchify(out, p, OUT_CHANNELS, r, r), routed)


def load_backbone(editor: Editor, path: str | pathlib.Path) -> int:
    """Initialise ``editor`` from a run checkpoint (``model.init_checkpoint``); returns how many tensors loaded.

    The source may be a backbone-only run (``num_experts: 0``): its ``attn.q.weight`` is this model's
    ``attn.q.base.weight``. Every backbone tensor must be present, because a partly random frozen backbone is
    never what was meant.
    """
    p = pathlib.Path(path)
    if not p.is_file():
        raise UserError(f"model.init_checkpoint: {p} not found; point it at a checkpoint .pt of a previous run")
    source = torch.load(p, map_location="cpu", weights_only=True)
    source = source.get("model", source)
    target = editor.state_dict()
    mot_prefixes = tuple(f"{n}." for n in editor.mot_names)
    loaded: dict[str, torch.Tensor] = {}
    for key, tensor in target.items():
        alt = key.replace(".base.", ".", 1) if key.startswith(mot_prefixes) else key
        for candidate in (key, alt):
            if candidate in source and source[candidate].shape == tensor.shape:
                loaded[key] = source[candidate]
                break
    backbone = [k for k in target if not _is_mot_only(k)]
    missing = [k for k in backbone if k not in loaded]
    if missing:
        raise UserError(
            f"model.init_checkpoint: {p} lacks {len(missing)} backbone tensors (first: '{missing[0]}'); it must come "
            "from a run with the same model size and train_backbone: true"
        )
    editor.load_state_dict(loaded, strict=False)
    return len(loaded)


def _is_mot_only(key: str) -> bool:
    return ".lora_" in key or key.startswith("router.")

