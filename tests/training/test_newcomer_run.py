"""A newcomer's first hour with a trained run (issue 21, items 8, 9, 11): `train` says where its outputs are and
what to run next, a short run still previews, `edit` is seeded by --seed and shows its steps on a terminal, and
asking for a split a build lacks names the splits it has."""

from __future__ import annotations

import io
import json
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from unieditkit.cli import main


@pytest.fixture(scope="module")
def data_and_run(tmp_path_factory):
    """A 2-step run (shorter than its preview_every of 4) on 6 train samples; the folder has a test split too."""
    from conftest import TINY_CONFIG, write_shards

    root = tmp_path_factory.mktemp("newcomer")
    data = root / "out"
    write_shards(data, {"garments": [6]}, {"garments": 0}, size=40)
    write_shards(data, {"garments": [3]}, {"garments": 0}, split="test", size=40, seed=3)
    config = root / "tiny.yaml"
    config.write_text(TINY_CONFIG)
    run = root / "run"
    capture = io.StringIO()
    stdout, sys.stdout = sys.stdout, capture
    try:
        assert main(["train", "--config", str(config), "--data", str(data), "--out", str(run), "--max-steps", "2"]) == 0
    finally:
        sys.stdout = stdout
    return data, run, capture.getvalue()


def test_train_says_where_its_outputs_are_and_what_to_run_next(data_and_run):
    data, run, printed = data_and_run
    lines = printed.strip().splitlines()
    assert lines[0] == f"unieditkit train: finished: 2 steps -> {run}"
    assert f"  checkpoints: {run / 'checkpoints'} (`latest` names the newest)" in lines
    assert f"  log: {run / 'log.jsonl'}; TensorBoard: tensorboard --logdir {run / 'tb'}" in lines
    assert any(line.startswith(f"  previews: {run / 'previews'}") for line in lines)
    assert f"  next: unieditkit edit --checkpoint {run} --data {data} --split test --out {run / 'pred-test'}" in lines
    assert f"        unieditkit eval --pred {run / 'pred-test'} --data {data} --split test" in lines


def test_a_run_shorter_than_preview_every_writes_one_preview_at_its_end(data_and_run):
    _, run, _ = data_and_run
    assert sorted(p.name for p in (run / "previews").iterdir()) == ["step_00000002.png"]


def _single(run, tmp_path, out, *extra):
    rng = np.random.default_rng(0)
    target = rng.integers(0, 256, size=(30, 50, 3), dtype=np.uint8)
    mask = np.zeros((30, 50), dtype=np.uint8)
    mask[5:20, 10:30] = 255
    for name, arr in (("tgt", target), ("mask", mask), ("ref", target[5:20, 10:30])):
        Image.fromarray(arr).save(tmp_path / f"{name}.png")
    return main(["edit", "--checkpoint", str(run), "--ref", str(tmp_path / "ref.png"), "--image",
                 str(tmp_path / "tgt.png"), "--mask", str(tmp_path / "mask.png"), "--out", str(tmp_path / out),
                 "--steps", "2", *extra])


def test_single_edit_noise_comes_from_seed_not_the_output_name_and_is_recorded(data_and_run, tmp_path, capsys):
    _, run, _ = data_and_run
    assert _single(run, tmp_path, "a.png") == 0
    assert "(seed 0, checkpoint step 2, 2 sampling steps)" in capsys.readouterr().out
    assert _single(run, tmp_path, "other-name.png") == 0
    assert _single(run, tmp_path, "seed7.png", "--seed", "7") == 0
    a, other, seven = (np.asarray(Image.open(tmp_path / n)) for n in ("a.png", "other-name.png", "seed7.png"))
    assert np.array_equal(a, other)
    assert not np.array_equal(a, seven)
    record = json.loads(Image.open(tmp_path / "seed7.png").text["unieditkit"])
    assert record == {"checkpoint": str(run), "step": 2, "seed": 7, "steps": 2, "category": ""}


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_single_edit_shows_its_sampling_steps_on_a_terminal_only(data_and_run, tmp_path, capsys, monkeypatch):
    _, run, _ = data_and_run
    assert _single(run, tmp_path, "quiet.png") == 0
    assert "2/2" not in capsys.readouterr().err
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert _single(run, tmp_path, "shown.png", "--steps", "3") == 0
    assert "3/3" in terminal.getvalue() and "step" in terminal.getvalue()


def test_batch_edit_takes_the_thread_budget_train_takes(data_and_run, tmp_path, capsys, monkeypatch):
    from unieditkit.training.train import thread_budget

    data, run, _ = data_and_run
    monkeypatch.delenv("OMP_NUM_THREADS")
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores + 3)
    assert main(["edit", "--checkpoint", str(run), "--data", str(data), "--out", str(tmp_path / "pred"),
                 "--steps", "1", "--variants", "box"]) == 0
    assert torch.get_num_threads() == thread_budget(cores, 1, 0)
    assert f"edit: note: threads: {thread_budget(cores, 1, 0)} per process ({cores} cores" in capsys.readouterr().err


def test_edit_and_eval_name_the_splits_a_build_has(data_and_run, tmp_path, capsys):
    data, run, _ = data_and_run
    assert main(["edit", "--checkpoint", str(run), "--data", str(data), "--split", "val", "--out",
                 str(tmp_path / "pred")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"unieditkit edit: error: --data {data}: no finished val shards; it has train 6 samples, "
                   "test 3 samples: pick one of those")
    assert main(["eval", "--pred", str(tmp_path), "--data", str(data), "--split", "val", "--no-clip", "--no-dino",
                 "--no-lpips", "--no-fid"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"unieditkit eval: error: --data {data}: no finished val shards; it has train 6 samples, "
                   "test 3 samples: pick one of those with --split")
