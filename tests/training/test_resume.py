"""Resuming: the data position comes from the checkpoint (skipped samples are not decoded), and every rank must
resume from the same checkpoint. Validation on a fixed subset of the val split."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import unieditkit.training.data
from unieditkit.training.model.anchors import Anchors
from unieditkit.training.config import CurriculumConfig
from unieditkit.training.model.curriculum import Curriculum
from unieditkit.training.data import BatchSource, find_shards
from unieditkit.training.train import resolve_config, run
from unieditkit.errors import UserError

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _source(shards, **kw):
    args = dict(image_size=32, batch_size=3, seed=0, epoch_batches=12, rank=0, world_size=1, num_workers=2,
                shuffle_buffer=8, rough_source="stored")
    args.update(kw)
    return BatchSource(shards, Anchors.from_taxonomy(), Curriculum(CurriculumConfig(), 12), **args)


def _take(source, start, n, position=None):
    batches = source.batches(start, position)
    return [next(batches) for _ in range(n)]


def test_stream_resumes_from_its_position_with_bad_samples_and_workers(tmp_path, shard_writer):
    """Every shard's first sample is unreadable, so a step may pull more samples than it keeps: the position
    (pulled counts) is what keeps the resumed batches identical."""
    shard_writer(tmp_path, {"garments": [4, 5]}, {"garments": 0}, corrupt=1, size=24)
    shards = find_shards(tmp_path, "train")
    full = _take(_source(shards), 0, 10)
    assert sum(b["skipped"] for b in full[:7]) > 0
    first = _source(shards)
    _take(first, 0, 7)
    position = first.position()
    assert position["epoch"] == 0 and position["workers"] == 2
    assert sum(position["pulled"].values()) > 7 * 3  # the bad samples were pulled too
    resumed = _take(_source(shards), 7, 3, position)
    assert [b["step"] for b in resumed] == [7, 8, 9]
    for a, b in zip(full[7:], resumed):
        assert a["keys"] == b["keys"] and a["skipped"] == b["skipped"]
        assert torch.equal(a["tgt"], b["tgt"]) and torch.equal(a["mask"], b["mask"])
        assert torch.equal(a["variant"], b["variant"])
    replayed = _take(_source(shards), 7, 3)  # no position (an older checkpoint): found by decoding, same batches
    assert [b["keys"] for b in replayed] == [b["keys"] for b in resumed]


def _losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def test_resume_at_a_late_step_decodes_only_the_samples_it_trains_on(two_domain_shards, tiny_config, tmp_path,
                                                                      monkeypatch):
    decoded = []
    real = unieditkit.training.data.decode_sample

    def counting(sample, *args, **kw):
        decoded.append(sample["__key__"])
        return real(sample, *args, **kw)

    monkeypatch.setattr(unieditkit.training.data, "decode_sample", counting)
    over = {"data.root": str(two_domain_shards), "data.batches_per_epoch": 50, "train.max_steps": 8}
    full = tmp_path / "full"
    assert run(resolve_config(str(tiny_config), {**over, "train.run_dir": str(full)})) == 8
    part = tmp_path / "part"
    cfg = resolve_config(str(tiny_config), {**over, "train.run_dir": str(part)})
    cfg.train.stop_after = 6
    decoded.clear()
    assert run(cfg) == 6
    assert len(decoded) == 6 * 3  # the counter sees every decode: 6 steps of batch 3
    cfg.train.stop_after = 0
    decoded.clear()
    assert run(cfg, "latest") == 8
    assert len(decoded) == 2 * 3  # steps 7 and 8 only; steps 1..6 of the same data epoch are skipped undecoded
    assert _losses(part) == _losses(full)  # and the run is bit-identical to one that never stopped


SCRIPT = """
import os
import sys
from unieditkit.training.train import resolve_config, run
from unieditkit.errors import UserError
rank = int(os.environ["RANK"])
cfg = resolve_config(sys.argv[1], {"data.root": sys.argv[2], "train.run_dir": sys.argv[3 + rank]}, "latest")
try:
    run(cfg, "latest")
except UserError as err:
    print(f"rank {rank} error: {err}", flush=True)
    sys.exit(2)
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ranks_that_disagree_on_the_checkpoint_stop_with_one_line(two_domain_shards, tiny_config, tmp_path):
    """Two gloo ranks; rank 1's --out is a different (empty) folder, as on a node without the shared mount."""
    shared = tmp_path / "shared"
    assert run(resolve_config(str(tiny_config), {"data.root": str(two_domain_shards), "train.run_dir": str(shared),
                                                  "train.max_steps": 2})) == 2
    local = tmp_path / "node2"
    script = tmp_path / "two_views.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        # torchrun stops the other workers at its first check after one fails (every 0.1 s by default): on a busy
        # machine rank 0 could be stopped before it prints the error both ranks raise, so it checks every 5 s
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "--monitor-interval=5",
         str(script),
         str(tiny_config), str(two_domain_shards), str(shared), str(local)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=280)
    assert proc.returncode != 0
    # the two ranks share torchrun's stdout, so one's line may run into the other's before its newline arrives
    lines = [part.splitlines()[0] for part in re.split(r"(?=rank \d error: )", proc.stdout) if part.startswith("rank ")]
    expected = (f"rank 1 could not read a checkpoint in {local / 'checkpoints'} but rank 0 resumes from "
                "step_00000002.pt: put --out on storage every node sees at the same path")
    assert sorted(ln.split(" error: ")[0] for ln in lines) == ["rank 0", "rank 1"], proc.stdout  # both stop, neither trains
    assert all(ln.split(" error: ", 1)[1].startswith(expected) for ln in lines), proc.stdout + proc.stderr
    assert not (local / "checkpoints").exists() and not (local / "log.jsonl").exists()


