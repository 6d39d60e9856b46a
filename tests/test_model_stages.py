"""Model stages in the build: box-only input segmented by the fallback (and resumed), missing weights stop before any work."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from unieditkit.pipelines.build import build
from unieditkit.pipelines.config import BuildConfig, ModelStagesConfig, OutputSettings
from unieditkit.pipelines.models.weights import ModelSpec
from unieditkit.cli import main
from unieditkit.errors import MissingModelError

ALL_TRAIN = OutputSettings(split_ratios=(1.0, 0.0, 0.0))


def object_photo(path: Path, box: tuple[int, int, int, int], seed: int = 0) -> None:
    """A textured background with a distinct ellipse-shaped object inside ``box``."""
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(60, 120, (12, 16, 3), dtype=np.uint8), (160, 120), interpolation=cv2.INTER_CUBIC)
    x0, y0, x1, y1 = box
    cv2.ellipse(img, ((x0 + x1) // 2, (y0 + y1) // 2), ((x1 - x0) // 2 - 2, (y1 - y0) // 2 - 2), 0, 0, 360, (230, 40, 40), -1)
    cv2.imwrite(str(path), img)


def test_box_only_annotations_are_segmented_by_grabcut(tmp_path: Path, ray_local) -> None:
    src = tmp_path / "src"
    src.mkdir()
    object_photo(src / "a.jpg", (40, 30, 120, 100))
    (src / "m.jsonl").write_text(json.dumps({"image": "a.jpg", "objects": [{"category": "dress", "bbox": [40, 30, 120, 100]}]}) + "\n")
    out = tmp_path / "out"
    config = BuildConfig(domain="garments", out_dir=str(out), sources=(f"manifest:{src / 'm.jsonl'}",), settings=ALL_TRAIN, progress=False)
    summary = build(config)
    assert summary.samples_written == 1, summary.rejected
    # the same command again is a resume with nothing left to do, not "built here with different models"
    assert build(config).shards_written == 0
    import webdataset as wds

    sample = next(iter(wds.WebDataset(str(next(out.glob("*.tar"))), shardshuffle=False).decode("l8")))
    assert sample["json"]["mask_source"] == "grabcut"
    fine = sample["mask_fine.png"] > 127
    ys, xs = np.nonzero(fine)
    assert xs.min() >= 40 and xs.max() < 120 and ys.min() >= 30 and ys.max() < 100, "mask leaks out of its box"
    ellipse = np.zeros_like(fine)
    cv2.ellipse(ellipse.view(np.uint8), (80, 65), (38, 33), 0, 0, 360, 1, -1)
    iou = (fine & ellipse).sum() / (fine | ellipse).sum()
    assert iou > 0.7, f"GrabCut mask IoU with the drawn object only {iou:.2f}"


def test_missing_weights_listed_at_once_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("UNIEDITKIT_MODELS", raising=False)
    out = tmp_path / "out"
    code = main(["build", "--domain", "garments", "--out", str(out), "--models", "detect,segment,caption,categorize", "--segmenter", "sam", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("unieditkit build: error: 5 model file(s) missing, nothing was built:\n")
    assert [line[:6] for line in err.splitlines()[1:]] == [f"  ({i}) " for i in range(1, 6)]  # a list, one per line
    for needle in ("sam_vit_b_01ec64.pth", "--dino-checkpoint", "bert-base-uncased", "coca_ViT-B-32", "ViT-B-32", "nothing was built"):
        assert needle in err, needle
    assert not out.exists()  # checked before the folder, its .lock or the probes are written


def test_unknown_model_stage_is_named(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="unknown stage"):
        build(BuildConfig(domain="garments", out_dir=str(tmp_path), model_stages=ModelStagesConfig(stages=("detect", "sgment")), progress=False))


def test_missing_weights_error_type(tmp_path: Path) -> None:
    with pytest.raises(MissingModelError):
        build(BuildConfig(domain="garments", out_dir=str(tmp_path / "out"), models=ModelSpec(segmenter="sam"), model_stages=ModelStagesConfig(stages=("segment",)), progress=False))
    assert not (tmp_path / "out").exists()
