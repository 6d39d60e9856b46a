"""tryon: on mini VITON-HD and DressCode layouts: pairing by name, parse-map masks, categories, groups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sourcedata import write_image, write_label_map

from unieditkit.pipelines.sources import parse_source
from unieditkit.taxonomy import load_taxonomy
from unieditkit.errors import UserError
from unieditkit.imageio import ImageReadError, load_mask_uri
from unieditkit.media import load_uri

W, H = 48, 64


def _person_parse(*labels: int) -> np.ndarray:
    parse = np.zeros((H, W), np.uint8)
    for i, label in enumerate(labels):
        parse[10 + 12 * i : 20 + 12 * i, 10:38] = label
    return parse


def viton(root: Path) -> Path:
    for split, names in (("train", ["00001_00", "00002_00"]), ("test", ["00003_00"])):
        d = root / split
        for name in names:
            write_image(d / "image" / f"{name}.jpg", (W, H))
            write_image(d / "cloth" / f"{name}.jpg", (W, H), 250)
            write_image(d / "cloth-mask" / f"{name}.jpg", (W, H), 255)
            write_label_map(d / "image-parse-v3" / f"{name}.png", _person_parse(5, 7, 9))
    (root / "test_pairs.txt").write_text("00003_00.jpg 00001_00.jpg\n")  # unpaired: must not be used
    return root


def dresscode(root: Path) -> Path:
    items = {"upper_body": [("000100", (4,))], "lower_body": [("050100", (5,)), ("050200", (6,))], "dresses": [("020100", (7,))]}
    for category, entries in items.items():
        d = root / category
        for item, labels in entries:
            write_image(d / "images" / f"{item}_0.jpg", (W, H))
            write_image(d / "images" / f"{item}_1.jpg", (W, H), 240)
            write_label_map(d / "label_maps" / f"{item}_4.png", _person_parse(*labels, 12), palette=False)
        (d / "train_pairs.txt").write_text("")
    write_image(root / "dresses" / "cloth_mask" / "020100_1.png", (W, H), 255)
    write_image(root / "upper_body" / "images" / "000100_2.jpg", (W, H))  # not a person image (_0): ignored
    return root


def test_viton_hd_units(tmp_path: Path):
    root = viton(tmp_path / "VITON-HD")
    units = list(parse_source(f"tryon:{root}").units())
    assert [u.unit_id for u in units] == [
        "tryon/VITON-HD/train/image/00001_00.jpg",
        "tryon/VITON-HD/train/image/00002_00.jpg",
        "tryon/VITON-HD/test/image/00003_00.jpg",
    ]
    u = units[2]
    assert u.group_id == "tryon/VITON-HD/test/cloth/00003_00.jpg"
    assert u.relative(u.ref_uri) == "test/cloth/00003_00.jpg"  # the garment the person wears, not test_pairs.txt's
    assert u.relative(u.ref_mask_uri) == "test/cloth-mask/00003_00.jpg"
    assert (u.pair_kind, u.source_kind, u.needs_detection) == ("tryon", "tryon", False)
    (obj,) = u.objects
    assert obj.category == "shirt" and obj.segmentation is None
    assert u.relative(obj.mask_uri) == "test/image-parse-v3/00003_00.png#labels=5,6,7"
    mask = load_mask_uri(obj.mask_uri)
    assert mask.shape == load_uri(u.tgt_uri).shape[:2]
    assert np.array_equal(mask, np.isin(_person_parse(5, 7, 9), (5, 6, 7)))
    assert load_mask_uri(u.ref_mask_uri).all()
    # pointing at one split folder works too, with ids relative to it
    assert [x.unit_id for x in parse_source(f"tryon:{root / 'test'}?upper_category=t-shirt").units()] == ["tryon/test/image/00003_00.jpg"]


def test_dresscode_units_and_categories(tmp_path: Path):
    root = dresscode(tmp_path / "DressCode")
    units = {u.unit_id: u for u in parse_source(f"tryon:{root}").units()}
    assert sorted(units) == [
        "tryon/DressCode/dresses/images/020100_0.jpg",
        "tryon/DressCode/lower_body/images/050100_0.jpg",
        "tryon/DressCode/lower_body/images/050200_0.jpg",
        "tryon/DressCode/upper_body/images/000100_0.jpg",
    ]
    expect = {
        "upper_body/images/000100_0.jpg": ("shirt", "4"),
        "lower_body/images/050100_0.jpg": ("skirt", "5"),
        "lower_body/images/050200_0.jpg": ("trousers", "6"),
        "dresses/images/020100_0.jpg": ("dress", "7"),
    }
    tax = load_taxonomy()
    for u in units.values():
        rel = u.relative(u.tgt_uri)
        category, labels = expect[rel]
        (obj,) = u.objects
        assert obj.category == category and obj.mask_uri.endswith(f"_4.png#labels={labels}")
        assert tax.lookup(obj.category).domain == "garments"
        assert u.relative(u.ref_uri) == rel.replace("_0.jpg", "_1.jpg")
        assert u.group_id == f"tryon/DressCode/{rel.replace('_0.jpg', '_1.jpg')}"
        assert load_mask_uri(obj.mask_uri).sum() == 10 * 28
    assert units["tryon/DressCode/dresses/images/020100_0.jpg"].relative(
        units["tryon/DressCode/dresses/images/020100_0.jpg"].ref_mask_uri
    ) == "dresses/cloth_mask/020100_1.png"
    assert units["tryon/DressCode/upper_body/images/000100_0.jpg"].ref_mask_uri == ""
    fixed = {u.objects[0].category for u in parse_source(f"tryon:{root}?lower_category=trousers").units()}
    assert fixed == {"shirt", "trousers", "dress"}


def test_tryon_missing_files_fail_later_not_now(tmp_path: Path):
    root = viton(tmp_path / "v")
    (root / "train" / "image-parse-v3" / "00002_00.png").unlink()
    (root / "train" / "cloth" / "00001_00.jpg").unlink()
    units = {u.unit_id.rsplit("/", 1)[-1]: u for u in parse_source(f"tryon:{root}").units()}
    with pytest.raises(ImageReadError, match="unreadable"):
        load_mask_uri(units["00002_00.jpg"].objects[0].mask_uri)
    with pytest.raises(ImageReadError, match="unreadable"):
        load_uri(units["00001_00.jpg"].ref_uri)


def test_tryon_layout_errors(tmp_path: Path):
    (tmp_path / "x").mkdir()
    with pytest.raises(UserError, match="neither VITON-HD .* nor DressCode"):
        parse_source(f"tryon:{tmp_path / 'x'}")
    with pytest.raises(UserError, match="not a folder"):
        parse_source(f"tryon:{tmp_path / 'y'}")
