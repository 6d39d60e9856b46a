"""Caption stage: CoCa captions of the reference object and of the target scene, batched per call."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from unieditkit.format import REF_IMAGE, TARGET_IMAGE, column
from unieditkit.imageio import decode_rgb

from ..models.factory import build_captioner
from ..models.weights import ModelSpec


class CaptionStage:
    def __init__(self, spec: ModelSpec, device: str = "cpu", **options: Any) -> None:
        self.captioner = build_captioner(spec, device=device, **options)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        ok = [r for r in rows if r["status"] == "ok"]
        if ok:
            images = [decode_rgb(r[column(REF_IMAGE)]) for r in ok] + [decode_rgb(r[column(TARGET_IMAGE)]) for r in ok]
            captions = self.captioner.caption(images)
            for r, ref_cap, tgt_cap in zip(ok, captions[: len(ok)], captions[len(ok) :]):
                meta = json.loads(r["meta"])
                meta["captions"] = {"ref": ref_cap, "tgt": tgt_cap}
                r["meta"] = json.dumps(meta, sort_keys=True)
        return pa.Table.from_pylist(rows, schema=batch.schema)
