"""Human labels are kept when a model makes their masks and a model checks their categories.

A COCO file with boxes only (no polygons) on a real photograph: SAM makes the masks and CLIP scores the
categories (random weights, so CLIP's opinion is noise and disagrees often, which is the case to test).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pyarrow.parquet as pq
import pytest
import skimage.data
import yaml

from unieditkit.pipelines.stages.categorize import apply_labels
from unieditkit.taxonomy import load_taxonomy
from unieditkit.cli import main

# the espresso cup and the spoon in skimage's "coffee" photo, at half size (300x200)
HUMAN = {"cup": [85, 7, 208, 153], "utensils": [161, 32, 213, 164]}


def _products_taxonomy(path: Path) -> Path:
    """The bundled products domain cut to four subcategories: CLIP's text side in seconds instead of minutes."""
    domain = next(d for d in load_taxonomy().to_dict()["domains"] if d["key"] == "products")
    domain["subcategories"] = [s for s in domain["subcategories"] if s["key"] in ("cup", "utensils", "bowl", "vase")]
    path.write_text(yaml.safe_dump({"name": "products-test", "version": "1.0.0", "domains": [domain]}))
    return path


def _box_only_coco(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    rgb = cv2.resize(skimage.data.coffee(), (300, 200), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(root / "images" / "coffee.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cats = [{"id": i, "name": name} for i, name in enumerate(("cup", "spoon"), 1)]
    anns = [
        {"id": i, "image_id": 1, "category_id": i, "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0}
        for i, (x0, y0, x1, y1) in enumerate(HUMAN.values(), 1)
    ]
    path = root / "instances.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "coffee.jpg", "width": 300, "height": 200}],
                                "annotations": anns, "categories": cats}))
    return path


@pytest.mark.slow
def test_box_only_coco_keeps_every_human_subcategory(tmp_path: Path, ray_local, capsys: pytest.CaptureFixture[str]) -> None:
    coco = _box_only_coco(tmp_path / "src")
    taxonomy = _products_taxonomy(tmp_path / "taxonomy.yaml")
    out = tmp_path / "out"
    # a category threshold no random-weight CLIP score reaches: it must not touch human labels
    args = ["build", "--domain", "products", "--source", f"coco:{coco}", "--out", str(out), "--models", "segment,categorize",
            "--random-weights", "--taxonomy", str(taxonomy), "--splits", "1,0,0", "--no-progress", "--min-category-score", "0.99"]
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    rejected = pq.read_table(out / "rejected.parquet").to_pylist()
    assert not rejected, [(r["key"], r["reason"], r["detail"]) for r in rejected]
    import webdataset as wds

    metas = [s["json"] for s in wds.WebDataset([str(p) for p in sorted(out.glob("*.tar"))], shardshuffle=False).decode()]
    by_box = {}
    for meta in metas:
        assert meta["label_source"] == "annotation" and meta["mask_source"] == "sam"
        assert len(meta["labels"]) == 3 and meta["label_check"] in ("agree", "disagree")
        assert meta["label_check"] == ("agree" if meta["subcategory"] in {lab["key"] for lab in meta["labels"]} else "disagree")
        by_box[meta["subcategory"]] = meta
    assert sorted(by_box) == sorted(HUMAN), "a human subcategory was replaced or lost"
    disagreements = sum(m["label_check"] == "disagree" for m in metas)
    stats = [json.loads(p.read_text()) for p in out.glob("*_stats.json")]
    assert sum(s["label_disagreements"] for s in stats) == disagreements
    assert (f"label of {disagreements} samples" in printed) == (disagreements > 0), printed
    main(["validate", str(out)])  # the new fields pass the format check; only the random weights are a problem
    problems = capsys.readouterr().out.strip().splitlines()
    assert all("random_init" in p for p in problems), problems


def test_detector_labels_follow_clip_and_human_labels_never_do() -> None:
    tx = load_taxonomy()

    def row(source: str) -> dict:
        meta = {"subcategory": "cup", "label_source": source, "labels": [], "label_check": "unchecked", "scores": {"categorize": -1.0}}
        return {"status": "ok", "reason": "", "detail": "", "meta": json.dumps(meta)}

    clip = [("bowl", 0.08), ("vase", 0.05), ("bottle", 0.04)]
    human, mined, weak = row("annotation"), row("detector"), row("detector")
    apply_labels(human, clip, tx, min_score=0.05)
    apply_labels(mined, clip, tx, min_score=0.05)
    apply_labels(weak, clip, tx, min_score=0.5)
    h, m = json.loads(human["meta"]), json.loads(mined["meta"])
    assert (human["status"], h["subcategory"], h["label_check"], h["scores"]["categorize"]) == ("ok", "cup", "disagree", 0.0)
    assert (mined["status"], m["subcategory"], m["label_source"], m["label_check"]) == ("ok", "bowl", "clip", "disagree")
    assert (weak["status"], weak["reason"]) == ("rejected", "low_category_score")
    agreeing = row("annotation")
    apply_labels(agreeing, [("vase", 0.5), ("cup", 0.3)], tx, min_score=0.9)
    a = json.loads(agreeing["meta"])
    assert (agreeing["status"], a["subcategory"], a["label_check"], a["scores"]["categorize"]) == ("ok", "cup", "agree", 0.3)
