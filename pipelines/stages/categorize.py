"""Categorize stage: CLIP zero-shot over the domain's subcategories, on the reference crop.

Every sample gets its top-k labels with scores, and ``label_check`` says whether the label it came with is
among them (``agree`` / ``disagree``). Who decides the subcategory depends on where the label came from
(``label_source``, set by the pair stage):

* ``annotation`` — a person labelled the object (COCO, manifest, try-on, annotated video), even when only a box
  was given and SAM or GrabCut made the mask. The human label is never replaced and never a reason to reject:
  a disagreement is only flagged, so a reviewer can look at exactly those samples, and counted in the summary.
* ``detector`` — the label is a detector phrase. CLIP's top label replaces it (``label_source`` becomes
  ``clip``) and a sample whose top score is below ``min_score`` is rejected as ``low_category_score``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from unieditkit.taxonomy import load_taxonomy
from unieditkit.format import REF_IMAGE, column
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
            results = self.categorizer.categorize([decode_rgb(r[column(REF_IMAGE)]) for r in ok], self.subcategories, self.top_k)
            for r, labels in zip(ok, results):
                apply_labels(r, labels, self.taxonomy, self.min_score)
        return pa.Table.from_pylist(rows, schema=batch.schema)


def apply_labels(row: dict[str, Any], labels: list[tuple[str, float]], taxonomy: Any, min_score: float) -> None:
    """Record CLIP's ``labels`` (best first) on ``row``; relabel or reject only detector-labelled samples."""
    meta = json.loads(row["meta"])
    meta["labels"] = [{"key": k, "score": round(float(s), 5)} for k, s in labels]
    meta["label_check"] = "agree" if meta["subcategory"] in {k for k, _ in labels} else "disagree"
    if meta["label_source"] == "detector":
        top_key, top_score = labels[0]
        if top_score < min_score:
            row.update(status="rejected", reason="low_category_score", detail=f"best label {top_key} scored {top_score:.3f} < {min_score}")
            return
        sub = taxonomy.by_key(top_key)
        meta.update(subcategory=sub.key, subcategory_id=sub.id, subcategory_name=sub.name, rigid=sub.rigid, label_source="clip")
    meta["scores"]["categorize"] = next((round(float(s), 5) for k, s in labels if k == meta["subcategory"]), 0.0)
    row["meta"] = json.dumps(meta, sort_keys=True)
