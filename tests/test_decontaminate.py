"""Clean against benchmarks and across shards, on real photos with planted near-duplicates.

The planted copies are what contamination looks like in practice: an evaluation photo resized, brightened and
re-encoded as JPEG; an evaluation product shot (an object on white) used as the reference of a pair; the same
photo twice in one build, in different shards. Unrelated real photos (scikit-image's) must not be caught.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import skimage.data
from PIL import Image

from unieditkit.pipelines.decontaminate import EvalSet, view_hashes
from unieditkit.pipelines.dedupe import hash_pairs
from unieditkit.cli import main

SIZE = (320, 240)  # width, height of every source photo


def _photo(name: str) -> np.ndarray:
    return cv2.resize(getattr(skimage.data, name)(), SIZE, interpolation=cv2.INTER_AREA)


def _jpeg(rgb: np.ndarray, quality: int = 75) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def _near_copy(rgb: np.ndarray) -> np.ndarray:
    """Resized to 85%, brightened by 12 levels and re-encoded: a typical re-upload of the same photo."""
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (int(w * 0.85), int(h * 0.85)), interpolation=cv2.INTER_AREA)
    return _jpeg(np.clip(small.astype(int) + 12, 0, 255).astype(np.uint8))


def _save(path: Path, rgb: np.ndarray) -> None:
    Image.fromarray(rgb).save(path)


def _product_shot() -> np.ndarray:
    """An evaluation-style product photo: the cat's head on a white background."""
    canvas = np.full((300, 300, 3), 255, np.uint8)
    canvas[40:260, 50:250] = cv2.resize(skimage.data.chelsea()[30:270, 110:330], (200, 220))
    return canvas


def test_eval_set_finds_planted_copies_and_not_unrelated_photos(tmp_path):
    eval_dir = tmp_path / "eval" / "nested"
    eval_dir.mkdir(parents=True)
    _save(eval_dir / "astronaut.png", skimage.data.astronaut())
    _save(eval_dir / "product.png", _product_shot())
    eval_set = EvalSet([str(tmp_path / "eval")], max_hamming=6)
    assert len(eval_set) == 2

    copy = _near_copy(skimage.data.astronaut())
    hit = eval_set.overlap(copy, _photo("rocket"))
    assert hit is not None and hit.which == "target" and hit.eval_image.endswith("astronaut.png") and hit.bits <= 6

    # the reference as the build stores it: the object on grey in a square, at another size
    reference = np.full((384, 384, 3), 127, np.uint8)
    reference[72:312, 82:302] = cv2.resize(_product_shot()[40:260, 50:250], (220, 240))
    hit = eval_set.overlap(_photo("coffee"), reference)
    assert hit is not None and hit.which == "reference" and hit.eval_image.endswith("product.png")

    for name in ("chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "colorwheel"):
        bits, _ = eval_set.nearest(view_hashes(_photo(name)))
        assert bits > 12, f"{name} is only {bits} bits from an evaluation image"


def test_hash_pairs_matches_brute_force():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 40, dtype=np.int64).astype(np.uint64)
    flips = [np.uint64(1) << np.uint64(b) for b in rng.integers(0, 64, 60)]
    hashes = np.concatenate([base, [base[i % 40] ^ flips[i] ^ flips[i + 1] for i in range(20)]]).astype(np.uint64)
    for h in (0, 2, 4, 9):
        brute = {(i, j) for i in range(len(hashes)) for j in range(i + 1, len(hashes))
                 if bin(int(hashes[i]) ^ int(hashes[j])).count("1") <= h}
        assert hash_pairs(hashes, h) == brute, h
    assert hash_pairs(hashes, -1) == set()


def _center_polygon(w: int, h: int) -> list[list[float]]:
    x0, y0, x1, y1 = w * 0.25, h * 0.2, w * 0.75, h * 0.8
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


