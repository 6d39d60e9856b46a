"""Shard batches -> FLUX.1-Fill transformer inputs: the [reference | target] diptych in latent space.

Follow one batch (``ref``, ``tgt``, ``mask`` at ``R x R`` in [-1, 1], from ``data.py``):

1. The diptych image is ``[ref | tgt]`` (``R x 2R``); the masked image ``[ref | tgt * (1 - mask)]`` (the edit
   region mid grey, as ``FluxFillPipeline`` masks it) and the mask ``[0 | mask]``: the reference is fully visible
   and the target is masked with the sample's MATS variant for this curriculum step.
2. The VAE encodes the diptych and the masked image (the latent distribution's mode, so a step's inputs are
   deterministic and cacheable); ``FluxFillPipeline.prepare_mask_latents`` shifts, scales and packs the masked
   latents and folds the full-resolution mask into ``8 * 8`` channels per latent pixel, then packs it. Noisy
   latents (``4C``) + masked latents (``4C``) + mask (``4 * 64``) make the Fill transformer's input channels
   (``64 + 64 + 256 = 384`` for FLUX.1-Fill).
3. The prompt is the stored caption, or ``model.prompt_template`` with the subcategory's display name;
   ``FluxFillPipeline.encode_prompt`` gives the T5 sequence, the CLIP pooled embedding and the text ids.

Everything here is diffusers' own code called on our tensors; this module only decides what goes in. With
``data.cache`` (``--cache DIR``) the VAE latents and text embeddings are kept on disk (``latent_cache.py``), and the
text encoders (T5-XXL alone is ~9.5 GB in bf16) are loaded only while some prompt is not cached: before training,
``cache_prompts`` encodes every prompt of the run's shards (``shard_prompts``) that the cache lacks and releases
them, so no training step holds them; with every prompt cached they are never loaded. They load straight onto the
device (``device_map``), never as a whole model in host memory. Without a cache every batch needs them: they stay.
"""

from __future__ import annotations

import gc
import json
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from unieditkit.training.config import ModelConfig
from unieditkit.training.data import caption, display_name
from unieditkit.training.backbones.flux.adapter import check_snapshot, require_diffusers
from unieditkit.training.backbones.flux.latent_cache import LatentCache


@dataclass
class FluxBatch:
    """One batch as the Fill transformer takes it (``N`` = packed diptych tokens)."""

    x0: torch.Tensor  # (B, N, 4C) clean packed diptych latents
    cond: torch.Tensor  # (B, N, 4C + 4*f*f) packed masked-image latents and mask
    target: torch.Tensor  # (N,) bool: tokens of the target (right) half
    img_ids: torch.Tensor  # (N, 3)
    prompt_embeds: torch.Tensor  # (B, L, D) T5
    pooled: torch.Tensor  # (B, D_pool) CLIP
    text_ids: torch.Tensor  # (L, 3)
    height: int  # diptych size in pixels
    width: int

    def ref_tokens(self) -> torch.Tensor:
        """The reference half as clean transformer input: its latents in the noisy slot (t = 0) and its
        masked-image latents and (all-zero) mask; what the router reads."""
        ref = ~self.target
        return torch.cat([self.x0[:, ref], self.cond[:, ref]], dim=-1)


def prompts_for(batch: dict, template: str) -> list[str]:
    """Caption when the build stored one, else the template with the subcategory's display name."""
    return [c or template.format(name=n) for c, n in zip(batch["captions"], batch["names"])]


def shard_prompts(shards: Iterable[str], template: str) -> list[str]:
    """Every distinct prompt the samples of ``shards`` give, in first-seen order, by ``prompts_for``'s rule on
    ``data.decode_sample``'s caption and name; only the ``.json`` members are read (tarfile seeks past the images)."""
    found: dict[str, None] = {}
    for shard in shards:
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".json"):
                    meta = json.load(tar.extractfile(member))
                    batch = {"captions": [caption(meta)], "names": [display_name(meta)]}
                    found.update(dict.fromkeys(prompts_for(batch, template)))
    return list(found)


