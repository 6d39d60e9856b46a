"""Segment stage: a mask for every object that has only a box (detected, or box-only annotations).

One ``set_image`` per image with all its boxes in one call (see ``pipelines.models.segment``). Masks travel
on as COCO RLE in the row's JSON; ``mask_source`` records which segmenter made them (``sam``, ``mobile_sam``,
``sam2``, or the classical ``grabcut`` fallback used, and announced, when no checkpoint is found).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from unieditkit import rle
from unieditkit.imageio import ImageReadError
from unieditkit.media import load_uri

from ..models.factory import build_segmenter
from ..models.weights import ModelSpec


def _needs_mask(obj: dict[str, Any]) -> bool:
    return not obj.get("segmentation") and not obj.get("mask_uri")


class SegmentStage:
    def __init__(self, spec: ModelSpec, device: str = "cpu") -> None:
        self.segmenter = build_segmenter(spec, device=device)

    def segment_objects(self, uri: str, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        todo = [o for o in objects if _needs_mask(o)]
        if not todo:
            return objects
        try:
            image = load_uri(uri)
        except ImageReadError:
            return objects  # the pair stage reloads the image and records why it failed
        h, w = image.shape[:2]
        boxes = np.asarray([o["bbox"] for o in todo], dtype=np.float32).reshape(-1, 4)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        masks = iter(self.segmenter.segment(image, boxes[valid]) if valid.any() else [])
        for obj, ok in zip(todo, valid):
            if ok:
                obj.update(segmentation=rle.encode(next(masks)), image_size=[w, h], mask_source=self.segmenter.name)
        return objects

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        for row in rows:
            row["objects"] = json.dumps(self.segment_objects(row["tgt_uri"], json.loads(row["objects"])), sort_keys=True)
            if row["ref_uri"]:
                row["ref_objects"] = json.dumps(self.segment_objects(row["ref_uri"], json.loads(row["ref_objects"])), sort_keys=True)
        return pa.Table.from_pylist(rows, schema=batch.schema)