def test_validation_logs_each_mask_variant_on_a_fixed_subset_and_previews_it(tiny_config, tmp_path, shard_writer):
    from unieditkit.training.data import fixed_subset
    from unieditkit.training.runtime.runlog import to_uint8

    data = tmp_path / "data"
    shard_writer(data, {"garments": [6]}, {"garments": 0}, size=24)
    shard_writer(data, {"garments": [3, 4]}, {"garments": 0}, split="val", size=24, seed=1, corrupt=1)
    out = tmp_path / "run"
    cfg = resolve_config(str(tiny_config), {"data.root": str(data), "train.run_dir": str(out), "train.max_steps": 4,
                                            "train.val_every": 2, "data.val_samples": 4})
    assert run(cfg) == 4
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    val = [r for r in rows if "val_loss_fine" in r]
    assert [r["step"] for r in val] == [2, 4]
    for r in val:
        losses = [r["val_loss_fine"], r["val_loss_rough"], r["val_loss_box"]]
        assert all(0 < x < 10 for x in losses) and len(set(losses)) == 3  # the masks differ, so the losses do

    subset = fixed_subset(data, [], 4, 32, Anchors.from_taxonomy(), "stored")
    keys = subset["fine"]["keys"]
    assert len(keys) == 4 and keys == subset["box"]["keys"]
    assert not any(k.endswith(("val0000_0", "val0003_0")) for k in keys)  # each shard's unreadable first sample
    grid = np.asarray(Image.open(out / "previews" / "step_00000004.png"))
    cell = 32
    for row in range(len(keys)):  # last column: the ground truth of the fixed subset's samples, in order
        assert np.array_equal(grid[row * cell:(row + 1) * cell, 3 * cell:], to_uint8(subset["fine"]["tgt"][row]))
    cfg.train.val_every, cfg.data.root = 2, str(tmp_path / "data-without-val")
    shard_writer(tmp_path / "data-without-val", {"garments": [3]}, {"garments": 0}, size=24)
    with pytest.raises(UserError, match="has no finished val shards; build a val split or set --val-every 0"):
        run(cfg, "latest")


def test_ema_is_saved_resumed_exactly_and_used_for_editing(two_domain_shards, tiny_config, tmp_path):
    from unieditkit.training.edit import load_run

    over = {"data.root": str(two_domain_shards), "train.max_steps": 4, "train.save_every": 1, "train.keep_last": 4,
            "train.ema_decay": 0.5}
    full = tmp_path / "full"
    assert run(resolve_config(str(tiny_config), {**over, "train.run_dir": str(full)})) == 4
    ck = {s: torch.load(full / "checkpoints" / f"step_{s:08d}.pt", weights_only=True) for s in (3, 4)}
    assert set(ck[4]["ema"]) == set(ck[4]["model"])
    for name, avg in ck[4]["ema"].items():  # ema_4 = 0.5 * ema_3 + 0.5 * weights_4
        assert torch.allclose(avg, 0.5 * ck[3]["ema"][name] + 0.5 * ck[4]["model"][name], atol=1e-6)
    assert any(not torch.equal(ck[4]["ema"][n], ck[4]["model"][n]) for n in ck[4]["model"])

    part = tmp_path / "part"
    cfg = resolve_config(str(tiny_config), {**over, "train.run_dir": str(part)})
    cfg.train.stop_after = 2
    run(cfg)
    cfg.train.stop_after = 0
    assert run(cfg, "latest") == 4
    resumed = torch.load(part / "checkpoints" / "step_00000004.pt", weights_only=True)["ema"]
    assert all(torch.equal(resumed[n], ck[4]["ema"][n]) for n in resumed)  # the average continues bit-exactly

    edit = load_run(full, "latest", "cpu")
    weights = dict(edit.backend.module.named_parameters())
    assert all(torch.equal(weights[n].detach(), ck[4]["ema"][n]) for n in ck[4]["ema"])  # edit takes the EMA


def test_learning_rate_schedules():
    from unieditkit.training.config import OptimConfig
    from unieditkit.training.train import lr_schedule

    cosine = lr_schedule(OptimConfig(warmup_steps=2, min_lr_ratio=0.1), 12)
    constant = lr_schedule(OptimConfig(warmup_steps=2, schedule="constant"), 12)
    assert [cosine(s) for s in (0, 1)] == [constant(s) for s in (0, 1)] == [0.5, 1.0]
    assert [constant(s) for s in (2, 7, 12)] == [1.0, 1.0, 1.0]
    assert cosine(2) == 1.0 and cosine(12) == pytest.approx(0.1) and 0.1 < cosine(7) < 1.0
