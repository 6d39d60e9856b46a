"""Every row of ``rejected.parquet`` names the input it came from (``source_uri``, ``group_id``), whichever step
rejected it: an image that does not decode (a unit rejected before any sample exists), a mask too small (the pair
stage), a blurred photo (the filter stage) and a near-duplicate (the shard writer)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq

from unieditkit.pipelines.build import build
from unieditkit.pipelines.config import BuildConfig, OutputSettings
from unieditkit.format import INDEX_FILE, REJECTED_FILE


def test_every_rejected_row_names_its_source_and_group(tmp_path: Path, ray_local) -> None:
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (96, 128, 3), np.uint8)
    big, tiny = np.zeros((96, 128), np.uint8), np.zeros((96, 128), np.uint8)
    big[20:70, 30:100] = 255
    tiny[10:12, 10:12] = 255
    for name, image in {"good.jpg": noise, "twin.jpg": noise, "other.jpg": noise[::-1].copy(),
                        "flat.jpg": np.full((96, 128, 3), 90, np.uint8)}.items():
        cv2.imwrite(str(src / name), image, [cv2.IMWRITE_JPEG_QUALITY, 100])
    (src / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    cv2.imwrite(str(src / "big.png"), big)
    cv2.imwrite(str(src / "tiny.png"), tiny)
    lines = [
        {"image": "good.jpg", "group": "g-good", "objects": [{"category": "dress", "mask": "big.png"}]},
        {"image": "twin.jpg", "group": "g-twin", "objects": [{"category": "dress", "mask": "big.png"}]},
        {"image": "other.jpg", "group": "g-other", "objects": [{"category": "dress", "mask": "big.png"}, {"category": "dress", "mask": "tiny.png"}]},
        {"image": "flat.jpg", "group": "g-flat", "objects": [{"category": "dress", "mask": "big.png"}]},
        {"image": "broken.jpg", "group": "g-broken", "objects": [{"category": "dress", "mask": "big.png"}]},
    ]
    (src / "m.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out"
    build(BuildConfig(domain="garments", out_dir=str(out), sources=(f"manifest:{src / 'm.jsonl'}",),
                      settings=OutputSettings(units_per_shard=8, split_ratios=(1.0, 0.0, 0.0)), progress=False))

    rejected = pq.read_table(out / REJECTED_FILE).to_pylist()
    by_source = {(r["source_uri"], r["group_id"]): r["reason"] for r in rejected}
    assert by_source[("flat.jpg", "g-flat")] == "blurry"
    assert by_source[("twin.jpg", "g-twin")] == "near_duplicate"
    assert by_source[("other.jpg", "g-other")] == "mask_too_small"
    assert by_source[("broken.jpg", "g-broken")] not in ("", "quarantined")
    assert len(rejected) == 4 and all(r["source_uri"] and r["group_id"] for r in rejected), rejected
    written = {(r["source_uri"], r["group_id"]) for r in pq.read_table(out / INDEX_FILE).to_pylist()}
    assert written == {("good.jpg", "g-good"), ("other.jpg", "g-other")}
