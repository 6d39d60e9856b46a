"""Non-streaming ``load_dataset(out, domain)`` returns what is on disk, whatever an earlier load left in the cache.

``datasets`` keys its cache on the dataset card, not on the files (huggingface/datasets#2956): before the card
carried a fingerprint of the shards, a rebuilt folder, or another folder with the same base name, loaded the
old rows silently. The cache folder is shared between loads here, as the default ``~/.cache`` is for a user.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from unieditkit.pipelines.build import build
from unieditkit.pipelines.config import BuildConfig, OutputSettings

pytestmark = pytest.mark.slow  # four small builds


def build_into(out: Path, source: Path, seed: int) -> None:
    build(BuildConfig(domain="garments", out_dir=str(out), sources=[f"coco:{source}"], settings=OutputSettings(seed=seed, units_per_shard=4), progress=False))


def on_disk(out: Path) -> dict[str, int]:
    """key -> MATS seed of every train sample, read from the tars themselves."""
    seeds = {}
    for tar in sorted(out.glob("garments-train-*.tar")):
        with tarfile.open(tar) as tf:
            for m in tf.getmembers():
                if m.name.endswith(".json"):
                    meta = json.loads(tf.extractfile(m).read())
                    seeds[meta["key"]] = meta["mats"]["seed"]
    return seeds


def loaded(out: Path, cache: Path) -> dict[str, int]:
    from datasets import load_dataset

    ds = load_dataset(str(out), "garments", split="train", cache_dir=str(cache))
    return {row["key"]: row["mats"]["seed"] for row in ds["json"]}


@pytest.fixture(scope="module")
def small_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "scripts" / "make_sample_data.py"
    spec = importlib.util.spec_from_file_location("make_sample_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate(tmp_path_factory.mktemp("src"), 6, (160, 120))


def test_rebuild_into_the_same_folder_loads_the_new_rows(small_source: Path, tmp_path: Path, ray_local) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    build_into(out, small_source, seed=0)
    first = loaded(out, cache)
    assert first == on_disk(out) and first
    shutil.rmtree(out)
    build_into(out, small_source, seed=1)  # same keys and counts, other masks: only the content differs
    assert on_disk(out) != first
    assert loaded(out, cache) == on_disk(out)


def test_two_folders_with_the_same_base_name_load_their_own_rows(small_source: Path, tmp_path: Path, ray_local) -> None:
    a, b, cache = tmp_path / "a" / "ho", tmp_path / "b" / "ho", tmp_path / "cache"
    build_into(a, small_source, seed=0)
    build_into(b, small_source, seed=2)
    assert loaded(a, cache) == on_disk(a)
    assert loaded(b, cache) == on_disk(b) != on_disk(a)
