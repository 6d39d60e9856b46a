"""The build on the bundled sample and on small hand-made sources: format, round trips, resume, errors."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from unieditkit.pipelines.build import build
from unieditkit.pipelines.config import BuildConfig, OutputSettings
from unieditkit.format import MEMBERS
from unieditkit.cli import main
from unieditkit.errors import UserError
from unieditkit.mats import bbox, rough_mask


def shard_files(out: Path) -> list[Path]:
    return sorted(out.glob("*.tar"))


def read_samples(tar_path: Path) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(tar_path) as tf:
        for m in tf.getmembers():
            key, _, ext = m.name.partition(".")
            samples.setdefault(key, {})[ext] = tf.extractfile(m).read()
    return samples


def as_mask(data: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    assert img.mode == "L"
    arr = np.asarray(img)
    assert set(np.unique(arr)) <= {0, 255}
    return arr > 0


def test_bundled_build_writes_complete_shards(built_dataset: Path) -> None:
    tars = shard_files(built_dataset)
    assert tars, "no shards written"
    total = 0
    for tar in tars:
        assert tar.name.startswith("garments-") and tar.stem.split("-")[1] in ("train", "val", "test")
        assert len(tar.stem.split("-")[2]) == 6
        stats = json.loads((built_dataset / f"{tar.stem}_stats.json").read_text())
        samples = read_samples(tar)
        assert stats["samples"] == len(samples)
        total += len(samples)
        for key, members in samples.items():
            assert "." not in key and key.startswith("garments_")
            assert set(members) == set(MEMBERS) | {"json"}
            meta = json.loads(members["json"])
            assert meta["key"] == key and meta["domain"] == "garments" and meta["pair_kind"] == "self"
            assert meta["split"] == tar.stem.split("-")[1]
            assert "null" not in members["json"].decode(), "JSON fields must never be null"
            fine, rough, box = (as_mask(members[m]) for m in ("mask_fine.png", "mask_rough.png", "mask_box.png"))
            tgt = Image.open(io.BytesIO(members["tgt.jpg"]))
            assert tgt.size == tuple(meta["tgt_size"]) == fine.shape[::-1]
            assert not (fine & ~rough).any(), f"{key}: rough does not cover fine"
            x0, y0, x1, y1 = meta["bbox"]
            assert (x0, y0, x1, y1) == bbox(fine)
            expected_box = np.zeros_like(fine)
            expected_box[y0:y1, x0:x1] = True
            assert (box == expected_box).all()
            assert (rough == rough_mask(fine, meta["mats"]["seed"])[0]).all(), "rough mask not reproducible from its seed"
            ref_mask = as_mask(members["ref_mask.png"])
            ref = np.asarray(Image.open(io.BytesIO(members["ref.jpg"])).convert("RGB")).astype(int)
            assert ref_mask.shape == ref.shape[:2] == (384, 384) and ref_mask.any()
            assert np.abs(ref[~ref_mask] - 127).mean() < 6, "reference background is not neutral grey"
    index = pq.read_table(built_dataset / "index.parquet").to_pylist()
    assert len(index) == total
    assert len({r["key"] for r in index}) == total


def test_bundled_build_counts_unmapped_and_other_domains(tmp_path: Path, ray_local) -> None:
    summary = build(BuildConfig(domain="accessories", out_dir=str(tmp_path / "o"), progress=False))
    assert summary.samples_written > 0
    assert summary.report.unmapped_categories["mystery gadget"] == 8  # one per domain in the sample
    assert summary.report.other_domain_objects  # sample images of garments contain accessories and vice versa
    text = "\n".join(summary.lines())
    assert "mystery gadget" in text and "samples written" in text


def test_webdataset_round_trip(built_dataset: Path) -> None:
    import webdataset as wds

    urls = [str(p) for p in shard_files(built_dataset)]
    ds = wds.WebDataset(urls, shardshuffle=False).decode(wds.imagehandler("pil", extensions=["jpg"]), wds.imagehandler("l8", extensions=["png"]))
    n = 0
    for sample in ds:
        assert sample["ref.jpg"].mode == "RGB"
        assert sample["mask_rough.png"].dtype == np.uint8 and sample["mask_rough.png"].ndim == 2
        assert isinstance(sample["json"], dict)
        n += 1
    assert n == pq.read_metadata(built_dataset / "index.parquet").num_rows


def test_huggingface_datasets_offline(built_dataset: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from datasets import load_dataset

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    ds = load_dataset(str(built_dataset), "garments", split="train", cache_dir=str(tmp_path / "cache"))
    train_keys = {r["key"] for r in pq.read_table(built_dataset / "index.parquet").to_pylist() if r["split"] == "train"}
    assert set(ds["__key__"]) == train_keys
    row = ds[0]
    assert row["ref.jpg"].mode == "RGB" and row["mask_fine.png"].mode == "L"
    assert row["json"]["domain"] == "garments" and row["json"]["labels"][0]["score"] == 1.0
    assert isinstance(row["json"]["mats"]["seed"], int)
    stream = load_dataset(str(built_dataset), "garments", split="train", streaming=True)
    first = next(iter(stream))
    assert first["json"]["subcategory"]


def test_rerun_does_nothing_and_deleted_shard_is_rebuilt_identically(built_dataset: Path, tmp_path: Path, ray_local) -> None:
    out = tmp_path / "copy"
    shutil.copytree(built_dataset, out)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()}
    cfg = BuildConfig(domain="garments", out_dir=str(out), settings=OutputSettings(units_per_shard=8), progress=False)
    summary = build(cfg)
    assert summary.shards_written == 0
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()} == before

    victim = shard_files(out)[0]
    for p in (victim, out / f"{victim.stem}_stats.json", out / f"{victim.stem}.parquet"):
        p.unlink()
    summary = build(cfg)
    assert summary.shards_written == 1
    assert victim.read_bytes() == before[victim.name][1]
    assert (out / "index.parquet").read_bytes() == before["index.parquet"][1]


def test_same_seed_same_bytes_other_seed_other_masks(built_dataset: Path, tmp_path: Path, ray_local) -> None:
    again = tmp_path / "again"
    build(BuildConfig(domain="garments", out_dir=str(again), settings=OutputSettings(units_per_shard=8), progress=False))
    for tar in shard_files(built_dataset):
        assert (again / tar.name).read_bytes() == tar.read_bytes()
    other = tmp_path / "seed1"
    build(BuildConfig(domain="garments", out_dir=str(other), settings=OutputSettings(units_per_shard=8, seed=1), progress=False))
    assert [p.name for p in shard_files(other)] == [p.name for p in shard_files(built_dataset)]
    a, b = read_samples(shard_files(built_dataset)[0]), read_samples(shard_files(other)[0])
    assert a.keys() == b.keys()
    assert any(a[k]["mask_rough.png"] != b[k]["mask_rough.png"] for k in a)
    assert all(a[k]["mask_fine.png"] == b[k]["mask_fine.png"] for k in a)


def test_changed_settings_refuse_to_mix(built_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(built_dataset, out)
    with pytest.raises(UserError, match="different settings"):
        build(BuildConfig(domain="garments", out_dir=str(out), settings=OutputSettings(units_per_shard=8, seed=5), progress=False))


def test_bad_domain_is_one_line_with_suggestion(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["build", "--domain", "garment", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "did you mean 'garments'" in err and "accessories" in err
    assert not (tmp_path / "o").exists()


def test_unknown_source_kind_and_missing_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["build", "--domain", "garments", "--source", "cocoo:x.json", "--out", str(tmp_path)]) == 2
    assert "did you mean 'coco'" in capsys.readouterr().err
    assert main(["build", "--domain", "garments", "--source", f"coco:{tmp_path}/missing.json", "--out", str(tmp_path)]) == 2
    assert "missing.json: file not found" in capsys.readouterr().err


def _write_coco(root: Path, images: dict[str, bytes], category: str = "dress") -> Path:
    (root / "images").mkdir(parents=True)
    entries, anns = [], []
    for i, (name, data) in enumerate(sorted(images.items()), 1):
        (root / "images" / name).write_bytes(data)
        entries.append({"id": i, "file_name": name, "width": 64, "height": 48})
        poly = [10, 8, 50, 8, 50, 40, 10, 40]
        anns.append({"id": i, "image_id": i, "category_id": 1, "segmentation": [poly], "bbox": [10, 8, 40, 32], "iscrowd": 0})
    path = root / "instances.json"
    path.write_text(json.dumps({"images": entries, "annotations": anns, "categories": [{"id": 1, "name": category}]}))
    return path


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def test_broken_image_is_recorded_and_build_goes_on(tmp_path: Path, ray_local) -> None:
    good = _jpeg(0)
    coco = _write_coco(tmp_path / "src", {"good.jpg": good, "truncated.jpg": good[: len(good) // 3], "empty.jpg": b""})
    out = tmp_path / "out"
    summary = build(BuildConfig(domain="garments", out_dir=str(out), sources=(f"coco:{coco}",), settings=OutputSettings(split_ratios=(1.0, 0.0, 0.0)), progress=False))
    assert summary.samples_written == 1
    assert summary.rejected == {"undecodable": 1, "empty_file": 1}
    rejected = pq.read_table(out / "rejected.parquet").to_pylist()
    assert sorted(r["reason"] for r in rejected) == ["empty_file", "undecodable"]
    assert any("truncated.jpg" in r["detail"] for r in rejected)


def test_manifest_source_self_and_pair_lines(tmp_path: Path, ray_local) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name, seed in (("scene.jpg", 1), ("product.jpg", 2), ("photo.jpg", 3)):
        (src / name).write_bytes(_jpeg(seed))
    mask = np.zeros((48, 64), np.uint8)
    mask[10:40, 12:50] = 255
    Image.fromarray(mask).save(src / "scene_mask.png")
    lines = [
        {"ref": "product.jpg", "target": "scene.jpg", "mask": "scene_mask.png", "category": "handbag"},
        {"image": "photo.jpg", "objects": [{"category": "Handbag", "polygon": [[5, 5, 40, 5, 40, 40, 5, 40]]}]},
        {"image": "photo.jpg", "id": "other", "objects": [{"category": "unknown thing", "bbox": [1, 1, 20, 20]}]},
    ]
    manifest = src / "pairs.jsonl"
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    out = tmp_path / "out"
    summary = build(BuildConfig(domain="accessories", out_dir=str(out), sources=(f"manifest:{manifest}",), settings=OutputSettings(split_ratios=(1.0, 0.0, 0.0)), progress=False))
    assert summary.samples_written == 2
    assert summary.report.unmapped_categories == {"unknown thing": 1}
    kinds = sorted(r["pair_kind"] for r in pq.read_table(out / "index.parquet").to_pylist())
    assert kinds == ["manifest", "self"]
    uris = {r["source_uri"] for r in pq.read_table(out / "index.parquet").to_pylist()}
    assert uris == {"scene.jpg", "photo.jpg"}, "metadata paths must be relative to the source"


def test_malformed_manifest_line_names_file_and_line(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"image": "a.jpg", "objects": []}\n{not json\n')
    with pytest.raises(UserError, match=r"m.jsonl:2: invalid JSON"):
        build(BuildConfig(domain="garments", out_dir=str(tmp_path / "o"), sources=(f"manifest:{manifest}",), progress=False))


def test_second_build_into_same_folder_refuses(tmp_path: Path) -> None:
    from unieditkit.pipelines.lock import build_lock

    out = tmp_path / "out"
    out.mkdir()
    with build_lock(out):
        with pytest.raises(UserError, match="another build is writing here"):
            build(BuildConfig(domain="garments", out_dir=str(out), progress=False))
    assert not list(out.glob("*.tar"))


@pytest.mark.parametrize("damage", ["delete", "truncate", "replace"])
def test_damaged_tar_with_its_marker_kept_is_rebuilt_identically(damage: str, built_dataset: Path, tmp_path: Path, ray_local) -> None:
    """README: "delete a shard and re-run to rebuild exactly that shard" — deleting only the tar counts too."""
    out = tmp_path / "copy"
    shutil.copytree(built_dataset, out)
    victim = shard_files(out)[0]
    original = victim.read_bytes()
    if damage == "delete":
        victim.unlink()
    elif damage == "truncate":
        victim.write_bytes(original[: len(original) // 2])
    else:  # same size, one byte changed: only the hash can tell
        data = bytearray(original)
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(bytes(data))
    summary = build(BuildConfig(domain="garments", out_dir=str(out), settings=OutputSettings(units_per_shard=8), progress=False))
    assert summary.shards_written == 1 and list(summary.repaired) == [victim.stem]
    assert any(line.startswith(f"rebuilt {victim.stem}: ") for line in summary.lines())
    assert victim.read_bytes() == original


def test_bad_out_is_refused_before_anything_is_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    assert main(["build", "--domain", "garments", "--out", str(a_file)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    url = "nosuch://bucket/prefix"
    assert main(["build", "--domain", "garments", "--out", url]) == 2
    err = capsys.readouterr().err
    assert "--out nosuch://bucket/prefix" in err and "nosuch" in err and err.count("\n") == 1
    assert not Path("nosuch:").exists()
    unreachable = "s3://bucket/prefix"  # no credentials and no server: one line, nothing created
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run([sys.executable, "-m", "unieditkit.cli", "build", "--domain", "garments", "--out", unreachable],
                          env={**env, "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                               "AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2 and "--out s3://bucket/prefix: cannot list it" in done.stderr and done.stderr.count("\n") == 1, done.stderr[-1500:]
    manifest = tmp_path / "broken.jsonl"
    manifest.write_text("{not json\n")
    out = tmp_path / "never"
    assert main(["build", "--domain", "garments", "--source", f"manifest:{manifest}", "--out", str(out)]) == 2
    assert "broken.jsonl" in capsys.readouterr().err
    assert not out.exists(), "a build with bad input must create nothing"
