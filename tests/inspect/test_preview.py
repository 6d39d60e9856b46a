"""``unieditkit preview``: first n samples by key, one row each, masks drawn over the target, deterministic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageFilter

from unieditkit.cli import main
from unieditkit.inspect import preview
from unieditkit.reader import Sample


def test_sheet_rows_masks_and_determinism(built_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert main(["preview", str(built_dataset), "--n", "4", "--out", str(a)]) == 0
    keys = sorted(pq.read_table(built_dataset / "index.parquet").column("key").to_pylist())[:4]
    assert capsys.readouterr().out.strip() == f"{a}: 4 samples, {keys[0]} .. {keys[3]}"
    assert main(["preview", str(built_dataset), "--n", "4", "--out", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    sheet = np.asarray(Image.open(a).convert("RGB")).astype(int)
    assert sheet.shape == (preview.HEADER_H + 4 * preview.ROW_H, preview.SHEET_W, 3)

    # the first 4:3 target (like the cell, so it fills it; the real photos are letterboxed): the fine column is the
    # target column tinted exactly where the fine mask is (plus its outline)
    samples = preview.choose(built_dataset, n=4)
    row, sample = next((i, s) for i, s in enumerate(samples) if s.rgb("tgt.jpg").size == (320, 240))
    def cell(col: int) -> np.ndarray:
        x, y = preview.GAP + col * (preview.CELL_W + preview.GAP), preview.HEADER_H + row * preview.ROW_H
        return sheet[y : y + preview.CELL_H, x : x + preview.CELL_W]

    target, fine = cell(1), cell(2)
    changed = (np.abs(target - fine).sum(axis=2) > 0)
    small = Image.fromarray(sample.mask("mask_fine.png")).convert("L").resize((preview.CELL_W, preview.CELL_H), Image.Resampling.NEAREST)
    mask = np.asarray(small) > 0
    near = np.asarray(small.filter(ImageFilter.MaxFilter(5))) > 0  # the mask and its 2-px outline
    assert changed[mask].mean() > 0.95, "the fine mask is not tinted"
    assert not changed[~near].any(), "pixels away from the fine mask changed"


def test_filters_and_row_count(built_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "val.png"
    n_val = sum(1 for r in pq.read_table(built_dataset / "index.parquet").to_pylist() if r["split"] == "val")
    assert main(["preview", str(built_dataset), "--split", "val", "--domain", "garments", "--out", str(out)]) == 0
    assert Image.open(out).height == preview.HEADER_H + n_val * preview.ROW_H
    assert [s.meta["split"] for s in preview.choose(built_dataset, split="val")] == ["val"] * n_val


def test_sheet_grows_with_n(built_dataset: Path, tmp_path: Path) -> None:
    sizes = []
    for n in (1, 2, 4):
        out = tmp_path / f"n{n}.png"
        assert main(["preview", str(built_dataset), "--n", str(n), "--out", str(out)]) == 0
        sizes.append(Image.open(out).size)
    assert sizes[0][1] < sizes[1][1] < sizes[2][1] and len({w for w, _ in sizes}) == 1
    assert sizes[2][1] - sizes[1][1] == 2 * (sizes[1][1] - sizes[0][1]) == 2 * preview.ROW_H


def test_default_is_16_rows(built_dataset: Path) -> None:
    n_rows = pq.read_metadata(built_dataset / "index.parquet").num_rows
    assert n_rows > 16, "the sample build is too small to tell the default"
    assert len(preview.choose(built_dataset)) == 16


def test_row_text_captions_or_placeholder(built_dataset: Path) -> None:
    (sample,) = preview.choose(built_dataset, n=1)
    head, caption = preview.row_lines(sample)
    meta = sample.meta
    assert head.startswith(f"{meta['subcategory']} ({meta['subcategory_name']}) · self · ")
    assert caption == "(no caption)"
    meta["captions"] = {"ref": "a red shirt", "tgt": "a shirt " * 80}
    captioned = Sample(sample.key, sample.shard, {**sample.files, "json": json.dumps(meta).encode()})
    lines = preview.row_lines(captioned)
    assert lines[1].startswith("ref: a red shirt · tgt: a shirt") and len(lines) == 1 + preview.CAPTION_LINES
    assert lines[-1].endswith("…")


def test_bad_arguments_are_one_line_errors(built_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preview", str(built_dataset), "--domain", "vehicles", "--out", str(tmp_path / "x.png")]) == 2
    assert "no samples of vehicles" in capsys.readouterr().err
    assert main(["preview", str(built_dataset), "--n", "0"]) == 2
    assert "--n 0: must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
