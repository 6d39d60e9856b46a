"""`unieditkit train --launcher ray`: Ray Train's TorchTrainer on the local Ray instance, against torchrun."""

from __future__ import annotations

import argparse
import json
import pathlib

import pytest

from unieditkit.training.cli import register
from unieditkit.errors import UserError

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _train_cli(argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", *argv])
    return args.func(args)


def _losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _layout(run_dir):
    """The run folder's own entries (Ray Train adds its bookkeeping beside them), previews and latest checkpoint."""
    own = sorted(p.name for p in run_dir.iterdir() if p.name in {"config.yaml", "log.jsonl", "tb", "checkpoints",
                                                                   "previews"})
    previews = sorted(p.name for p in (run_dir / "previews").iterdir())
    return own, previews, (run_dir / "checkpoints" / "latest").read_text()


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_ray_launcher_matches_torchrun_and_resumes_latest(two_domain_shards, tiny_config, tmp_path, monkeypatch,
                                                          ray_local):
    monkeypatch.chdir(ROOT)
    common = ["--data", str(two_domain_shards), "--max-steps", "8"]
    torchrun = tmp_path / "torchrun"
    assert _train_cli(["--config", str(tiny_config), "--out", str(torchrun), "--nproc", "2", *common]) == 0

    stopping = tmp_path / "stop.yaml"
    stopping.write_text(tiny_config.read_text().replace("max_steps: 7,", "max_steps: 7, stop_after: 5,"))
    on_ray = tmp_path / "ray"
    ray = ["--launcher", "ray", "--num-workers", "2", "--out", str(on_ray), *common]
    assert _train_cli(["--config", str(stopping), *ray]) == 0
    assert sorted(_losses(on_ray)) == [1, 2, 3, 4, 5]
    with pytest.raises(UserError, match="already holds 2 checkpoint"):  # the run folder rules of torchrun
        _train_cli(["--config", str(tiny_config), *ray])
    assert _train_cli(["--config", str(tiny_config), *ray, "--resume", "latest"]) == 0

    assert _losses(on_ray) == _losses(torchrun)  # same seed, same ranks: the same losses, bit for bit
    assert _layout(on_ray) == _layout(torchrun)
    registered = json.loads((on_ray / "checkpoint_manager_snapshot.json").read_text())  # Ray Train's own record
    assert [r["metrics"]["step"] for r in registered["checkpoint_results"]] == [3, 5, 6, 8]  # both launches
    assert registered["latest_checkpoint_result"]["checkpoint_dir_name"] == "checkpoints"  # the run's folder


def test_launcher_options_are_checked_before_anything_starts(two_domain_shards, tiny_config, tmp_path):
    base = ["--config", str(tiny_config), "--data", str(two_domain_shards), "--out", str(tmp_path / "r")]
    with pytest.raises(UserError, match="--nproc 2 is for --launcher torchrun; with --launcher ray pass --num-workers"):
        _train_cli([*base, "--launcher", "ray", "--nproc", "2"])
    with pytest.raises(UserError, match="need --launcher ray"):
        _train_cli([*base, "--num-workers", "2"])
    with pytest.raises(UserError, match="--num-workers 0: must be at least 1"):
        _train_cli([*base, "--launcher", "ray", "--num-workers", "0"])
    with pytest.raises(UserError, match="has no finished val shards; build a val split or set --val-every 0"):
        _train_cli([*base, "--launcher", "ray", "--num-workers", "2", "--val-every", "5"])


def test_a_workers_user_error_is_reported_as_itself():
    from ray.train.v2.api.exceptions import WorkerGroupError

    from unieditkit.training.launch.on_ray import _user_error

    mistake = UserError("train.val_every: --data OUT has no finished val shards; build a val split or set "
                        "--val-every 0")
    assert _user_error(WorkerGroupError("worker 1 failed", {0: RuntimeError("peer gone"), 1: mistake})) is mistake
    assert _user_error(WorkerGroupError("worker 0 failed", {0: RuntimeError("out of memory")})) is None
