"""The built-in DiT editor (``editor``) and its rectified-flow objective (``flow``): small enough to train on a CPU."""