class FluxFillInputs:
    """VAE and text encoders of a FLUX.1-Fill snapshot, frozen, turning batches into ``FluxBatch`` and back."""

    def __init__(self, cfg: ModelConfig, device: torch.device, cache_dir: str = "") -> None:
        diffusers = require_diffusers()
        self.root = check_snapshot(cfg.pretrained)
        self.cfg = cfg
        self.device = device
        self.dtype = torch.bfloat16 if cfg.backbone_dtype == "bf16" else torch.float32
        vae = diffusers.AutoencoderKL.from_pretrained(str(self.root), subfolder="vae", torch_dtype=self.dtype)
        vae.to(device).eval().requires_grad_(False)
        # the pipeline object only lends its own methods (mask packing, prompt encoding); no transformer in it
        self.pipe = diffusers.FluxFillPipeline(
            scheduler=None, vae=vae, text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None,
            transformer=None,
        )
        self.vae = vae
        self.scale = self.pipe.vae_scale_factor
        self.channels = vae.config.latent_channels
        self.scheduler_config = diffusers.FlowMatchEulerDiscreteScheduler.load_config(
            str(self.root), subfolder="scheduler"
        )
        self.cache = LatentCache(cache_dir, self.root, cfg) if cache_dir else None
        self._text_loaded = False

    def _load_text_encoders(self) -> None:
        """Loaded on the first prompt that is not cached (with a full cache, never), straight onto the device."""
        import transformers

        root, kw = str(self.root), {"dtype": self.dtype, "device_map": {"": self.device}}
        p = self.pipe
        p.tokenizer = transformers.CLIPTokenizer.from_pretrained(root, subfolder="tokenizer")
        p.tokenizer_2 = transformers.T5TokenizerFast.from_pretrained(root, subfolder="tokenizer_2")
        p.text_encoder = transformers.CLIPTextModel.from_pretrained(root, subfolder="text_encoder", **kw)
        p.text_encoder_2 = transformers.T5EncoderModel.from_pretrained(root, subfolder="text_encoder_2", **kw)
        for enc in (p.text_encoder, p.text_encoder_2):
            enc.eval().requires_grad_(False)
        p.tokenizer_max_length = p.tokenizer.model_max_length
        self._text_loaded = True

    def release_text_encoders(self) -> None:
        """Free the encoders' memory (a prompt that turns out uncached later loads them again)."""
        p = self.pipe
        p.text_encoder = p.text_encoder_2 = p.tokenizer = p.tokenizer_2 = None
        self._text_loaded = False
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def cache_prompts(self, prompts: list[str], start: int = 0) -> int:
        """Encode every prompt the cache lacks, then release the encoders; returns how many were encoded. Ranks
        sharing the cache pass different ``start`` offsets, so each first encodes its own part and then mostly finds
        the others' entries written (a prompt two ranks encode is written twice, atomically, the same)."""
        if self.cache is None:
            raise ValueError("cache_prompts needs data.cache")  # a programming error: the backend checks first
        done = 0
        for prompt in prompts[start:] + prompts[:start]:
            if not self.cache.has_text(prompt):
                self.text([prompt])
                done += 1
        if self._text_loaded:
            self.release_text_encoders()
        return done

    @torch.no_grad()
    def text(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """T5 sequence embeddings, CLIP pooled embeddings and text ids for each prompt, encoded one prompt at a
        time so an embedding never depends on its batch neighbours: cached and fresh values are bit-identical."""
        seqs, pools = [], []
        for prompt in prompts:
            hit = self.cache.text(prompt) if self.cache else None
            if hit is None:
                if not self._text_loaded:
                    self._load_text_encoders()
                seq, pool, _ = self.pipe.encode_prompt(prompt=prompt, prompt_2=None, device=self.device,
                                                       max_sequence_length=self.cfg.max_sequence_length)
                hit = (seq[0].cpu(), pool[0].cpu())
                if self.cache:
                    self.cache.put_text(prompt, *hit)
            seqs.append(hit[0])
            pools.append(hit[1])
        seq = torch.stack(seqs).to(self.device, self.dtype)
        text_ids = torch.zeros(seq.shape[1], 3, device=self.device, dtype=self.dtype)
        return seq, torch.stack(pools).to(self.device, self.dtype), text_ids

    @torch.no_grad()
    def raw_latents(self, images: torch.Tensor) -> torch.Tensor:
        """Unscaled VAE latents (mode of the posterior) of images in [-1, 1], one image at a time for the same
        reason as ``text``: kernels may sum in another order at another batch size."""
        images = images.to(self.device, self.dtype)
        return torch.cat([self.vae.encode(img[None]).latent_dist.mode() for img in images])

    def _cached_latents(self, kind: str, keys: list[str], images: torch.Tensor) -> torch.Tensor:
        if self.cache is None:
            return self.raw_latents(images)
        found = [self.cache.latent(kind, k, img) for k, img in zip(keys, images)]
        todo = [i for i, f in enumerate(found) if f is None]
        if todo:
            fresh = self.raw_latents(images[todo]).cpu()
            for i, lat in zip(todo, fresh):
                self.cache.put_latent(kind, keys[i], images[i], lat)
                found[i] = lat
        return torch.stack(found).to(self.device, self.dtype)

    @torch.no_grad()
    def encode(self, batch: dict) -> FluxBatch:
        ref, tgt, mask = batch["ref"].float(), batch["tgt"].float(), batch["mask"].float()
        b, _, r, _ = tgt.shape
        diptych = torch.cat([ref, tgt], dim=-1)
        masked = torch.cat([ref, tgt * (1.0 - mask)], dim=-1)
        full_mask = torch.cat([torch.zeros_like(mask), mask], dim=-1)
        keys = list(batch["keys"])
        raw = self._cached_latents("image", keys, diptych)
        raw_masked = self._cached_latents("masked", keys, masked)
        p, c, h, w = self.pipe, self.channels, raw.shape[2], raw.shape[3]
        mask_packed, masked_packed = p.prepare_mask_latents(
            full_mask.to(self.device, self.dtype), raw_masked, b, c, 1, r, 2 * r, self.dtype, self.device, None
        )
        x0 = (raw - self.vae.config.shift_factor) * self.vae.config.scaling_factor
        x0 = p._pack_latents(x0, b, c, h, w)
        seq, pooled, text_ids = self.text(prompts_for(batch, self.cfg.prompt_template))
        img_ids = p._prepare_latent_image_ids(b, h // 2, w // 2, self.device, self.dtype)
        columns = torch.arange(h // 2 * (w // 2), device=self.device) % (w // 2)
        return FluxBatch(
            x0=x0, cond=torch.cat([masked_packed, mask_packed], dim=-1), target=columns >= w // 4,
            img_ids=img_ids, prompt_embeds=seq, pooled=pooled, text_ids=text_ids, height=r, width=2 * r,
        )

    @torch.no_grad()
    def decode_target(self, packed: torch.Tensor, fb: FluxBatch) -> torch.Tensor:
        """Packed diptych latents -> the target half as images in [-1, 1] (float32, on the CPU)."""
        lat = self.pipe._unpack_latents(packed.to(self.dtype), fb.height, fb.width, self.scale)
        lat = lat / self.vae.config.scaling_factor + self.vae.config.shift_factor
        img = self.vae.decode(lat, return_dict=False)[0].float().clamp(-1, 1).cpu()
        return img[..., fb.width // 2:]

    def scheduler(self) -> Any:
        """A fresh FLUX flow-matching scheduler from the snapshot (it keeps a step index, so one per sampling)."""
        return require_diffusers().FlowMatchEulerDiscreteScheduler.from_config(self.scheduler_config)

