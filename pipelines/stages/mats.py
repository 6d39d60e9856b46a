"""MATS stage: add the mask variants drawn from the fine mask (``MASK_VARIANTS``: rough, box) to every accepted sample.

The rough mask is drawn from a per-sample seed (derived from the key and ``--seed``) that is stored in the
sample's JSON, so training can regenerate new rough masks or reproduce this one exactly.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from unieditkit.imageio import decode_mask, encode_mask
from unieditkit.format import BOX, FINE, MASK_VARIANTS, ROUGH, mask_column, row_schema
from unieditkit.mats import MatsParams, mask_variants, sample_seed



class MatsStage:
    def __init__(self, seed: int, params: MatsParams | None = None) -> None:
        self.seed = seed
        self.params = params or MatsParams()

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        for row in rows:
            if row["status"] == "ok":
                self.add_variants(row)
        return pa.Table.from_pylist(rows, schema=row_schema())

    def add_variants(self, row: dict[str, Any]) -> None:
        fine = decode_mask(row[mask_column(FINE)])
        v = mask_variants(fine, sample_seed(row["key"], self.seed), self.params)
        meta = json.loads(row["meta"])
        meta["mats"] = {
            "seed": v.info.seed,
            "dilate_px": v.info.dilate_px,
            "noise_amp_px": round(float(v.info.noise_amp_px), 4),
            "noise_scale": round(float(v.info.noise_scale), 4),
            "octaves": v.info.octaves,
            "block_px": v.info.block_px,
            "rough_area": round(float(v.rough.mean()), 6),
            "box_area": round(float(v.box.mean()), 6),
        }
        drawn = {FINE: fine, ROUGH: v.rough, BOX: v.box}
        row["meta"] = json.dumps(meta, sort_keys=True)
        row.update({mask_column(variant): encode_mask(drawn[how]) for variant, how in MASK_VARIANTS.items() if variant != FINE})
