"""Segment stage: a mask for every object that has only a box (detected, or box-only annotations).

An image model stage (``images.py``). Each distinct image of a call is segmented once for its boxes, however many
units share it (the reference view of a multi-view set), with all its boxes in one call and the image encoder
run on ``batch_size`` images at once (see ``unieditkit.pipelines.models.segment``). Masks travel on as COCO RLE in the row's
JSON; ``mask_source`` records which segmenter made them (``sam``, ``mobile_sam``, ``sam2``, or the classical
``grabcut`` fallback used, and announced, when no checkpoint is found).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from unieditkit import rle

from ..models.factory import build_segmenter
from ..models.weights import ModelSpec
from .images import DecodedImages, ImageStage


def _needs_mask(obj: dict[str, Any]) -> bool:
    return not obj.get("segmentation") and not obj.get("mask_uri")


def _valid_boxes(objects: list[dict[str, Any]], width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The objects' boxes clipped to the image, and which of them still have an area (the others get no mask)."""
    boxes = np.asarray([o["bbox"] for o in objects], dtype=np.float32).reshape(-1, 4)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    return boxes, (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


class SegmentStage(ImageStage):
    def __init__(self, spec: ModelSpec, device: str = "cpu", batch_size: int = 8) -> None:
        self.segmenter = build_segmenter(spec, device=device)
        self.batch_size = batch_size

    def process(self, rows: list[dict[str, Any]], images: DecodedImages) -> None:
        fields = []  # (row, column, uri, objects) of every image of every row
        for row in rows:
            fields.append((row, "objects", row["tgt_uri"], json.loads(row["objects"])))
            if row["ref_uri"]:
                fields.append((row, "ref_objects", row["ref_uri"], json.loads(row["ref_objects"])))
        jobs: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # (uri, boxes) -> image, boxes, valid
        for _, _, uri, objects in fields:
            todo = [o for o in objects if _needs_mask(o)]
            image = images.get(uri) if todo else None  # unreadable: the pair stage records why
            if image is not None:
                key = (uri, json.dumps([o["bbox"] for o in todo]))
                if key not in jobs:
                    jobs[key] = (image, *_valid_boxes(todo, image.shape[1], image.shape[0]))
        items = [(image, boxes[valid]) for image, boxes, valid in jobs.values()]
        masks = {key: [rle.encode(m) for m in found] for key, found in zip(jobs, self.segmenter.segment_batch(items, self.batch_size))}
        for row, column, uri, objects in fields:
            todo = [o for o in objects if _needs_mask(o)]
            key = (uri, json.dumps([o["bbox"] for o in todo]))
            if key in jobs:
                image, _, valid = jobs[key]
                size = [image.shape[1], image.shape[0]]
                found = iter(masks[key])
                for obj, ok in zip(todo, valid):
                    if ok:
                        obj.update(segmentation=next(found), image_size=size, mask_source=self.segmenter.name)
            row[column] = json.dumps(objects, sort_keys=True)