@pytest.fixture(scope="module")
def contaminated(tmp_path_factory) -> dict[str, Path]:
    """Sources with planted overlaps and duplicates, and the evaluation folders."""
    root = tmp_path_factory.mktemp("contaminated")
    src, eval_a, eval_b = root / "src", root / "eval_a", root / "eval_b"
    for d in (src, eval_a, eval_b):
        d.mkdir()
    _save(eval_a / "astronaut.png", skimage.data.astronaut())
    _save(eval_a / "product.png", _product_shot())
    _save(eval_b / "coffee.png", skimage.data.coffee())
    photos = {
        "astronaut-copy": _near_copy(_photo("astronaut")),
        "chelsea": _photo("chelsea"),
        "chelsea-again": _near_copy(_photo("chelsea")),
        "coffee": _photo("coffee"),
        "rocket": _photo("rocket"),
        "tissue": _photo("immunohistochemistry"),
    }
    lines = []
    for name, rgb in photos.items():
        _save(src / f"{name}.jpg", rgb)
        h, w = rgb.shape[:2]
        lines.append({"image": f"{name}.jpg", "objects": [{"category": "dress", "polygon": _center_polygon(w, h)}]})
    # a two-photo pair whose reference is the evaluation product shot (re-encoded)
    _save(src / "product-ref.jpg", _jpeg(_product_shot()))
    ref_mask = np.zeros((300, 300), np.uint8)
    ref_mask[40:260, 50:250] = 255
    _save(src / "product-ref-mask.png", ref_mask)
    tgt_mask = np.zeros(SIZE[::-1], np.uint8)
    tgt_mask[60:200, 90:230] = 255
    _save(src / "tissue-mask.png", tgt_mask)
    lines.append({"ref": "product-ref.jpg", "ref_mask": "product-ref-mask.png", "target": "tissue.jpg",
                  "mask": "tissue-mask.png", "category": "dress"})
    (src / "m.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    cats = root / "cats"
    cats.mkdir()
    _save(cats / "cat.jpg", _photo("chelsea"))
    (cats / "m.jsonl").write_text(json.dumps({"image": "cat.jpg", "objects": [{"category": "cat", "polygon": _center_polygon(*SIZE)}]}) + "\n")
    return {"manifest": src / "m.jsonl", "eval_a": eval_a, "eval_b": eval_b, "cats": cats / "m.jsonl", "root": root}


def _build(manifest: Path, out: Path, domain: str, *extra: str) -> list[str]:
    return ["build", "--domain", domain, "--source", f"manifest:{manifest}", "--out", str(out), "--splits", "1,0,0",
            "--units-per-shard", "1", "--no-progress", *extra]


@pytest.mark.slow
def test_build_rejects_eval_overlap_then_dedupe_and_audit(contaminated, tmp_path, ray_local, capsys):
    out = tmp_path / "out"
    assert main(_build(contaminated["manifest"], out, "garments", "--against", str(contaminated["eval_a"]))) == 0
    summary = capsys.readouterr().out
    assert "eval_overlap 2" in summary, summary

    rejected = pq.read_table(out / "rejected.parquet").to_pylist()
    overlaps = {r["key"]: r["detail"] for r in rejected if r["reason"] == "eval_overlap"}
    assert len(overlaps) == 2
    (copy_detail,) = [d for k, d in overlaps.items() if "astronaut-copy" in k]
    assert copy_detail.startswith("target is a near-duplicate of") and "astronaut.png" in copy_detail
    (pair_detail,) = [d for k, d in overlaps.items() if "astronaut-copy" not in k]
    assert pair_detail.startswith("reference is a near-duplicate of") and "product.png" in pair_detail
    written = pq.read_table(out / "index.parquet").to_pylist()
    assert sorted(r["source_uri"] for r in written) == ["chelsea-again.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg", "tissue.jpg"]
    assert "| eval_overlap | 2 |" in (out / "README.md").read_text()
    recorded = json.loads((out / "build_config.json").read_text())["domains"]["garments"]["settings"]
    assert recorded["against"][0].startswith(str(contaminated["eval_a"].resolve()) + " 2 ")

    # the same photo twice, in two shards: the per-shard pass cannot see it, the dataset-wide pass does
    assert len({r["shard"] for r in written}) == 5
    assert main(["dedupe", str(out)]) == 0
    dupes = pq.read_table(out / "duplicates.parquet").to_pylist()
    by_uri = {r["key"]: r["source_uri"] for r in written}
    assert sorted(by_uri[d["key"]] for d in dupes) == ["chelsea-again.jpg", "chelsea.jpg"]
    assert len({d["cluster"] for d in dupes}) == 1 and sum(d["keep"] for d in dupes) == 1
    assert {d["method"] for d in dupes} == {"phash"}
    card = (out / "README.md").read_text()
    assert "2 samples fall in 1 clusters" in card and "the other 1 are near-duplicates to skip" in card
    capsys.readouterr()
    assert main(["validate", str(out)]) == 0, capsys.readouterr().out

    # auditing an existing build: the overlaps were rejected already; another eval set finds the coffee photo
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["decontaminate", str(out), "--against", str(contaminated["eval_a"])]) == 0
    assert "5 samples checked against 2 evaluation images: 0 overlap" in capsys.readouterr().out
    assert main(["decontaminate", str(out), "--against", str(contaminated["eval_b"])]) == 1
    captured = capsys.readouterr()
    (line,) = captured.out.splitlines()
    assert "coffee" in line and "target is a near-duplicate of" in line and "coffee.png" in line
    assert "1 overlap" in captured.err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "the audit changed the build folder"

    # a later build adds shards: the card and validate say duplicates.parquet is stale
    assert main(_build(contaminated["cats"], out, "animals")) == 0
    assert "was computed before the last build changed the shards" in (out / "README.md").read_text()
    capsys.readouterr()
    assert main(["validate", str(out)]) == 1
    assert "duplicates.parquet -: stale" in capsys.readouterr().out


def test_clusters_join_methods_and_clip_neighbours_come_from_real_embeddings():
    from unieditkit.pipelines.dedupe import Item, clip_embeddings, clusters, embedding_pairs

    rows = clusters(["k0", "k1", "k2", "k3", "k4"], {"phash": {(0, 1)}, "clip": {(1, 2)}})
    assert [(r["key"], r["cluster"], r["keep"], r["method"]) for r in rows] == [
        ("k0", "k0", True, "clip+phash"), ("k1", "k0", False, "clip+phash"), ("k2", "k0", False, "clip+phash")]
    assert clusters(["a", "b"], {"phash": set()}) == []

    # open_clip ViT-B-32 with random weights: only the plumbing is real, so only identical crops are asserted
    cat, coffee = _photo("chelsea")[40:200, 80:240], _photo("coffee")[40:200, 80:240]
    items = [Item("a", "s0", cat), Item("b", "s1", cat.copy()), Item("c", "s2", coffee)]
    emb = clip_embeddings(items, "ViT-B-32", None)
    assert emb.shape == (3, 512) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert (0, 1) in embedding_pairs(emb, 0.9999)
    unit = np.eye(3, dtype=np.float32)
    assert embedding_pairs(np.concatenate([unit, unit[:1]]), 0.99) == {(0, 3)}
