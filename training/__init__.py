"""Training the reference-guided MoT editor on shards written by ``unieditkit build`` (see docs/TRAINING.md).

Read it from the top: ``cli`` (``unieditkit train``) → ``config`` → ``train`` (the loop, also ``python -m
unieditkit.training.train`` under torchrun) → ``data`` (shards → batches). The rooms below hold the rest:

* ``model/``: what the paper adds to any transformer: MoT layers, Anchor-Guided Routing, anchors, the MATS curriculum;
* ``backbones/``: the transformers MoT is put on: ``builtin/`` (a small DiT trained from scratch) and ``flux/``
  (FLUX.1-Fill through diffusers, optional); ``base`` is what the loop asks of either;
* ``runtime/``: what a run needs around the model: DDP/FSDP, checkpoints, the run log, EMA, optimizer, seeding;
* ``launch/``: starting ranks on a Ray cluster (torchrun needs nothing of ours);
* ``edit``: ``unieditkit edit``, a trained run applied to new images.
"""
