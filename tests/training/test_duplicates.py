"""Training reads ``duplicates.parquet``: one member of each near-duplicate cluster is trained on, the others are
left out, and a file older than the shards is refused instead of skipping the wrong samples."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import webdataset as wds
from conftest import make_sample, write_shards

from unieditkit.pipelines.dedupe import dedupe
from unieditkit.training.model.anchors import Anchors
from unieditkit.training.config import CurriculumConfig
from unieditkit.training.model.curriculum import Curriculum
from unieditkit.training.data import BatchSource, duplicate_skips
from unieditkit.errors import UserError


def _add_shard(root: pathlib.Path, name: str, samples: list[dict]) -> None:
    with wds.TarWriter(str(root / f"{name}.tar")) as sink:
        for s in samples:
            sink.write(s)
    stats = {"shard": name, "domain": "garments", "split": "train", "units": len(samples), "samples": len(samples),
             "rejected": {}, "bytes": (root / f"{name}.tar").stat().st_size, "format_version": 1}
    (root / f"{name}_stats.json").write_text(json.dumps(stats, sort_keys=True))


def _copy_of(sample: dict, key: str) -> dict:
    meta = json.loads(sample["json"])
    meta["key"] = key
    return {**sample, "__key__": key, "json": json.dumps(meta, sort_keys=True).encode()}


def test_training_leaves_out_all_but_one_member_of_each_cluster(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "out"
    write_shards(root, {"garments": [4]}, {"garments": 0}, size=40)
    original = make_sample("garments", "train", 0, 0, 40, np.random.default_rng(0))  # the first sample of the shard
    _add_shard(root, "garments-train-000001", [_copy_of(original, "garments_zz-copy_0000000000_00")])
    rows = dedupe(root, 4)
    assert {r["key"] for r in rows} == {original["__key__"], "garments_zz-copy_0000000000_00"}
    skip = duplicate_skips(root)
    assert len(skip) == 1 and skip <= {r["key"] for r in rows if not r["keep"]}

    shards = sorted(str(p) for p in root.glob("*.tar"))
    source = BatchSource(shards, Anchors.from_taxonomy(), Curriculum(CurriculumConfig(), 8), image_size=32, batch_size=4,
                         seed=0, epoch_batches=8, rank=0, world_size=1, num_workers=0, shuffle_buffer=4,
                         rough_source="stored", skip=skip)
    seen = set()
    for batch in source.batches(0):
        seen.update(batch["keys"])
        if batch["step"] == 7:
            break
    assert not seen & skip, "a left-out duplicate was trained on"
    assert len(seen) == 4, "every other sample, one member of the cluster included, is trained on"


def test_stale_duplicates_file_is_refused(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "out"
    write_shards(root, {"garments": [4]}, {"garments": 0}, size=40)
    dedupe(root, 4)
    _add_shard(root, "garments-train-000001", [make_sample("garments", "train", 9, 0, 40, np.random.default_rng(5))])
    with pytest.raises(UserError, match="re-run `unieditkit dedupe"):
        duplicate_skips(root)


def test_no_duplicates_file_skips_nothing(two_domain_shards: pathlib.Path) -> None:
    assert duplicate_skips(two_domain_shards) == frozenset()
