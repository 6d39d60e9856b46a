"""``--cache DIR``: VAE latents and text embeddings on disk, so each is computed once per sample and prompt.

Entries are keyed by what determines them: a latent by the sample key and a hash of the exact input pixels (so a
re-drawn rough mask or another image size is a new entry, never a stale one), a text embedding by a hash of the
prompt. ``DIR/cache.json`` records the snapshot's encoder configs and weight sizes and the settings that change
the values (dtype, T5 length); a cache made with other ones is refused, because mixing them would silently train
on inputs the current encoders would not produce. Files are written atomically (temporary name, then rename), so
ranks sharing the folder and a killed run leave only whole entries. Loading uses ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib

import torch

from unieditkit.training.config import ModelConfig
from unieditkit.errors import UserError

FORMAT = 1


def _fingerprint(root: pathlib.Path, cfg: ModelConfig) -> dict:
    parts = {}
    for folder in ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"):
        for f in sorted((root / folder).glob("*")):
            if f.is_file():
                data = f.read_bytes() if f.suffix == ".json" else str(f.stat().st_size).encode()
                parts[f"{folder}/{f.name}"] = hashlib.sha1(data).hexdigest()[:16]
    return {"format": FORMAT, "dtype": cfg.backbone_dtype, "max_sequence_length": cfg.max_sequence_length,
            "snapshot": parts}


class LatentCache:
    def __init__(self, folder: str | pathlib.Path, snapshot: pathlib.Path, cfg: ModelConfig) -> None:
        self.folder = pathlib.Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise UserError(f"--cache {self.folder}: is a file; pass a folder for the latent cache")
        want = _fingerprint(snapshot, cfg)
        marker = self.folder / "cache.json"
        if marker.is_file():
            have = json.loads(marker.read_text(encoding="utf-8"))
            if have != want:
                raise UserError(
                    f"--cache {self.folder}: made with another snapshot or settings (dtype, max_sequence_length); "
                    "pass a new --cache folder"
                )
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            _atomic(marker, lambda f: f.write(json.dumps(want, sort_keys=True).encode()))

    def _path(self, kind: str, name: str) -> pathlib.Path:
        return self.folder / kind / f"{name}.pt"

    @staticmethod
    def _pixels(image: torch.Tensor) -> str:
        return hashlib.sha1(image.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()[:20]

    def latent(self, kind: str, key: str, image: torch.Tensor) -> torch.Tensor | None:
        return self._load(self._path(kind, f"{key}-{self._pixels(image)}"))

    def put_latent(self, kind: str, key: str, image: torch.Tensor, latent: torch.Tensor) -> None:
        self._save(self._path(kind, f"{key}-{self._pixels(image)}"), {"latent": latent.contiguous()})

    def _text_path(self, prompt: str) -> pathlib.Path:
        return self._path("text", hashlib.sha1(prompt.encode()).hexdigest())

    def has_text(self, prompt: str) -> bool:
        return self._text_path(prompt).is_file()

    def text(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        hit = self._load(self._text_path(prompt))
        return None if hit is None else (hit["seq"], hit["pooled"])

    def put_text(self, prompt: str, seq: torch.Tensor, pooled: torch.Tensor) -> None:
        self._save(self._text_path(prompt), {"seq": seq.contiguous(), "pooled": pooled.contiguous()})

    @staticmethod
    def _load(path: pathlib.Path):
        if not path.is_file():
            return None
        data = torch.load(path, map_location="cpu", weights_only=True)
        return data["latent"] if "latent" in data else data

    @staticmethod
    def _save(path: pathlib.Path, payload: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic(path, lambda f: torch.save(payload, f))


def _atomic(path: pathlib.Path, write) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)
