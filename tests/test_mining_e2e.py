"""End to end: unannotated photos and a short video through every model stage (random weights, real images).

Random weights make the *content* meaningless, so this checks the plumbing a real build relies on: every unit
is accounted for (a sample or a reasoned rejection), masks come from SAM, labels are taxonomy keys of the
domain, captions are filled in, and the shards read back.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import skimage.data

from unieditkit.taxonomy import load_taxonomy
from unieditkit.cli import main


def _write_inputs(root: Path) -> tuple[Path, Path]:
    images = root / "photos"
    images.mkdir(parents=True)
    for name in ("chelsea", "coffee", "astronaut"):
        rgb = cv2.resize(getattr(skimage.data, name)(), (256, 192))
        cv2.imwrite(str(images / f"{name}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    cat = skimage.data.chelsea()
    video = root / "cat.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (256, 192))
    for i in range(20):  # a slow pan over the photo: the same cat in every frame
        writer.write(cv2.cvtColor(cv2.resize(cat[20:260, i * 4 : i * 4 + 370], (256, 192)), cv2.COLOR_RGB2BGR))
    writer.release()
    return images, video


@pytest.mark.slow
def test_unannotated_images_and_video_through_all_model_stages(tmp_path: Path, ray_local, capsys: pytest.CaptureFixture[str]) -> None:
    images, video = _write_inputs(tmp_path)
    out = tmp_path / "out"
    args = ["build", "--domain", "animals", "--source", f"images:{images}", "--source", f"video:{video}?pairs_per_video=1",
            "--out", str(out), "--random-weights", "--splits", "1,0,0", "--no-progress",
            "--box-threshold", "0.05", "--text-threshold", "0.05", "--min-detector-score", "0", "--min-category-score", "0"]
    assert main(args) == 0, capsys.readouterr().err
    index = pq.read_table(out / "index.parquet").to_pylist()
    rejected = pq.read_table(out / "rejected.parquet").to_pylist()
    stats = [json.loads(p.read_text()) for p in out.glob("*_stats.json")]
    assert sum(s["units"] for s in stats) == 5  # 4 images + 1 video pair: every unit planned and written
    assert {r["reason"] for r in rejected if "broken" in r["key"]} == {"undecodable"}
    assert index, f"no samples at all: {[(r['key'], r['reason']) for r in rejected]}"
    animals = {s.key for s in load_taxonomy().domain("animals").subcategories}
    import webdataset as wds

    for sample in wds.WebDataset([str(p) for p in sorted(out.glob("*.tar"))], shardshuffle=False).decode("l8"):
        meta = sample["json"]
        assert meta["mask_source"] == "sam"
        assert meta["subcategory"] in animals and all(label["key"] in animals for label in meta["labels"])
        assert isinstance(meta["captions"]["ref"], str) and meta["captions"]["ref"] and meta["captions"]["tgt"]
        assert 0 <= meta["scores"]["categorize"] <= 1 and meta["scores"]["detector"] >= 0
        fine = sample["mask_fine.png"] > 127
        x0, y0, x1, y1 = meta["bbox"]
        assert fine[y0:y1, x0:x1].sum() == fine.sum()
    assert "self" in {r["pair_kind"] for r in index}
    video_rows = [r for r in index + rejected if r["key"].startswith("animals_cat_")]
    assert video_rows, "the video pair was not processed"
    assert all(r["pair_kind"] == "video" for r in index if r["key"].startswith("animals_cat_"))
