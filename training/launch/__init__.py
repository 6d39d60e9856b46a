"""Starting training ranks on a Ray cluster (``on_ray``); torchrun starts ``python -m unieditkit.training.train``
itself."""
