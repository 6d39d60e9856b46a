"""Filter stage: AnyDoor-style quality bounds on accepted samples, each failure counted by its reason.

Area and box-size bounds are applied where the mask is made (pair stage); here come the checks that need the
finished sample: detector score floor (mined samples), blur (variance of the Laplacian), aspect ratio of the
box and mask connectivity (a mask in many pieces is usually a bad segmentation). Near-duplicates are dropped
by the writer, per shard, from the perceptual hash the pair stage computes while the pixels are decoded.
"""

from __future__ import annotations

import json
from typing import Any

import cv2
import numpy as np
import pyarrow as pa

from unieditkit.imageio import decode_mask

from ..config import OutputSettings


def largest_component_fraction(mask: np.ndarray) -> float:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    if n <= 1:
        return 0.0
    areas = stats[1:, cv2.CC_STAT_AREA]
    return float(areas.max() / areas.sum())


class FilterStage:
    def __init__(self, settings: OutputSettings) -> None:
        self.s = settings

    def check(self, row: dict[str, Any]) -> tuple[str, str] | None:
        """``(reason, detail)`` of the first failed check, or None."""
        meta = json.loads(row["meta"])
        s = self.s
        det = meta["scores"]["detector"]
        if det >= 0 and det < s.min_detector_score:
            return "low_detector_score", f"detector score {det:.3f} < {s.min_detector_score}"
        sharp = meta["scores"]["sharpness"]
        if sharp < s.min_sharpness:
            return "blurry", f"Laplacian variance {sharp:.1f} < {s.min_sharpness}"
        x0, y0, x1, y1 = meta["bbox"]
        aspect = max((x1 - x0) / (y1 - y0), (y1 - y0) / (x1 - x0))
        if aspect > s.max_aspect:
            return "extreme_aspect", f"box aspect {aspect:.1f} > {s.max_aspect}"
        fine = decode_mask(row["mask_fine_png"])
        main = largest_component_fraction(fine)
        if main < s.min_main_component:
            return "fragmented_mask", f"largest mask component is {main:.2f} of the mask < {s.min_main_component}"
        return None

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        for row in rows:
            if row["status"] != "ok":
                continue
            failed = self.check(row)
            if failed:
                row.update(status="rejected", reason=failed[0], detail=failed[1])
        return pa.Table.from_pylist(rows, schema=batch.schema)
