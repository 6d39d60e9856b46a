"""Open-vocabulary detection with GroundingDINO (groundingdino-py, pure PyTorch).

GroundingDINO reads one caption of prompts joined by " . " and scores every box against every caption token.
A detection is assigned to the prompt whose tokens score highest, so its ``phrase`` is always one of the
prompts passed in (never a fragment spanning two prompts, as decoding thresholded tokens can give), and maps
back to its taxonomy subcategory through ``PromptMap``. A domain's prompt list can exceed the 256 tokens the
text encoder takes, so prompts are split into chunks that each fit; detections of all chunks are merged with
class-agnostic NMS.

Batches hold images of one input size only. GroundingDINO takes padded batches (a padding mask travels with
the images), but the Swin backbone's windows see the padding, so an image's detections would depend on its
batch-mates: with random weights, one image's boxes moved by up to 400 px and its detection count went from 100
to 17 when padded next to a larger image. A unit's shard must not depend on which units Ray batches it with, and
images of one size (video frames, multi-view captures, most datasets) give the same detections batched as
alone, bit for bit on CPU (``tests/models/test_detect.py``).
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from groundingdino.models import build_model
from groundingdino.util.misc import NestedTensor
from groundingdino.util.slconfig import SLConfig
from torchvision.ops import nms

from unieditkit.errors import UserError

from .base import Detection, Detector, SubcategoryLike, check_image
from .device import resolve_device
from .random_init import seeded
from .weights import ModelSpec, dino_config, load_checked, load_state_dict, text_encoder_dir

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
_PLAN_CACHE_SIZE = 16


def normalize_prompt(prompt: str) -> str:
    """Lower-case, single-spaced prompt without "." or "?", which GroundingDINO treats as prompt separators."""
    text = " ".join(re.sub(r"[.?]", " ", prompt.lower()).split())
    if not text:
        raise UserError(f"detector prompt {prompt!r}: empty after removing punctuation; give the object's name")
    return text


class PromptMap:
    """Detector prompts of a set of subcategories, and the way back from a detection's phrase to its key.

    A subcategory contributes its ``prompts`` (or its ``name`` when it has none). A prompt shared by two
    subcategories is kept for the first only: the detector could not tell them apart anyway, and the
    categorizer refines the label later.
    """

    def __init__(self, subcategories: Sequence[SubcategoryLike]) -> None:
        self.prompts: list[str] = []
        self._owner: dict[str, str] = {}
        for sub in subcategories:
            for prompt in tuple(sub.prompts) or (sub.name,):
                norm = normalize_prompt(prompt)
                if norm not in self._owner:
                    self._owner[norm] = sub.key
                    self.prompts.append(prompt)

    def subcategory(self, phrase: str) -> str:
        """The key of the subcategory whose prompt is ``phrase``."""
        try:
            return self._owner[normalize_prompt(phrase)]
        except KeyError:
            raise UserError(f"detection phrase {phrase!r}: not one of this domain's prompts") from None


@dataclass(frozen=True)
class _Chunk:
    caption: str
    prompt_indices: tuple[int, ...]
    spans: tuple[tuple[int, int], ...]  # token range [start, end) of each prompt in the tokenized caption


def plan_chunks(prompts: Sequence[str], tokenizer: Any, max_tokens: int = 256) -> list[_Chunk]:
    """Split ``prompts`` into captions of at most ``max_tokens`` tokens and locate each prompt's tokens.

    BERT tokenizes words independently and splits at punctuation, so a caption's tokens are the concatenation
    of its prompts' tokens with one "." token after each; that is checked against the real tokenization.
    """
    normalized = [normalize_prompt(p) for p in prompts]
    budget = max_tokens - 2  # [CLS] and [SEP]
    chunks: list[list[tuple[int, list[int]]]] = [[]]
    used = 0
    for index, text in enumerate(normalized):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        cost = len(ids) + 1
        if cost > budget:
            raise UserError(f"detector prompt {prompts[index]!r}: {len(ids)} tokens, more than the {budget - 1} "
                            "GroundingDINO reads; shorten it")
        if used + cost > budget:
            chunks.append([])
            used = 0
        chunks[-1].append((index, ids))
        used += cost
    dot = tokenizer.convert_tokens_to_ids(".")
    plans = []
    for chunk in chunks:
        caption = " . ".join(normalized[i] for i, _ in chunk) + " ."
        expected = [tokenizer.cls_token_id]
        spans = []
        for _, ids in chunk:
            spans.append((len(expected), len(expected) + len(ids)))
            expected += ids + [dot]
        expected.append(tokenizer.sep_token_id)
        if tokenizer(caption)["input_ids"] != expected:
            raise RuntimeError(f"tokenizer splits the caption {caption!r} differently from its prompts")
        plans.append(_Chunk(caption, tuple(i for i, _ in chunk), tuple(spans)))
    return plans


class _DeviceNestedTensor(NestedTensor):
    """GroundingDINO's ``NestedTensor`` (padded images + padding mask) that also answers ``.device``, which the
    model's forward asks of its input before it looks at the mask; a plain tensor would lose the mask."""

    @property
    def device(self) -> torch.device:
        return self.tensors.device


