"""The training run: outputs, exact resume, the `train` command, and two-process DDP on uneven shards."""

from __future__ import annotations

import argparse
import json
import os
import sys

import pytest
import torch

from training.checkpoint import find_checkpoint
from training.cli import register, torchrun_command
from training.config import load_config
from training.train import resolve_config, run
from unieditkit.errors import UserError


def _parse(argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def _train_cli(argv):
    args = _parse(["train", *argv])
    return args.func(args)


def _losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows}, [r["step"] for r in rows]


def test_run_writes_outputs_and_resume_continues_exactly(two_domain_shards, tiny_config, tmp_path):
    full = tmp_path / "full"
    assert _train_cli(["--config", str(tiny_config), "--data", str(two_domain_shards), "--out", str(full)]) == 0
    ref, steps = _losses(full)
    assert steps == list(range(1, 8))

    ckpts = sorted(p.name for p in (full / "checkpoints").glob("step_*.pt"))
    assert ckpts == ["step_00000003.pt", "step_00000006.pt", "step_00000007.pt"]
    assert find_checkpoint(full, "latest").name == "step_00000007.pt"
    ck = torch.load(full / "checkpoints" / "step_00000007.pt", weights_only=True)
    assert ck["step"] == 7 and any(".lora_A" in k for k in ck["model"]) and ck["optimizer"]["state"]
    assert (full / "previews" / "step_00000004.png").is_file()
    assert any((full / "tb").iterdir()) and (full / "config.yaml").is_file()

    part = tmp_path / "part"
    cfg = resolve_config(str(tiny_config), str(two_domain_shards), str(part), None, None)
    cfg.train.stop_after = 5
    assert run(cfg) == 5
    cfg.train.stop_after = 0
    assert run(cfg, "latest") == 7
    resumed, steps = _losses(part)
    assert steps == list(range(1, 8))
    assert resumed == ref  # bit-identical: same batches, noise, optimizer and scheduler state


def test_resume_without_config_uses_the_runs_own(two_domain_shards, tiny_config, tmp_path):
    out = tmp_path / "run"
    _train_cli(["--config", str(tiny_config), "--data", str(two_domain_shards), "--out", str(out), "--max-steps", "2"])
    cfg = resolve_config(None, None, str(out), 3, "latest")
    assert cfg.model.dim == 32 and cfg.train.max_steps == 3
    assert run(cfg, "latest") == 3


def test_resume_errors_are_one_line(two_domain_shards, tiny_config, tmp_path):
    out = tmp_path / "run"
    base = ["--config", str(tiny_config), "--data", str(two_domain_shards), "--out", str(out)]
    with pytest.raises(UserError, match="no such checkpoint"):
        _train_cli([*base, "--resume", str(tmp_path / "nope.pt")])
    _train_cli([*base, "--max-steps", "1"])
    bigger = tmp_path / "bigger.yaml"
    bigger.write_text(tiny_config.read_text().replace("dim: 32", "dim: 64"))
    with pytest.raises(UserError, match="does not fit this model|has no"):
        _train_cli(["--config", str(bigger), "--data", str(two_domain_shards), "--out", str(out), "--resume", "latest"])
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"garbage")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        _train_cli([*base, "--resume", str(broken)])


def test_command_checks_arguments_before_starting(two_domain_shards, tiny_config, tmp_path):
    with pytest.raises(UserError, match="--nproc 0"):
        _train_cli(["--config", str(tiny_config), "--data", str(two_domain_shards), "--out", str(tmp_path), "--nproc", "0"])
    with pytest.raises(UserError, match="no finished train shards"):
        _train_cli(["--config", str(tiny_config), "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--nproc", "2"])
    with pytest.raises(UserError, match="no such checkpoint"):
        _train_cli(["--config", str(tiny_config), "--data", str(two_domain_shards), "--out", str(tmp_path / "r"),
                    "--nproc", "2", "--resume", str(tmp_path / "nope.pt")])
    with pytest.raises(UserError, match="no data folder"):
        _train_cli(["--out", str(tmp_path)])
    args = _parse(["train", "--data", "D", "--out", "R", "--nproc", "4", "--resume", "latest"])
    assert torchrun_command(args) == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4", "-m", "training.train",
        "--data", "D", "--out", "R", "--resume", "latest"]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_two_process_ddp_on_uneven_shards_resumes_exactly_and_fsdp_matches(two_domain_shards, tiny_config, tmp_path, monkeypatch):
    """gloo on CPU through `train --nproc 2` (torchrun); shards hold 5, 3 and 7 samples. Then the same with FSDP."""
    monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    common = ["--data", str(two_domain_shards), "--nproc", "2", "--max-steps", "6"]
    full = tmp_path / "full"
    assert _train_cli(["--config", str(tiny_config), "--out", str(full), *common]) == 0
    ref, steps = _losses(full)
    assert steps == list(range(1, 7))
    assert (full / "checkpoints" / "step_00000006.pt").is_file()

    stopping = tmp_path / "stop.yaml"
    stopping.write_text(tiny_config.read_text().replace("max_steps: 7,", "max_steps: 7, stop_after: 4,"))
    assert load_config(stopping).train.stop_after == 4
    part = tmp_path / "part"
    assert _train_cli(["--config", str(stopping), "--out", str(part), *common]) == 0
    assert find_checkpoint(part, "latest").name == "step_00000004.pt"
    assert _train_cli(["--config", str(tiny_config), "--out", str(part), "--resume", "latest", *common]) == 0
    resumed, steps = _losses(part)
    assert steps == list(range(1, 7))
    for step in steps:
        assert resumed[step] == pytest.approx(ref[step], rel=1e-6, abs=1e-7)
    assert torch.load(part / "checkpoints" / "step_00000006.pt", weights_only=True)["world_size"] == 2

    fsdp = tmp_path / "fsdp.yaml"
    fsdp.write_text(tiny_config.read_text().replace("max_steps: 7,", "max_steps: 7, strategy: fsdp,"))
    sharded = tmp_path / "sharded"
    assert _train_cli(["--config", str(fsdp), "--out", str(sharded), *common]) == 0
    losses, _ = _losses(sharded)
    assert losses == pytest.approx(ref, rel=1e-5)  # FSDP2 shards the same computation


def test_unieditkit_train_reports_errors_as_one_line(tmp_path, capsys):
    from unieditkit.cli import main

    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unieditkit train: error:") and "no finished train shards" in err and "\n" not in err
