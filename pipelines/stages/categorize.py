"""Categorize stage: CLIP zero-shot over the domain's subcategories, on the reference crop.

Every sample gets its top-k labels with scores. For mined samples (masks from a segmenter, labels from a
detector phrase) the top label becomes the subcategory and a sample whose top score is below the threshold is
rejected; annotated samples keep their human label, the CLIP scores are stored for inspection only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa

from taxonomy import load_taxonomy
from unieditkit.imageio import decode_rgb

from ..models.factory import build_categorizer
from ..models.weights import ModelSpec


class CategorizeStage:
    def __init__(self, spec: ModelSpec, domain: str, taxonomy_path: str = "", top_k: int = 3, min_score: float = 0.0, device: str = "cpu") -> None:
        # text embeddings of a domain take minutes on a CPU: share them between actors and builds via the disk
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "unieditkit" / "clip-text"
        self.categorizer = build_categorizer(spec, device=device, cache_dir=cache)
        self.taxonomy = load_taxonomy(taxonomy_path or None)
        self.subcategories = self.taxonomy.domain(domain).subcategories
        self.top_k = top_k
        self.min_score = min_score

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        ok = [r for r in rows if r["status"] == "ok"]
        if ok:
            results = self.categorizer.categorize([decode_rgb(r["ref_jpg"]) for r in ok], self.subcategories, self.top_k)
            for r, labels in zip(ok, results):
                self.apply(r, labels)
        return pa.Table.from_pylist(rows, schema=batch.schema)

    def apply(self, row: dict, labels: list[tuple[str, float]]) -> None:
        meta = json.loads(row["meta"])
        meta["labels"] = [{"key": k, "score": round(float(s), 5)} for k, s in labels]
        mined = meta["mask_source"] != "annotation"
        if mined:
            top_key, top_score = labels[0]
            if top_score < self.min_score:
                row.update(status="rejected", reason="low_category_score", detail=f"best label {top_key} scored {top_score:.3f} < {self.min_score}")
                return
            sub = self.taxonomy.by_key(top_key)
            meta.update(subcategory=sub.key, subcategory_id=sub.id, subcategory_name=sub.name, rigid=sub.rigid)
        meta["scores"]["categorize"] = next((round(float(s), 5) for k, s in labels if k == meta["subcategory"]), 0.0)
        row["meta"] = json.dumps(meta, sort_keys=True)
