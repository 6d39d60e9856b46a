"""Reading shards for training: what a batch holds, the curriculum's mask variant, bad samples, determinism."""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from unieditkit.training.model.anchors import Anchors
from unieditkit.training.config import CurriculumConfig
from unieditkit.training.model.curriculum import Curriculum
from unieditkit.training.data import BatchSource, decode_sample, find_shards
from unieditkit.errors import UserError

ANCHORS = Anchors.from_taxonomy()


def _source(shards, curriculum=None, max_steps=10, **kw):
    args = dict(image_size=32, batch_size=4, seed=0, epoch_batches=4, rank=0, world_size=1, num_workers=0,
                shuffle_buffer=8, rough_source="stored")
    args.update(kw)
    return BatchSource(shards, ANCHORS, curriculum or Curriculum(CurriculumConfig(), max_steps), **args)


def _take(source, start, n):
    out = []
    for batch in source.batches(start):
        out.append(batch)
        if len(out) == n:
            return out


def _samples(tar):
    return list(wds.DataPipeline(wds.SimpleShardList([str(tar)]), wds.tarfile_to_samples()))


def test_find_shards_takes_finished_shards_of_the_split(two_domain_shards, tmp_path):
    shards = find_shards(two_domain_shards, "train")
    assert [s.rsplit("/", 1)[1] for s in shards] == [
        "garments-train-000000.tar", "garments-train-000001.tar", "vehicles-train-000000.tar"]
    assert len(find_shards(two_domain_shards, "train", ["vehicles"])) == 1
    for f in two_domain_shards.glob("*"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "vehicles-train-000000_stats.json").unlink()  # not done yet: must not be read
    assert len(find_shards(tmp_path, "train")) == 2
    with pytest.raises(UserError, match="no finished val shards"):
        find_shards(two_domain_shards, "val")


def test_batch_holds_images_masks_and_anchor_ids(two_domain_shards):
    batch = _take(_source(find_shards(two_domain_shards, "train")), 0, 1)[0]
    assert batch["ref"].shape == batch["tgt"].shape == (4, 3, 32, 32)
    assert batch["mask"].shape == (4, 1, 32, 32)
    assert set(batch["mask"].unique().tolist()) <= {0.0, 1.0} and batch["mask"].sum() > 0
    assert batch["tgt"].min() >= -1 and batch["tgt"].max() <= 1
    for key, domain, sub in zip(batch["keys"], batch["domain"].tolist(), batch["subcategory"].tolist()):
        name = key.split("_", 1)[0]
        assert domain == ANCHORS.domain_index(name)
        assert sub in ({0, 1} if name == "garments" else {130, 131})
    assert batch["step"] == 0 and batch["skipped"] == 0


def test_decode_reads_only_the_variant_it_needs(two_domain_shards):
    sample = _samples(two_domain_shards / "garments-train-000000.tar")[0]
    for variant in ("fine", "rough", "box"):
        others = {f"mask_{v}.png" for v in ("fine", "rough", "box") if v != variant}
        slim = {k: v for k, v in sample.items() if k not in others}
        out = decode_sample(slim, variant, 32, ANCHORS)
        assert out["variant"] == ("fine", "rough", "box").index(variant)
    fine = decode_sample(sample, "fine", 32, ANCHORS)["mask"][0].bool()
    rough = decode_sample(sample, "rough", 32, ANCHORS)["mask"][0].bool()
    box = decode_sample(sample, "box", 32, ANCHORS)["mask"][0].bool()
    assert (rough | fine).equal(rough) and (box | fine).equal(box)
    ys, xs = box.nonzero(as_tuple=True)
    assert box[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1].all()  # a filled rectangle


def test_curriculum_decides_each_steps_mask_variant(two_domain_shards):
    cur = Curriculum(CurriculumConfig(boundaries=[0.5, 0.5], box={"box": 1.0}), max_steps=4)
    batches = _take(_source(find_shards(two_domain_shards, "train"), cur), 0, 4)
    assert [b["variant"].unique().tolist() for b in batches] == [[0], [0], [2], [2]]


