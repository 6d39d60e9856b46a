"""Filter stage: AnyDoor-style quality bounds on accepted samples, each failure counted by its reason.

Area and box-size bounds are applied where the mask is made (pair stage); here come the checks that need the
finished sample: detector score floor (mined samples), blur (variance of the Laplacian), aspect ratio of the
box and mask connectivity (a mask in many pieces is usually a bad segmentation). Near-duplicates are dropped
by the writer, per shard, from the perceptual hash the pair stage computes while the pixels are decoded;
across shards by ``unieditkit dedupe`` (``pipelines/dedupe.py``).

With ``--against`` folders, a sample whose target or reference is a near-duplicate of an evaluation image is
rejected first, as ``eval_overlap`` (``pipelines/decontaminate.py``): whatever else is wrong with it, that is
the count a reader of the dataset card needs. A build whose model stages ran with random weights stamps
``random_init: true`` on every sample it writes, so such noise can never pass for mined data.
"""

from __future__ import annotations

import json
from typing import Any

import cv2
import numpy as np
import pyarrow as pa

from unieditkit.format import FINE, REF_IMAGE, TARGET_IMAGE, column, mask_column
from unieditkit.imageio import decode_mask, decode_rgb

from ..config import OutputSettings
from ..decontaminate import EvalSet


def largest_component_fraction(mask: np.ndarray) -> float:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    if n <= 1:
        return 0.0
    areas = stats[1:, cv2.CC_STAT_AREA]
    return float(areas.max() / areas.sum())


class FilterStage:
    """``random_init``: the build's model stages use random weights (recorded in every sample written).

    The evaluation folders are hashed here, once, on the driver that builds the chain; the hashes travel
    with the stage to the workers.
    """

    def __init__(self, settings: OutputSettings, random_init: bool = False) -> None:
        self.s = settings
        self.random_init = random_init
        self.eval_set = EvalSet(settings.against, settings.eval_overlap_hamming) if settings.against else None

    def check(self, row: dict[str, Any]) -> tuple[str, str] | None:
        """``(reason, detail)`` of the first failed check, or None."""
        meta = json.loads(row["meta"])
        s = self.s
        if self.eval_set is not None:
            hit = self.eval_set.overlap(decode_rgb(row[column(TARGET_IMAGE)], TARGET_IMAGE), decode_rgb(row[column(REF_IMAGE)], REF_IMAGE))
            if hit is not None:
                return "eval_overlap", str(hit)
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
        fine = decode_mask(row[mask_column(FINE)])
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
            elif self.random_init:
                meta = json.loads(row["meta"])
                meta["random_init"] = True
                row["meta"] = json.dumps(meta, sort_keys=True)
        return pa.Table.from_pylist(rows, schema=batch.schema)
