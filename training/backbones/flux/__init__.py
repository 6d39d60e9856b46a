"""FLUX.1-Fill through diffusers: loading and MoT on its transformer (``adapter``), its packed inputs (``inputs``),
its flow objective (``flow``), cached latents (``latent_cache``) and the memory each GPU needs (``memory``)."""
