"""Detect stage: GroundingDINO boxes for the domain's subcategory prompts on unannotated units.

An image model stage (``images.py``): the detector is built once per actor and each call handles a batch of
unit rows. Units that already carry annotations pass through untouched. Two-image units (video frames, views)
are detected in both images, so the pair stage can match the same object across them. Each distinct image of a
call is detected once per prompt set, however many units share it, and images go through the detector
``batch_size`` at a time.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from unieditkit.taxonomy import load_taxonomy
from ..models.detect import PromptMap
from ..models.factory import build_detector
from ..models.weights import ModelSpec
from .images import DecodedImages, ImageStage


def detections_to_objects(dets: list, prompt_map: PromptMap, size: tuple[int, int], max_objects: int) -> list[dict[str, Any]]:
    objects = []
    for i, d in enumerate(sorted(dets, key=lambda d: -d.score)[:max_objects]):
        key = prompt_map.subcategory(d.phrase)
        objects.append(
            {
                "category": key,
                "subcategory": key,
                "bbox": [round(float(v), 2) for v in d.bbox],
                "object_id": f"det{i}",
                "segmentation": None,
                "mask_uri": "",
                "image_size": list(size),
                "score": round(float(d.score), 5),
                "detector_score": round(float(d.score), 5),
            }
        )
    return objects


class DetectStage(ImageStage):
    def __init__(self, spec: ModelSpec, domain: str, taxonomy_path: str = "", max_objects: int = 3, device: str = "cpu",
                 batch_size: int = 8, **options: Any) -> None:
        self.detector = build_detector(spec, device=device, **options)
        self.taxonomy = load_taxonomy(taxonomy_path or None)
        self.domain = domain
        self.prompt_map = PromptMap(self.taxonomy.domain(domain).subcategories)
        self.max_objects = max_objects
        self.batch_size = batch_size

    def prompts_for(self, hint: str) -> PromptMap:
        """A source that knows the object's category (a multiview folder name) narrows the prompts to it."""
        sub = self.taxonomy.lookup(hint) if hint else None
        return PromptMap([sub]) if sub is not None and sub.domain == self.domain else self.prompt_map

    def process(self, rows: list[dict[str, Any]], images: DecodedImages) -> None:
        todo = [(row, self.prompts_for(row["category_hint"])) for row in rows if row["needs_detection"]]
        wanted: dict[tuple[str, ...], tuple[PromptMap, dict[str, None]]] = {}  # prompt set -> its map, its URIs in order
        for row, prompts in todo:
            uris = wanted.setdefault(tuple(prompts.prompts), (prompts, {}))[1]
            uris.update(dict.fromkeys(u for u in (row["tgt_uri"], row["ref_uri"]) if u))
        found: dict[tuple[str, tuple[str, ...]], str] = {}
        for key, (prompts, uris) in wanted.items():
            readable = [(uri, image) for uri in uris if (image := images.get(uri)) is not None]
            detections = self.detector.detect_batch([image for _, image in readable], prompts.prompts, self.batch_size)
            for (uri, image), dets in zip(readable, detections):
                size = (image.shape[1], image.shape[0])
                found[uri, key] = json.dumps(detections_to_objects(dets, prompts, size, self.max_objects), sort_keys=True)
        for row, prompts in todo:
            key = tuple(prompts.prompts)
            row["objects"] = found.get((row["tgt_uri"], key), "[]")  # unreadable: the pair stage records why
            if row["ref_uri"]:
                row["ref_objects"] = found.get((row["ref_uri"], key), "[]")
