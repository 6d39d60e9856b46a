"""``unieditkit eval`` plumbing with random weights: per-variant table, counts, and metric consistency."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from unieditkit.cli import main


def _write_predictions(data: Path, pred: Path) -> list[str]:
    pred.mkdir()
    keys = []
    for tar in sorted(data.glob("garments-train-*.tar"))[:1]:
        for s in wds.WebDataset(str(tar), shardshuffle=False):
            keys.append(s["__key__"])
            tgt = Image.open(io.BytesIO(s["tgt.jpg"])).convert("RGB")
            tgt.save(pred / f"{s['__key__']}.fine.png")
            tgt.save(pred / f"{s['__key__']}.rough.png")
            Image.new("RGB", tgt.size, (127, 127, 127)).save(pred / f"{s['__key__']}.box.png")
    return keys


def test_eval_table_per_mask_variant(built_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = _write_predictions(built_dataset, tmp_path / "pred")
    (tmp_path / "pred" / f"{keys[0]}.box.png").unlink()
    out = tmp_path / "eval.json"
    assert main(["eval", "--pred", str(tmp_path / "pred"), "--data", str(built_dataset), "--split", "train",
                 "--random-weights", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["evaluated"]["fine"] == result["evaluated"]["rough"] == len(keys)
    assert result["evaluated"]["box"] == len(keys) - 1
    assert result["missing"]["box"] == result["samples"] - len(keys) + 1
    assert result["missing"]["fine"] == result["samples"] - len(keys)  # the other shards have no predictions
    for metric in ("CLIP-I", "DINO-I"):
        m = result["metrics"][metric]
        assert m["fine"] == pytest.approx(m["rough"], abs=1e-6), "identical predictions must score identically"
        assert -1.0 - 1e-5 <= m["box"] <= 1.0 + 1e-5
    # the fine score is the mean cosine between the target's object box and the reference, computed here by hand
    from unieditkit.evaluate import DinoEmbedder

    dino = DinoEmbedder(None, "cpu")
    sims = []
    for tar in sorted(built_dataset.glob("garments-train-*.tar"))[:1]:
        for s in wds.WebDataset(str(tar), shardshuffle=False):
            box = tuple(json.loads(s["json"])["bbox"])
            crop = np.asarray(Image.open(io.BytesIO(s["tgt.jpg"])).convert("RGB").crop(box))
            a, b = dino([crop, np.asarray(Image.open(io.BytesIO(s["ref.jpg"])).convert("RGB"))])
            sims.append(float(a @ b))
    assert result["metrics"]["DINO-I"]["fine"] == pytest.approx(np.mean(sims), abs=1e-5)
    assert "| fine |" in printed and "DINO-I" in printed and "missing predictions:" in printed


def test_eval_without_dino_weights_says_how_to_get_them(built_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pred").mkdir()
    assert main(["eval", "--pred", str(tmp_path / "pred"), "--data", str(built_dataset)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--dino-weights" in err and "--no-dino" in err
    assert main(["eval", "--pred", str(tmp_path / "pred"), "--data", str(built_dataset), "--random-weights",
                 "--no-dino", "--split", "nosuch"]) == 2
    assert "no nosuch shards" in capsys.readouterr().err
