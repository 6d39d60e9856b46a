"""What a run needs around the model: process groups and DDP/FSDP wrapping (``distributed``), checkpoints,
the run log, EMA of the weights, the optimizer and seeding."""