class GroundingDinoDetector(Detector):
    """GroundingDINO box detector for text prompts.

    ``config_path``: a GroundingDINO config .py (``None``: SwinT-OGC shipped with groundingdino-py);
    ``checkpoint_path``: its weights (``None``: seeded random weights, for tests and benchmarks);
    ``text_encoder``: BERT folder or hub name (see ``weights.text_encoder_dir``);
    ``box_threshold``: keep a box whose best token score exceeds it; ``text_threshold``: and whose best prompt
    scores above this; ``image_size``/``max_size``: shorter/longer side the image is resized to (800/1333 as in
    training); ``nms_iou``: IoU above which overlapping detections (from different chunks, or duplicates) are
    merged; ``config_overrides``: config values replaced after loading (tests shrink the model with them).
    """

    def __init__(
        self,
        config_path: str | Path | None = None,
        checkpoint_path: str | Path | None = None,
        text_encoder: str = "bert-base-uncased",
        box_threshold: float = 0.35,
        text_threshold: float = 0.25,
        device: str = "cpu",
        image_size: int = 800,
        max_size: int = 1333,
        nms_iou: float = 0.7,
        max_detections: int = 100,
        config_overrides: dict[str, Any] | None = None,
    ) -> None:
        if not (0 <= text_threshold <= 1 and 0 <= box_threshold <= 1 and 0 < nms_iou <= 1):
            raise UserError("GroundingDINO thresholds: box_threshold and text_threshold must lie in [0, 1], "
                            "nms_iou in (0, 1]")
        config = Path(config_path) if config_path else dino_config(ModelSpec())
        if not config.is_file():
            raise UserError(f"--dino-config {config}: file not found; pass a GroundingDINO config .py")
        self.device = resolve_device(device)
        self.box_threshold = box_threshold
        self.text_threshold = text_threshold
        self.image_size = image_size
        self.max_size = max_size
        self.nms_iou = nms_iou
        self.max_detections = max_detections
        args = SLConfig.fromfile(str(config))
        for key, value in (config_overrides or {}).items():
            setattr(args, key, value)
        args.text_encoder_type = str(text_encoder_dir(text_encoder))
        args.device = str(self.device)
        # activation checkpointing only saves memory in training and warns on every inference call
        args.use_checkpoint = False
        args.use_transformer_ckpt = False
        with seeded(0), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)  # torch.meshgrid indexing, in Swin
            model = build_model(args)  # prints the encoder path, hence the redirect
        if checkpoint_path is not None:
            self._load(model, checkpoint_path)
        self.model = model.to(self.device).eval()
        self.max_text_len = model.max_text_len
        self._plans: dict[tuple[str, ...], list[_Chunk]] = {}

    @staticmethod
    def _load(model: torch.nn.Module, checkpoint_path: str | Path) -> None:
        state = load_state_dict(checkpoint_path, "--dino-checkpoint")
        load_checked(model, state, "groundingdino", "--dino-checkpoint", checkpoint_path)

    def detect(self, image: np.ndarray, prompts: Sequence[str]) -> list[Detection]:
        return self.detect_batch([image], prompts)[0]

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """The size an image is resized to (shorter side ``image_size``, longer at most ``max_size``); images of
        equal input size can share a forward pass."""
        scale = self.image_size / min(height, width)
        if max(height, width) * scale > self.max_size:
            scale = self.max_size / max(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))

    def detect_batch(self, images: Sequence[np.ndarray], prompts: Sequence[str], batch_size: int = 8) -> list[list[Detection]]:
        """``detect`` for several images: those of equal input size go through the model together, at most
        ``batch_size`` per forward pass (see the module docstring for why sizes are not mixed)."""
        for i, image in enumerate(images):
            check_image(image, f"image {i}")
        if batch_size < 1:
            raise UserError(f"detector batch_size {batch_size}: must be at least 1 (stages.yaml batch_size)")
        results: list[list[Detection]] = [[] for _ in images]
        if not images or not prompts:
            return results
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(self.input_size(*image.shape[:2]), []).append(i)
        for size, members in by_size.items():
            for start in range(0, len(members), batch_size):
                chunk = members[start : start + batch_size]
                for i, found in zip(chunk, self._forward([images[i] for i in chunk], size, prompts)):
                    results[i] = found
        return results

    @torch.inference_mode()
    def _forward(self, images: Sequence[np.ndarray], size: tuple[int, int], prompts: Sequence[str]) -> list[list[Detection]]:
        """One forward pass per prompt chunk for images that all resize to ``size``."""
        plans = self._plan(tuple(prompts))
        samples = self._batch(images, size)
        found: list[list[tuple[np.ndarray, float, int]]] = [[] for _ in images]
        for chunk in plans:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=UserWarning)
                warnings.simplefilter("ignore", category=FutureWarning)
                out = self.model(samples, captions=[chunk.caption] * len(images))
            logits = out["pred_logits"].sigmoid().float().cpu()  # B x queries x text tokens
            boxes = out["pred_boxes"].float().cpu()  # B x queries x (cx, cy, w, h), relative
            span_scores = torch.stack([logits[:, :, s:e].amax(dim=2) for s, e in chunk.spans], dim=2)
            best, which = span_scores.max(dim=2)
            overall = logits.amax(dim=2)
            keep = (overall > self.box_threshold) & (best > self.text_threshold)
            for b, image in enumerate(images):
                h, w = image.shape[:2]
                for q in torch.nonzero(keep[b]).flatten().tolist():
                    cx, cy, bw, bh = boxes[b, q].tolist()
                    xyxy = np.array([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h])
                    xyxy = np.clip(xyxy, 0, [w, h, w, h])
                    if xyxy[2] > xyxy[0] and xyxy[3] > xyxy[1]:
                        found[b].append((xyxy, float(overall[b, q]), chunk.prompt_indices[int(which[b, q])]))
        return [self._merge(items, prompts) for items in found]

    def _plan(self, prompts: tuple[str, ...]) -> list[_Chunk]:
        if prompts not in self._plans:
            if len(self._plans) >= _PLAN_CACHE_SIZE:
                self._plans.pop(next(iter(self._plans)))
            self._plans[prompts] = plan_chunks(prompts, self.model.tokenizer, self.max_text_len)
        return self._plans[prompts]

    def _batch(self, images: Sequence[np.ndarray], size: tuple[int, int]) -> _DeviceNestedTensor:
        """Resize each image to ``size``, normalise, and stack; the padding mask is all False (nothing padded)."""
        mean = torch.tensor(_MEAN, device=self.device)[:, None, None]
        std = torch.tensor(_STD, device=self.device)[:, None, None]
        tensors = []
        for image in images:
            t = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)[None].float() / 255
            t = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)[0]
            tensors.append((t - mean) / std)
        batch = torch.stack(tensors)
        mask = torch.zeros((len(tensors), *size), dtype=torch.bool, device=self.device)
        return _DeviceNestedTensor(batch, mask)

    def _merge(self, items: list[tuple[np.ndarray, float, int]], prompts: Sequence[str]) -> list[Detection]:
        """Class-agnostic NMS over all chunks' detections, best first, at most ``max_detections``."""
        if not items:
            return []
        boxes = torch.tensor(np.stack([b for b, _, _ in items]), dtype=torch.float32)
        scores = torch.tensor([s for _, s, _ in items], dtype=torch.float32)
        kept = nms(boxes, scores, self.nms_iou).tolist()[: self.max_detections]
        return [
            Detection(bbox=tuple(float(v) for v in items[k][0]), score=items[k][1], phrase=prompts[items[k][2]])
            for k in kept
        ]
