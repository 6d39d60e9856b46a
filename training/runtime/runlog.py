"""Run outputs on rank 0: ``log.jsonl`` (one line per logged step, plus notes), TensorBoard events and previews.

On resume the JSONL log is cut back to the checkpoint's step, so every step appears once even when a run died
between a log line and the next checkpoint.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import torch
from PIL import Image


class RunLog:
    def __init__(self, run_dir: pathlib.Path, enabled: bool, tensorboard: bool, start_step: int) -> None:
        self.enabled = enabled
        self.path = run_dir / "log.jsonl"
        self.preview_dir = run_dir / "previews"
        self.tb = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self._truncate(start_step)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=start_step if start_step else None)

    def _truncate(self, step: int) -> None:
        if not self.path.is_file():
            return
        lines = self.path.read_text(encoding="utf-8").splitlines()
        kept = [ln for ln in lines if ln.strip() and json.loads(ln)["step"] <= step]
        self.path.write_text("".join(f"{ln}\n" for ln in kept), encoding="utf-8")

    def scalars(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **values}, sort_keys=True) + "\n")
        if self.tb is not None:
            for key, value in values.items():
                if isinstance(value, list):
                    for i, v in enumerate(value):
                        self.tb.add_scalar(f"{key}/{i}", v, step)
                elif isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, step)

    def note(self, step: int, text: str) -> None:
        """A choice or fallback the run made (threads, a clipped warm-up, an approximate resume): printed and kept
        in ``log.jsonl`` as ``{"step": N, "note": "..."}`` so the record of the run says what happened."""
        if not self.enabled:
            return
        print(f"unieditkit train: note: {text}", file=sys.stderr, flush=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, "note": text}, sort_keys=True) + "\n")

    def image(self, step: int, grid: np.ndarray) -> pathlib.Path | None:
        """Save an HxWx3 uint8 preview as ``previews/step_XXXXXXXX.png`` (and in TensorBoard)."""
        if not self.enabled:
            return None
        self.preview_dir.mkdir(parents=True, exist_ok=True)
        path = self.preview_dir / f"step_{step:08d}.png"
        Image.fromarray(grid).save(path)
        if self.tb is not None:
            self.tb.add_image("preview", grid, step, dataformats="HWC")
        return path

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    arr = ((img.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return arr.permute(1, 2, 0).numpy()


def preview_grid(batch: dict, prediction: torch.Tensor, n: int) -> np.ndarray:
    """One row per sample: reference | masked target (edit region tinted) | prediction | ground truth."""
    rows = []
    for i in range(min(n, prediction.shape[0])):
        m = batch["mask"][i].cpu()
        masked = batch["tgt"][i].cpu() * (1 - m) + m * torch.tensor([0.6, -0.6, -0.6])[:, None, None]
        cells = [batch["ref"][i], masked, prediction[i], batch["tgt"][i]]
        rows.append(np.concatenate([to_uint8(c) for c in cells], axis=1))
    return np.concatenate(rows, axis=0)