def test_rough_masks_are_regenerated_from_the_stored_seed_with_the_builds_mats_parameters(tmp_path):
    from unieditkit.format import BUILD_CONFIG_FILE
    from unieditkit.mats import MatsParams, rough_mask

    fine = np.zeros((40, 56), dtype=bool)
    fine[10:25, 12:30] = True
    params = MatsParams(dilate_frac=(0.3, 0.4), octaves=1)  # what this (pretend) build was run with
    (tmp_path / BUILD_CONFIG_FILE).write_text(json.dumps(
        {"domains": {"garments": {"settings": {"mats": dataclasses.asdict(params)}}}}))
    rough, _ = rough_mask(fine, seed=7, params=params)
    assert not np.array_equal(rough, rough_mask(fine, seed=7)[0])  # the defaults would draw another mask
    png = io.BytesIO()
    Image.fromarray(np.where(fine, 255, 0).astype(np.uint8)).save(png, format="PNG")
    jpg = io.BytesIO()
    Image.new("RGB", (56, 40), (10, 200, 30)).save(jpg, format="JPEG")
    meta = {"domain": "garments", "subcategory_id": 3, "mats": {"seed": 7}}
    sample = {"__key__": "k", "json": json.dumps(meta).encode(), "ref.jpg": jpg.getvalue(), "tgt.jpg": jpg.getvalue(),
              "mask_fine.png": png.getvalue(), "__url__": str(tmp_path / "garments-train-000000.tar")}
    regenerated = decode_sample(sample, "rough", 56, ANCHORS, "regenerate")["mask"][0, 8:48].bool().numpy()
    assert np.array_equal(regenerated, rough)
    resampled = [decode_sample(sample, "rough", 56, ANCHORS, "resample", draw)["mask"][0, 8:48].bool().numpy()
                 for draw in (1, 2)]
    assert all((r | fine).sum() == r.sum() for r in resampled)  # still ⊇ fine
    assert not np.array_equal(resampled[0], resampled[1])
    del sample["__url__"]
    with pytest.raises(UserError, match="build_config.json"):
        decode_sample(sample, "rough", 56, ANCHORS, "regenerate")


def test_bad_samples_are_skipped_and_counted(tmp_path, shard_writer):
    shard_writer(tmp_path, {"garments": [4, 4]}, {"garments": 0}, corrupt=1, size=24)
    batches = _take(_source(find_shards(tmp_path, "train"), batch_size=3), 0, 6)
    assert all(len(b["keys"]) == 3 for b in batches)
    assert sum(b["skipped"] for b in batches) >= 2
    assert not any(k.endswith("train0000_0") or k.endswith("train0004_0") for b in batches for k in b["keys"])


def test_only_bad_samples_is_one_clear_error(tmp_path, shard_writer, monkeypatch):
    monkeypatch.setattr("unieditkit.training.data.MAX_BAD_IN_A_ROW", 5)
    shard_writer(tmp_path, {"garments": [2]}, {"garments": 0}, corrupt=2, size=24)
    with pytest.raises(UserError, match="5 unreadable samples in a row"):
        _take(_source(find_shards(tmp_path, "train")), 0, 1)


def test_stream_is_deterministic_and_resumes_mid_epoch_with_workers(two_domain_shards):
    shards = find_shards(two_domain_shards, "train")
    full = _take(_source(shards, num_workers=2), 0, 7)
    resumed = _take(_source(shards, num_workers=2), 5, 2)
    assert [b["step"] for b in full] == list(range(7))
    for a, b in zip(full[5:], resumed):
        assert a["keys"] == b["keys"]
        assert torch.equal(a["tgt"], b["tgt"]) and torch.equal(a["mask"], b["mask"])


def test_ranks_get_different_batches(two_domain_shards):
    shards = find_shards(two_domain_shards, "train")
    r0 = _take(_source(shards, world_size=2, rank=0), 0, 3)
    r1 = _take(_source(shards, world_size=2, rank=1), 0, 3)
    assert [b["keys"] for b in r0] != [b["keys"] for b in r1]


def test_reads_the_bundled_sample_build(built_dataset):
    batch = _take(_source(find_shards(built_dataset, "train"), image_size=64), 0, 1)[0]
    assert batch["tgt"].shape == (4, 3, 64, 64) and batch["skipped"] == 0
    assert batch["domain"].tolist() == [ANCHORS.domain_index("garments")] * 4
