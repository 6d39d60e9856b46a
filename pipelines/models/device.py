"""Device selection shared by the torch backends."""

from __future__ import annotations

import torch

from unieditkit.errors import UserError


def resolve_device(device: str) -> torch.device:
    """``device`` as a torch device, refusing CUDA on a machine without it (torch would fail later, per batch);
    ``auto`` is the first GPU when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise UserError(f"--device {device}: not a torch device; use cpu, cuda or cuda:N") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    return dev
