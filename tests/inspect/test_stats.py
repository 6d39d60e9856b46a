"""``unieditkit stats``: counts from the index, rejection reasons from both sources, area and IoU histograms."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image

from unieditkit.cli import main
from unieditkit.inspect.stats import AREAS, BINS, bar_rows, histogram, render_plot


def test_counts_histograms_and_plot(built_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot, numbers = tmp_path / "stats.png", tmp_path / "stats.json"
    assert main(["stats", str(built_dataset), "--out", str(plot), "--json", str(numbers)]) == 0
    printed = capsys.readouterr().out
    st = json.loads(numbers.read_text())
    rows = pq.read_table(built_dataset / "index.parquet").to_pylist()
    assert st["samples"] == len(rows) and st["shards"] == len(list(built_dataset.glob("*_stats.json")))
    assert st["split"] == dict(Counter(r["split"] for r in rows))
    assert sum(st["domain_split"]["garments"].values()) == len(rows)
    assert st["subcategory"] == {f"garments/{k}": n for k, n in Counter(r["subcategory"] for r in rows).items()}
    assert st["pair_kind"] == {"self": len(rows)}
    for area in ("fine", "rough", "box"):
        assert sum(st["area_hist"][area]) == len(rows) and len(st["area_hist"][area]) == BINS
    assert st["iou_hist"] == histogram([r["fine_area"] / r["rough_area"] for r in rows])
    assert 0 < st["iou"]["min"] <= st["iou"]["median"] <= st["iou"]["max"] <= 1
    assert f"{len(rows)} samples, 0 rejected" in printed and "IoU(rough, fine)" in printed and "garments/blouse" in printed
    img = Image.open(plot)
    assert img.format == "PNG" and img.width > 800 and np.unique(np.asarray(img.convert("L"))).size > 10


def test_iou_from_areas_equals_pixel_iou(built_dataset: Path) -> None:
    """The shortcut the stats rely on: rough contains fine, so IoU = fine area / rough area."""
    tar = sorted(built_dataset.glob("*-train-*.tar"))[0]
    for s in wds.WebDataset(str(tar), shardshuffle=False):
        fine = np.asarray(Image.open(io.BytesIO(s["mask_fine.png"]))) > 127
        rough = np.asarray(Image.open(io.BytesIO(s["mask_rough.png"]))) > 127
        meta = json.loads(s["json"])
        pixel_iou = (fine & rough).sum() / (fine | rough).sum()
        assert meta["scores"]["fine_area"] / meta["mats"]["rough_area"] == pytest.approx(pixel_iou, abs=1e-4)


def test_rejection_reasons_from_both_sources(small_copy: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    index = pq.read_table(small_copy / "index.parquet")
    row = {c: v for c, v in index.to_pylist()[0].items()}
    rejected = [dict(row, key=f"r{i}", status="rejected", reason=reason) for i, reason in enumerate(["blurry", "blurry", "too_small"])]
    pq.write_table(pa.Table.from_pylist(rejected, schema=index.schema), small_copy / "rejected.parquet")
    stats_file = sorted(small_copy.glob("*_stats.json"))[0]
    stats = json.loads(stats_file.read_text())
    stats["rejected"] = {"blurry": 2, "too_small": 3}
    stats_file.write_text(json.dumps(stats))
    assert main(["stats", str(small_copy), "--out", str(tmp_path / "s.png"), "--json", str(tmp_path / "s.json")]) == 0
    st = json.loads((tmp_path / "s.json").read_text())
    assert st["reasons"] == {"blurry": {"rejected.parquet": 2, "_stats.json": 2}, "too_small": {"rejected.parquet": 1, "_stats.json": 3}}
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split() == ["too_small", "1", "3"] for line in lines)


def test_histogram_edges() -> None:
    assert histogram([0.0, 0.049, 0.05, 0.999, 1.0], bins=20) == [2, 1] + [0] * 17 + [2]


def test_not_a_build_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "index.parquet: not found" in err


def test_many_categories_leave_the_rest_as_text_not_a_bar() -> None:
    """Twenty small subcategories must not become one long "(N more)" bar that reads as the largest category."""
    items = [("big", 9), ("mid", 5)] + [(f"small_{i:02d}", 2) for i in range(20)]
    shown, rest = bar_rows(items, limit=6)
    assert shown == [("big", 9), ("mid", 5), ("small_00", 2), ("small_01", 2), ("small_02", 2)]
    assert rest == (17, 34), "the 17 left out, 34 samples in all: more than the largest bar, so never drawn as one"
    assert all("more" not in label for label, _ in shown)
    assert bar_rows(items[:6], limit=6) == (sorted(items[:6], key=lambda kv: (-kv[1], kv[0])), None)
    st = {"samples": 1, "rejected": 0, "shards": 1, "domain_split": {}, "pair_kind": {}, "reasons": {},
          "subcategory": dict(items), "area_hist": {a: [0] * BINS for a in AREAS}, "iou_hist": [0] * BINS}
    assert render_plot(st).size[0] > 800  # and the chart draws with the remainder line
