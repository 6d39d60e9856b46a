"""Training the reference-guided MoT editor on shards written by ``unieditkit build`` (see docs/TRAINING.md).

``mot`` (MoT layers for any transformer), ``routing`` (Anchor-Guided Routing), ``editor`` (the built-in DiT),
``flow`` (rectified-flow objective), ``data`` + ``curriculum`` (shards and MATS), ``train`` (the loop),
``cli`` (``unieditkit train``), ``flux_adapter`` (MoT on FLUX.1-Fill, optional).
"""
