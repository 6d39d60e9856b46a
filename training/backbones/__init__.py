"""The transformers MoT is put on. ``base`` is the interface the training loop uses; ``builtin/`` and ``flux/`` each
implement it, so the loop never asks which one it drives."""
