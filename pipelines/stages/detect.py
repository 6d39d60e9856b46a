"""Detect stage: GroundingDINO boxes for the domain's subcategory prompts on unannotated units.

A Ray Data actor: the detector is built once per actor in ``__init__`` and each call handles a batch of unit
rows. Units that already carry annotations pass through untouched. Two-image units (video frames, views)
are detected in both images, so the pair stage can match the same object across them.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from taxonomy import load_taxonomy
from unieditkit.imageio import ImageReadError
from unieditkit.media import load_uri

from ..models.detect import PromptMap
from ..models.factory import build_detector
from ..models.weights import ModelSpec


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


class DetectStage:
    def __init__(self, spec: ModelSpec, domain: str, taxonomy_path: str = "", max_objects: int = 3, device: str = "cpu", **options: Any) -> None:
        self.detector = build_detector(spec, device=device, **options)
        self.taxonomy = load_taxonomy(taxonomy_path or None)
        self.domain = domain
        self.prompt_map = PromptMap(self.taxonomy.domain(domain).subcategories)
        self.max_objects = max_objects

    def prompts_for(self, hint: str) -> PromptMap:
        """A source that knows the object's category (a multiview folder name) narrows the prompts to it."""
        sub = self.taxonomy.lookup(hint) if hint else None
        return PromptMap([sub]) if sub is not None and sub.domain == self.domain else self.prompt_map

    def _detect(self, uri: str, prompts: PromptMap) -> list[dict[str, Any]]:
        try:
            image = load_uri(uri)
        except ImageReadError:
            return []  # the pair stage reloads the image and records why it failed
        h, w = image.shape[:2]
        return detections_to_objects(self.detector.detect(image, prompts.prompts), prompts, (w, h), self.max_objects)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        for row in rows:
            if not row["needs_detection"]:
                continue
            prompts = self.prompts_for(row["category_hint"])
            row["objects"] = json.dumps(self._detect(row["tgt_uri"], prompts), sort_keys=True)
            if row["ref_uri"]:
                row["ref_objects"] = json.dumps(self._detect(row["ref_uri"], prompts), sort_keys=True)
        return pa.Table.from_pylist(rows, schema=batch.schema)

