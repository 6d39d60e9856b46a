"""hf: on local datasets made here (save_to_disk, DatasetDict, parquet folder) and a Hub name that is not cached."""

from __future__ import annotations

import io
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image as PILImage

from unieditkit.pipelines.sources import parse_source
from unieditkit import hfdata
from unieditkit.errors import UserError
from unieditkit.imageio import ImageReadError
from unieditkit.media import load_uri


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(np.full((20, 24, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _table(n: int) -> "datasets.Dataset":
    features = datasets.Features({"photo": datasets.Image(), "product": datasets.Value("string"), "n": datasets.Value("int32")})
    rows = {"photo": [{"bytes": _png(10 * i), "path": None} for i in range(n)], "product": [f"p{i // 2}" for i in range(n)], "n": list(range(n))}
    return datasets.Dataset.from_dict(rows, features=features)


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "shop"
    _table(5).save_to_disk(str(path))
    return path


def test_hf_local_save_to_disk_units_and_rows(saved: Path):
    source = parse_source(f"hf:{saved}?image_column=photo")
    units = list(source.units())
    assert [u.unit_id for u in units] == [f"hf/shop/train/{i}" for i in range(5)]
    for i, u in enumerate(units):
        assert (u.pair_kind, u.needs_detection, u.group_id) == ("self", True, u.unit_id)
        assert u.relative(u.tgt_uri) == f"shop#split=train&column=photo&row={i}"
        rgb = load_uri(u.tgt_uri)
        assert rgb.shape == (20, 24, 3) and int(rgb[0, 0, 0]) == 10 * i
    assert source.describe() == f"hf:{saved}?image_column=photo&split=train"
    grouped = list(parse_source(f"hf:{saved}?image_column=photo&group_column=product").units())
    assert [u.group_id for u in grouped] == ["hf/shop/product=p0"] * 2 + ["hf/shop/product=p1"] * 2 + ["hf/shop/product=p2"]


def test_hf_row_errors_are_image_read_errors(saved: Path):
    ref = str(saved.resolve())
    with pytest.raises(ImageReadError) as err:
        load_uri(f"{ref}#split=train&column=photo&row=5")
    assert err.value.reason == "row_missing"


def test_hf_dataset_dict_splits_and_parquet_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    dd = datasets.DatasetDict({"train": _table(3), "validation": _table(2)})
    dd.save_to_disk(str(tmp_path / "dd"))
    units = list(parse_source(f"hf:{tmp_path / 'dd'}?split=validation&image_column=photo").units())
    assert [u.unit_id for u in units] == ["hf/dd/validation/0", "hf/dd/validation/1"]
    assert int(load_uri(units[1].tgt_uri)[0, 0, 0]) == 10
    with pytest.raises(UserError, match="no split 'test'; available: train, validation"):
        parse_source(f"hf:{tmp_path / 'dd'}?split=test&image_column=photo")
    pq_dir = tmp_path / "pq"
    pq_dir.mkdir()
    _table(4).to_parquet(str(pq_dir / "train-00000.parquet"))
    units = list(parse_source(f"hf:{pq_dir}?image_column=photo").units())
    assert len(units) == 4 and int(load_uri(units[3].tgt_uri)[0, 0, 0]) == 30


def test_hf_column_and_offline_errors(saved: Path):
    with pytest.raises(UserError, match="no column 'image'; columns: photo, product, n"):
        parse_source(f"hf:{saved}")
    with pytest.raises(UserError, match="column 'product' is .* not an Image feature"):
        parse_source(f"hf:{saved}?image_column=product")
    with pytest.raises(UserError, match="no column 'shop' for group_column"):
        parse_source(f"hf:{saved}?image_column=photo&group_column=shop")
    with pytest.raises(UserError) as err:
        parse_source("hf:nobody-here/no-such-dataset-xyz")
    msg = str(err.value)
    assert "\n" not in msg and "nobody-here/no-such-dataset-xyz" in msg and "download it once while online" in msg
    with pytest.raises(UserError, match="not found locally and not a Hub name"):
        parse_source("hf:./missing/local/ds")


def test_hf_opened_dataset_is_cached_per_process(saved: Path):
    ref = str(saved.resolve())
    first = hfdata.open_dataset(ref, "train", "photo")
    assert hfdata.open_dataset(ref, "train", "photo") is first
