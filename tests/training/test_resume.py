"""Resuming: the data position comes from the checkpoint (skipped samples are not decoded), and every rank must
resume from the same checkpoint."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch

import training.data
from training.anchors import Anchors
from training.config import CurriculumConfig
from training.curriculum import Curriculum
from training.data import BatchSource, find_shards
from training.train import resolve_config, run

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
    real = training.data.decode_sample

    def counting(sample, *args, **kw):
        decoded.append(sample["__key__"])
        return real(sample, *args, **kw)

    monkeypatch.setattr(training.data, "decode_sample", counting)
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
from training.train import resolve_config, run
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
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script),
         str(tiny_config), str(two_domain_shards), str(shared), str(local)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=280)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stdout.splitlines() if " error: " in ln]
    expected = (f"rank 1 could not read a checkpoint in {local / 'checkpoints'} but rank 0 resumes from "
                "step_00000002.pt: put --out on storage every node sees at the same path")
    assert sorted(ln.split(" error: ")[0] for ln in lines) == ["rank 0", "rank 1"]  # both stop, neither trains
    assert all(ln.split(" error: ", 1)[1].startswith(expected) for ln in lines), proc.stdout + proc.stderr
    assert not (local / "checkpoints").exists() and not (local / "log.jsonl").exists()
