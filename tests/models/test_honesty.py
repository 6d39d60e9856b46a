"""Never silent: random-weight output is marked everywhere, the GrabCut fallback is announced.

A ``--random-weights`` build used to look exactly like a real one (``mask_source: "sam"``, a clean card,
``validate`` passing). Here such a build is made through the CLI on real photos and read back the way a user
would meet it: the samples' json, the dataset card, the build summary and ``unieditkit validate``.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
import skimage.data
import webdataset as wds

from unieditkit.pipelines.models import ModelSpec, require_weights
from unieditkit.cli import main
from unieditkit.errors import MissingModelError


def _box_only_manifest(root: Path) -> Path:
    """Real photos with box-only annotations: the segment stage has to make every mask."""
    lines = []
    for name in ("chelsea", "coffee", "astronaut"):
        rgb = cv2.resize(getattr(skimage.data, name)(), (256, 192))
        cv2.imwrite(str(root / f"{name}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        lines.append({"image": f"{name}.jpg", "objects": [{"category": "dress", "bbox": [48, 30, 208, 170]}]})
    (root / "m.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root / "m.jsonl"


def _metas(out: Path) -> list[dict]:
    return [s["json"] for s in wds.WebDataset([str(p) for p in sorted(out.glob("*.tar"))], shardshuffle=False).decode()]


@pytest.mark.slow
def test_random_weight_build_is_marked_in_json_card_summary_and_validate(tmp_path, ray_local, capsys):
    manifest = _box_only_manifest(tmp_path)
    lenient = tmp_path / "lenient.yaml"  # random SAM masks are blobs: keep them, the marking is under test
    lenient.write_text("settings: {min_main_component: 0.0, min_area_frac: 0.0, min_box_side: 1, min_sharpness: 0.0, max_aspect: 100.0}\n")
    common = ["build", "--domain", "garments", "--source", f"manifest:{manifest}", "--splits", "1,0,0", "--no-progress",
              "--config", str(lenient)]

    random_out = tmp_path / "random"
    assert main([*common, "--out", str(random_out), "--models", "segment", "--random-weights"]) == 0
    summary = capsys.readouterr().out
    assert "note: --random-weights: the model stages ran with random weights" in summary
    metas = _metas(random_out)
    assert metas, "no sample survived; the marking cannot be checked"
    assert all(m["random_init"] is True and m["mask_source"] == "sam" for m in metas)
    assert "**Random weights**: garments was mined with `--random-weights`" in (random_out / "README.md").read_text()
    assert main(["validate", str(random_out)]) == 1
    report = capsys.readouterr().out
    assert f"{len(metas)} samples made by model stages with random weights (random_init: true)" in report

    # the same input without random weights: GrabCut, announced; nothing marked; validate passes
    real_out = tmp_path / "real"
    assert main([*common, "--out", str(real_out), "--models", "segment", "--models-dir", str(tmp_path)]) == 0
    summary = capsys.readouterr().out
    assert "note: segmentation falls back to GrabCut (mask_source: grabcut): no SAM checkpoint sam_vit_b_01ec64.pth" in summary
    metas = _metas(real_out)
    assert metas and all(m["random_init"] is False and m["mask_source"] == "grabcut" for m in metas)
    assert "Random weights" not in (real_out / "README.md").read_text()
    assert main(["validate", str(real_out)]) == 0, capsys.readouterr().out


def test_missing_weights_message_names_the_grabcut_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("UNIEDITKIT_MODELS", raising=False)
    with pytest.raises(MissingModelError) as err:
        require_weights(ModelSpec(models_dir=str(tmp_path), stages=("detect", "segment")))
    message = str(err.value)
    assert "groundingdino_swint_ogc.pth" in message.splitlines()[1]
    assert "\n  also, segmentation falls back to GrabCut (mask_source: grabcut): no SAM checkpoint sam_vit_b_01ec64.pth" in message
    assert "--segmenter grabcut to choose GrabCut explicitly" in message
    # asked for SAM by name: SAM is listed as missing, no fallback is offered
    with pytest.raises(MissingModelError) as err:
        require_weights(ModelSpec(models_dir=str(tmp_path), stages=("detect", "segment"), segmenter="sam"))
    assert "SAM vit_b checkpoint sam_vit_b_01ec64.pth" in str(err.value) and "falls back" not in str(err.value)
    with pytest.raises(MissingModelError, match="SAM vit_t checkpoint mobile_sam.pt: .*ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt"):
        require_weights(ModelSpec(models_dir=str(tmp_path), stages=("segment",), segmenter="sam", sam_model_type="vit_t"))
    with pytest.raises(MissingModelError, match="SAM 2 sam2.1_hiera_t checkpoint sam2.1_hiera_tiny.pt: .*092824/sam2.1_hiera_tiny.pt"):
        require_weights(ModelSpec(models_dir=str(tmp_path), stages=("segment",), segmenter="sam2"))
