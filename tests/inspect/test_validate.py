"""``unieditkit validate``: a clean build passes; each kind of damage is reported as ``SHARD KEY: problem``."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from unieditkit.cli import main


def _validate(out: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, list[str], str]:
    rc = main(["validate", str(out), *extra])
    captured = capsys.readouterr()
    return rc, captured.out.splitlines(), captured.err


def test_clean_build_is_valid(built_dataset: Path, small_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, lines, _ = _validate(built_dataset, capsys, "--jobs", "2")
    n = pq.read_metadata(built_dataset / "index.parquet").num_rows
    shards = len(list(built_dataset.glob("*.tar")))
    assert rc == 0 and lines == [f"{shards} shards, {n} samples: valid"]
    rc, lines, _ = _validate(small_copy, capsys)
    assert rc == 0 and lines[-1].endswith("samples: valid")


def _png(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8), "L").save(buf, format="PNG")
    return buf.getvalue()


def _mask(data: bytes) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(data)))


def _uncover_fine(m: dict[str, bytes], key: str) -> None:
    fine, rough = _mask(m[f"{key}.mask_fine.png"]), _mask(m[f"{key}.mask_rough.png"])
    ys, xs = np.nonzero(fine)
    rough[ys[0], xs[0]] = 0
    m[f"{key}.mask_rough.png"] = _png(rough)


def _grey_value(m: dict[str, bytes], key: str) -> None:
    rough = _mask(m[f"{key}.mask_rough.png"])
    rough[0, 0] = 128
    m[f"{key}.mask_rough.png"] = _png(rough)


def _shift_box(m: dict[str, bytes], key: str) -> None:
    m[f"{key}.mask_box.png"] = _png(np.roll(_mask(m[f"{key}.mask_box.png"]), 3, axis=1))


def _rgb_mask(m: dict[str, bytes], key: str) -> None:
    buf = io.BytesIO()
    Image.fromarray(_mask(m[f"{key}.mask_fine.png"])).convert("RGB").save(buf, format="PNG")
    m[f"{key}.mask_fine.png"] = buf.getvalue()


def _small_mask(m: dict[str, bytes], key: str) -> None:
    m[f"{key}.mask_box.png"] = _png(_mask(m[f"{key}.mask_box.png"])[:-2])


def _json(fn: Callable[[dict], None]) -> Callable[[dict[str, bytes], str], None]:
    def edit(m: dict[str, bytes], key: str) -> None:
        meta = json.loads(m[f"{key}.json"])
        fn(meta)
        m[f"{key}.json"] = json.dumps(meta).encode()

    return edit


def _truncate_jpeg(m: dict[str, bytes], key: str) -> None:
    m[f"{key}.tgt.jpg"] = m[f"{key}.tgt.jpg"][:200]


def _dotted_key(m: dict[str, bytes], key: str) -> dict[str, bytes]:
    return {(n.replace(key, key[:5] + "." + key[5:]) if n.startswith(key + ".") else n): d for n, d in m.items()}


# (name, edit of the first sample's members, expected message: the key is the first sample's unless given)
TAR_CASES: list[tuple[str, Callable, str]] = [
    ("rough_does_not_cover_fine", _uncover_fine, "mask_rough.png does not cover mask_fine.png (1 fine pixels outside rough)"),
    ("dropped_member", lambda m, k: m.pop(f"{k}.mask_box.png"), "missing mask_box.png"),
    ("extra_member", lambda m, k: m.update({f"{k}.depth.png": b"x"}), "unexpected member '{key}.depth.png'"),
    ("non_binary_mask", _grey_value, "mask_rough.png has values other than 0 and 255 (1 pixels)"),
    ("box_not_bbox_of_fine", _shift_box, "mask_box.png is not the filled bounding box"),
    ("rgb_mask", _rgb_mask, "mask_fine.png is PNG RGB, expected an 8-bit L PNG"),
    ("mask_wrong_size", _small_mask, "mask_box.png is "),
    ("truncated_jpeg", _truncate_jpeg, "tgt.jpg does not decode"),
    ("null_in_json", _json(lambda j: j["captions"].update(ref=None)), "json field captions.ref is null"),
    ("missing_json_field", _json(lambda j: j["mats"].pop("seed")), "json field mats.seed is missing"),
    ("extra_json_field", _json(lambda j: j.update(note="hi")), "json field note is not in the format"),
    ("wrong_json_type", _json(lambda j: j.update(subcategory_id="4")), "json field subcategory_id is str, expected int"),
    ("bool_for_int", _json(lambda j: j.update(subcategory_id=True)), "json field subcategory_id is bool, expected int"),
    ("short_bbox", _json(lambda j: j.update(bbox=j["bbox"][:3])), "json field bbox has 3 items, expected 4"),
    ("json_bbox_off", _json(lambda j: j["bbox"].__setitem__(0, j["bbox"][0] + 1)), "json bbox is "),
    ("wrong_split", _json(lambda j: j.update(split="train")), "json split is 'train', expected 'val'"),
    ("unknown_subcategory", _json(lambda j: j.update(subcategory="sofa")), "json subcategory 'sofa' is not a garments subcategory"),
    ("json_does_not_parse", lambda m, k: m.update({f"{k}.json": b"{not json"}), "json does not parse"),
    ("dotted_key", _dotted_key, "key has a dot"),
]


@pytest.mark.parametrize("edit, expected", [c[1:] for c in TAR_CASES], ids=[c[0] for c in TAR_CASES])
def test_damaged_sample_is_reported(small_copy: Path, edit_tar, edit, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    tar = sorted(small_copy.glob("*.tar"))[0]
    shard = tar.name.removesuffix(".tar")
    key = pq.read_table(small_copy / "index.parquet").column("key")[0].as_py()
    edit_tar(tar, lambda m: edit(m, key))
    rc, lines, err = _validate(small_copy, capsys)
    assert rc == 1 and "problems" in err
    want_key = key[:5] + "." + key[5:] if expected == "key has a dot" else key
    prefix = f"{shard} {want_key}: {expected.format(key=key)}"
    assert any(line.startswith(prefix) for line in lines), f"no line starting {prefix!r} in:\n" + "\n".join(lines)
    assert all(line.startswith(f"{shard} ") for line in lines), "problems reported outside the damaged shard"


def _first_shard(out: Path) -> str:
    return sorted(p.name.removesuffix(".tar") for p in out.glob("*.tar"))[0]


def test_missing_stats_file_and_stray_tmp(small_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shard = _first_shard(small_copy)
    (small_copy / f"{shard}_stats.json").unlink()
    (small_copy / f"{shard}.tar.tmp").write_bytes(b"half")
    rc, lines, _ = _validate(small_copy, capsys)
    assert rc == 1
    assert f"{shard} -: no {shard}_stats.json (_stats.json); the shard is not done; re-run the build to finish it" in lines
    assert any(line.startswith(f"{shard}.tar.tmp -: left-over temporary file") for line in lines)
    # the shard is not done, so the folder index must not list it
    assert any(line.endswith("index.parquet row not in the shard's sidecar") for line in lines)


def test_stats_counts_must_match(small_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shard = _first_shard(small_copy)
    path = small_copy / f"{shard}_stats.json"
    stats = json.loads(path.read_text())
    stats.update(samples=stats["samples"] + 1, rejected={"blurry": 1})
    path.write_text(json.dumps(stats))
    rc, lines, _ = _validate(small_copy, capsys)
    assert rc == 1
    assert f"{shard} -: {shard}_stats.json samples is {stats['samples']}, the shard has {stats['samples'] - 1}" in lines
    assert f"{shard} -: {shard}_stats.json rejected is {{'blurry': 1}}, the shard has {{}}" in lines


def test_index_and_sidecar_must_agree(small_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shard = _first_shard(small_copy)
    index = pq.read_table(small_copy / "index.parquet")
    key = index.column("key")[0].as_py()
    pq.write_table(index.slice(1), small_copy / "index.parquet")
    sidecar = pq.read_table(small_copy / f"{shard}.parquet").to_pylist()
    sidecar[-1]["sharpness"] = 1.5
    pq.write_table(pa.Table.from_pylist(sidecar, schema=index.schema), small_copy / f"{shard}.parquet")
    rc, lines, _ = _validate(small_copy, capsys)
    assert rc == 1
    assert f"{shard} {key}: sidecar row missing from index.parquet or different there" in lines
    assert f"{shard} {sidecar[-1]['key']}: sidecar row differs from the json in sharpness" in lines


def test_keys_unique_across_shards(small_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from unieditkit.pipelines.catalog import finalize

    shard = _first_shard(small_copy)
    twin = shard[:-1] + "9"
    for suffix in (".tar", ".parquet", "_stats.json"):
        shutil.copy2(small_copy / f"{shard}{suffix}", small_copy / f"{twin}{suffix}")
    finalize(small_copy)
    rc, lines, _ = _validate(small_copy, capsys)
    key = pq.read_table(small_copy / "index.parquet").column("key")[0].as_py()
    assert rc == 1
    assert f"{twin} {key}: key also in {shard} (keys must be unique across shards)" in lines


def test_not_a_build_folder_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such folder" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a build")
    assert main(["validate", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"is {empty} a folder written by `unieditkit build`?" in err


def test_build_folder_missing_its_tables_is_told_to_rerun(built_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(built_dataset, out)
    (out / "index.parquet").unlink()
    rc, lines, err = _validate(out, capsys)
    assert rc == 1 and "index.parquet -: missing; re-run the build" in "\n".join(lines)
    assert err.strip().endswith(": 1 problem")


def test_tar_that_no_longer_matches_its_marker_is_reported(built_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(built_dataset, out)
    tar = sorted(out.glob("*.tar"))[0]
    data = bytearray(tar.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tar.write_bytes(bytes(data))
    rc, lines, _ = _validate(out, capsys)
    marker = tar.name.removesuffix(".tar") + "_stats.json"
    assert rc == 1 and f"{tar.name} differs from the SHA-256 in its marker: delete {marker} and re-run" in "\n".join(lines)


def test_damaged_tar_and_link_member_are_reported_not_followed(small_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import tarfile

    shard = _first_shard(small_copy)
    tar = small_copy / f"{shard}.tar"
    with tarfile.open(tar, "a") as tf:
        link = tarfile.TarInfo("zzz.tgt.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    rc, lines, _ = _validate(small_copy, capsys)
    assert rc == 1 and f"{shard} zzz: member 'zzz.tgt.jpg': not a regular file" in lines
    data = tar.read_bytes()
    tar.write_bytes(data[: len(data) // 2])
    rc, lines, _ = _validate(small_copy, capsys)
    assert rc == 1
    assert any(line.startswith(f"{shard} -: damaged tar (ReadError") for line in lines), "\n".join(lines)
    assert not list(tmp_path.rglob("passwd"))


def test_absolute_and_dotdot_members_are_reported_and_never_read(small_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import tarfile

    from unieditkit.reader import iter_samples, tar_entries

    shard = _first_shard(small_copy)
    tar = small_copy / f"{shard}.tar"
    key = pq.read_table(small_copy / "index.parquet").column("key")[0].as_py()
    hostile = ["/tmp/abs.json", "../escape.ref.jpg", f"{key}/../../up.tgt.jpg", "..\\win.json"]
    with tarfile.open(tar, "a") as tf:
        for name in hostile:
            info = tarfile.TarInfo(name)
            info.size = 4
            tf.addfile(info, io.BytesIO(b"evil"))
    assert [e.name for e in tar_entries(tar) if e.data is None] == hostile
    assert all(len(s.files) == 7 for s in iter_samples(tar))  # the hostile members joined no sample
    rc, lines, _ = _validate(small_copy, capsys)
    assert rc == 1
    for name in hostile:
        assert f"{shard} -: member {name!r}: absolute or '..' member name (ignored)" in lines, "\n".join(lines)
    assert not [line for line in lines if "escape" in line and "member name" not in line]
    assert not list(tmp_path.rglob("escape*")) and not list(tmp_path.rglob("up.tgt.jpg")) and not Path("/tmp/abs.json").exists()
