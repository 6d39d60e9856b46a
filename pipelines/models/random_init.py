"""Random weights and small configs, so tests and dry runs exercise the real model code without any download.

The networks are the real classes (GroundingDINO, SAM, open_clip) with their own code paths; only the weights
are random and, where it matters for speed, the configs are shrunk. Everything is seeded, so two builds give
identical weights and identical outputs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import string
import tempfile
from pathlib import Path
from typing import Iterator

import torch

#: GroundingDINO config changes for a fast test model (the Swin-T backbone stays, the transformer shrinks)
TINY_DINO_OVERRIDES: dict[str, object] = {
    "enc_layers": 1,
    "dec_layers": 1,
    "num_queries": 100,
    "dim_feedforward": 256,
}

_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_CHARS = string.ascii_lowercase + string.digits
_RANDOM_ENCODER_VERSION = "v1"


@contextlib.contextmanager
def seeded(seed: int = 0) -> Iterator[None]:
    """Run a block with torch's CPU RNG seeded, leaving the caller's RNG state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def write_random_text_encoder(folder: str | Path, hidden_size: int = 128, layers: int = 2, seed: int = 0) -> Path:
    """Save a randomly initialised small BERT and a fast tokenizer into ``folder``; usable as GroundingDINO's
    ``text_encoder``.

    The vocabulary holds single characters and their ``##`` continuations, so any lower-case ASCII prompt
    tokenizes (one token per character, which also makes prompt lists long enough to exercise chunking).
    """
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = _SPECIAL_TOKENS + list(".,?!-'&/()") + list(_CHARS) + [f"##{c}" for c in _CHARS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden_size, num_hidden_layers=layers,
                        num_attention_heads=max(1, hidden_size // 64), intermediate_size=2 * hidden_size,
                        max_position_embeddings=512)
    with seeded(seed):
        BertModel(config).save_pretrained(folder)
    return folder


def random_text_encoder_dir() -> Path:
    """A shared random text encoder in the temp folder, written once per machine (Ray workers reuse it)."""
    target = Path(tempfile.gettempdir()) / f"unieditkit-random-bert-{_RANDOM_ENCODER_VERSION}"
    if (target / "model.safetensors").is_file():
        return target
    staging = Path(tempfile.mkdtemp(prefix="unieditkit-random-bert-"))
    write_random_text_encoder(staging)
    try:
        os.rename(staging, target)
    except OSError:  # another process won the race; its folder is identical
        shutil.rmtree(staging, ignore_errors=True)
    return target
