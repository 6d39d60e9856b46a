"""FLUX.1-Fill with MoT experts: flow-matching fine-tuning and sampling, the way FLUX.1-Fill is trained and run.

* **Times.** ``t`` is drawn logit-normal (or uniform, ``train.t_sampling``) and then shifted toward noise by the
  snapshot scheduler's own rule: with ``use_dynamic_shifting`` (FLUX) the shift ``mu`` grows with the token count
  of the diptych (``calculate_shift``, as ``FluxFillPipeline`` does at inference), else the static ``shift``.
  ``x_t = (1 - s) x0 + s * noise`` over the whole packed diptych; the transformer predicts ``noise - x0``.
* **Conditioning.** Input tokens are ``[x_t | masked-image latents | packed mask]`` (``flux_inputs.py``), the
  guidance embedding gets ``model.guidance`` (FLUX.1-Fill-dev's default is 30), the text is T5 + CLIP pooled.
* **Loss** on the target half only: the reference half is given clean as condition and never supervised.
* **Routing** from the clean reference tokens (``FluxBatch.ref_tokens``): independent of ``t`` and the noise.
* **Precision.** The backbone is frozen in ``model.backbone_dtype`` (bf16 by default), its linear weights
  quantized with ``model.backbone_quant`` (int8, fp8 or nf4, computed in bf16); experts and router stay
  fp32 (the optimizer updates fp32 master weights), cast to the activations' dtype inside each ``MoTLinear``.
* **Text encoders.** Training with ``data.cache`` encodes every prompt of the run's shards into the cache at its
  first batch (``prepare``) and then releases T5 and CLIP (``FluxFillInputs.cache_prompts``): no training step
  holds their ~10 GB. Sampling alone (``unieditkit edit``) loads them on the first uncached prompt, as before.
* **Sampling** (previews, ``unieditkit edit``) integrates with the snapshot's ``FlowMatchEulerDiscreteScheduler``
  on the pipeline's shifted sigmas, decodes with the VAE and pastes the known target pixels back.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unieditkit.training.model.anchors import Anchors
from unieditkit.training.config import Config
from unieditkit.training.backbones.builtin.flow import LossParts, noise_like, paste_known, sample_t
from unieditkit.training.backbones.flux.adapter import FluxMoT, load_flux_fill_transformer
from unieditkit.training.backbones.flux.inputs import FluxBatch, FluxFillInputs, shard_prompts


class FluxBackend:
    def __init__(self, cfg: Config, device: torch.device) -> None:
        m = cfg.model
        self.cfg = m
        self.data = cfg.data
        self.val_every = cfg.train.val_every
        self._prompts_pending = bool(cfg.data.cache)
        self.device = device
        self.anchors = Anchors.from_taxonomy(m.taxonomy)
        self.inputs = FluxFillInputs(m, device, cfg.data.cache)
        transformer = load_flux_fill_transformer(self.inputs.root, self.inputs.dtype, device, m.backbone_quant)
        if m.gradient_checkpointing:
            transformer.enable_gradient_checkpointing()
        self.module = FluxMoT(
            transformer, self.anchors, num_experts=m.num_experts, rank=m.rank, alpha=m.alpha, top_k=m.top_k,
            prior_scale=m.prior_scale, patterns=m.mot_patterns or None, anchor_floor=m.anchor_floor,
            routing=m.routing,
        ).to(device)

    def prepare(self, batch: dict) -> dict:
        if self._prompts_pending:
            self._cache_prompts()
        return {**batch, "flux": self.inputs.encode(batch)}

    def _cache_prompts(self) -> None:
        """Every prompt of the train split (and the val split when validating) into the cache, then the text
        encoders go; rank r of n starts at the r/n point of the list, so the ranks share the first run's work."""
        from unieditkit.training.data import find_shards, val_shards

        d = self.data
        shards = find_shards(d.root, d.split, d.domains) + (val_shards(d.root, d.domains) if self.val_every else [])
        prompts = shard_prompts(shards, self.cfg.prompt_template)
        dist = torch.distributed
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        self.inputs.cache_prompts(prompts, len(prompts) * rank // world)
        self._prompts_pending = False

    def _mu(self, fb: FluxBatch) -> float:
        from diffusers.pipelines.flux.pipeline_flux_fill import calculate_shift

        c = self.inputs.scheduler_config
        return calculate_shift(int(fb.x0.shape[1]), c.get("base_image_seq_len", 256), c.get("max_image_seq_len", 4096),
                               c.get("base_shift", 0.5), c.get("max_shift", 1.15))

    def shifted(self, t: torch.Tensor, fb: FluxBatch) -> torch.Tensor:
        """Training sigmas: ``t`` shifted as the snapshot's scheduler shifts its inference sigmas."""
        c = self.inputs.scheduler_config
        if c.get("use_dynamic_shifting", False):
            mu = self._mu(fb)
            return np.exp(mu) / (np.exp(mu) + (1.0 / t - 1.0))
        shift = float(c.get("shift", 1.0))
        return shift * t / (1.0 + (shift - 1.0) * t)

    def _forward(self, model: nn.Module, batch: dict, fb: FluxBatch, x_t: torch.Tensor, sigma: torch.Tensor):
        n = x_t.shape[0]
        dtype = self.inputs.dtype
        out, routed = model(
            domain=batch["domain"].to(self.device), subcategory=batch["subcategory"].to(self.device),
            ref_tokens=fb.ref_tokens(),
            hidden_states=torch.cat([x_t.to(dtype), fb.cond], dim=-1),
            timestep=sigma.to(self.device, dtype),
            guidance=torch.full((n,), self.cfg.guidance, device=self.device, dtype=torch.float32),
            pooled_projections=fb.pooled, encoder_hidden_states=fb.prompt_embeds,
            txt_ids=fb.text_ids, img_ids=fb.img_ids, return_dict=False,
        )
        return out[0], routed

    def loss(self, model: nn.Module, batch: dict, generator: torch.Generator, t_sampling: str,
             balance_coef: float) -> LossParts:
        fb: FluxBatch = batch["flux"]
        x0 = fb.x0.float()
        noise = torch.randn(x0.shape, generator=generator).to(self.device)
        t = sample_t(x0.shape[0], t_sampling, generator).clamp(1e-4, 1 - 1e-4)
        sigma = self.shifted(t, fb).to(self.device)
        x_t = (1.0 - sigma[:, None, None]) * x0 + sigma[:, None, None] * noise
        velocity, routed = self._forward(model, batch, fb, x_t, sigma)
        flow = F.mse_loss(velocity[:, fb.target].float(), (noise - x0)[:, fb.target])
        balance = routed.balance_loss
        return LossParts(flow + balance_coef * balance, flow, balance, routed.expert_load())

    @torch.no_grad()
    def sample(self, batch: dict, steps: int, generator: torch.Generator | list[torch.Generator]) -> torch.Tensor:
        fb = self.inputs.encode(batch)
        scheduler = self.inputs.scheduler()
        sigmas = np.linspace(1.0, 1.0 / steps, steps)
        if scheduler.config.get("use_dynamic_shifting", False):
            scheduler.set_timesteps(sigmas=sigmas, mu=self._mu(fb), device=self.device)
        else:
            scheduler.set_timesteps(sigmas=sigmas, device=self.device)
        x = noise_like(fb.x0.shape, generator).to(self.device, self.inputs.dtype)
        was_training = self.module.training
        self.module.eval()
        for t in scheduler.timesteps:
            sigma = (t / 1000).expand(x.shape[0])
            velocity, _ = self._forward(self.module, batch, fb, x, sigma)
            x = scheduler.step(velocity, t, x, return_dict=False)[0]
        self.module.train(was_training)
        return paste_known(self.inputs.decode_target(x, fb), batch)
