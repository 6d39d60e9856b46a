"""Reliability: hostile inputs, poison samples that kill workers, a full disk. (SIGKILL at each named point of a
build and its resume: ``test_promises.py``.)"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from unieditkit.pipelines.stages.pair import sample_key, unit_key
from unieditkit.cli import main

from buildproc import build_cmd, folder_files, shard_files

ROOT = Path(__file__).resolve().parent.parent


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


corpus = _module(ROOT / "tests" / "hostile" / "make_corpus.py", "make_corpus")


def test_hostile_inputs_are_recorded_or_converted(tmp_path: Path, ray_local) -> None:
    manifest = corpus.write(tmp_path / "corpus")
    out = tmp_path / "out"
    assert main(["build", "--domain", "garments", "--source", f"manifest:{manifest}", "--out", str(out), "--splits", "1,0,0", "--no-progress"]) == 0
    ok = {r["key"]: r for r in pq.read_table(out / "index.parquet").to_pylist()}
    rejected = {r["key"]: r for r in pq.read_table(out / "rejected.parquet").to_pylist()}
    for name, expected in corpus.EXPECTED.items():
        unit_id = f"manifest/manifest/{name}"
        if expected == "ok":
            assert sample_key("garments", unit_id, 0) in ok, f"{name!r} should have been used: {rejected.get(unit_key('garments', unit_id))}"
        else:
            row = rejected.get(unit_key("garments", unit_id))
            assert row is not None, f"{name!r} should have been rejected as {expected}"
            assert row["reason"] == expected, f"{name!r}: {row['reason']} ({row['detail']})"
            assert row["detail"], name
    rotated = ok[sample_key("garments", "manifest/manifest/exif_rotated.jpg", 0)]
    assert (rotated["tgt_width"], rotated["tgt_height"]) == (64, 96), "EXIF orientation not applied"
    assert rotated["fine_area"] > 0.2, "annotation in display orientation should cover the red box"


@pytest.mark.slow
def test_crashing_worker_is_retried_and_a_poison_unit_quarantined(coco_source: Path, coco_reference: Path, tmp_path: Path) -> None:
    expected = shard_files(folder_files(coco_reference))
    marker = tmp_path / "crashed-once"
    transient = tmp_path / "transient"
    env = {**os.environ, "UNIEDITKIT_CRASH_ONCE": f"synthetic_garments_003.jpg:{marker}"}
    subprocess.run(build_cmd(coco_source, transient), check=True, capture_output=True, timeout=300, env=env)
    assert marker.exists(), "the injected crash did not happen"
    assert shard_files(folder_files(transient)) == expected, "a retried crash must not change the output"

    poisoned = tmp_path / "poisoned"
    env = {**os.environ, "UNIEDITKIT_CRASH_ON": "synthetic_garments_003.jpg"}
    done = subprocess.run(build_cmd(coco_source, poisoned), capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "quarantined 1" in done.stdout
    rejected = pq.read_table(poisoned / "rejected.parquet").to_pylist()
    poison = [r for r in rejected if r["reason"] == "quarantined"]
    assert [r["key"] for r in poison] == [unit_key("garments", "coco/instances/synthetic_garments_003.jpg")]
    ref_keys = {r["key"] for r in pq.read_table(coco_reference / "index.parquet").to_pylist()}
    got_keys = {r["key"] for r in pq.read_table(poisoned / "index.parquet").to_pylist()}
    assert got_keys == {k for k in ref_keys if not k.startswith(poison[0]["key"] + "_")}
    assert len(got_keys) < len(ref_keys)


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 1 MiB filesystem (tmpfs; the tests run as root, as CI does), grown on demand."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)

    def grow() -> None:
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)

    yield mnt, grow
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_leaves_shard_unmarked_and_rerun_finishes(small_disk, built_dataset: Path, capsys: pytest.CaptureFixture[str], ray_local) -> None:
    mnt, grow = small_disk
    out = mnt / "out"
    args = ["build", "--domain", "garments", "--out", str(out), "--units-per-shard", "8", "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "disk full" in err and "re-run the same command" in err and err.count("\n") == 1
    for stats in out.glob("*_stats.json"):  # whatever is marked done is complete and correct
        name = stats.name.replace("_stats.json", ".tar")
        assert (out / name).read_bytes() == (built_dataset / name).read_bytes()
    assert len(list(out.glob("*_stats.json"))) < len(list(built_dataset.glob("*_stats.json")))
    assert not list(out.glob("*.tmp"))
    grow()
    assert main(args) == 0
    for tar in built_dataset.glob("*.tar"):
        assert (out / tar.name).read_bytes() == tar.read_bytes()
