"""The training run: outputs, exact resume, the `train` command, and two-process DDP on uneven shards."""

from __future__ import annotations

import argparse
import json
import os
import sys

import pytest
import torch

from unieditkit.training.runtime.checkpoint import find_checkpoint
from unieditkit.training.cli import register, torchrun_command
from unieditkit.training.config import load_config
from unieditkit.training.train import resolve_config, run
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
    rows = [r for r in rows if "loss" in r]
    return {r["step"]: r["loss"] for r in rows}, [r["step"] for r in rows]


def _notes(run_dir):
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [r["note"] for r in rows if "note" in r]


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
    cfg = resolve_config(str(tiny_config), {"data.root": str(two_domain_shards), "train.run_dir": str(part)})
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
    cfg = resolve_config(None, {"train.run_dir": str(out), "train.max_steps": 3}, "latest")
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
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4", "-m", "unieditkit.training.train",
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
    assert resumed == ref  # bit-identical under DDP too: same batches, noise, all-reduce order and states
    assert torch.load(part / "checkpoints" / "step_00000006.pt", weights_only=True)["world_size"] == 2

    fsdp = tmp_path / "fsdp.yaml"
    fsdp.write_text(tiny_config.read_text().replace("max_steps: 7,", "max_steps: 7, strategy: fsdp, ema_decay: 0.9,"))
    sharded = tmp_path / "sharded"
    assert _train_cli(["--config", str(fsdp), "--out", str(sharded), *common]) == 0
    ck = torch.load(sharded / "checkpoints" / "step_00000006.pt", weights_only=True)
    assert {k: v.shape for k, v in ck["ema"].items()} == {k: v.shape for k, v in ck["model"].items()}  # gathered
    losses, _ = _losses(sharded)
    # FSDP2 shards the same computation but reduce-scatters gradients in another order: equal to 1e-5, not bit-exact
    assert losses == pytest.approx(ref, rel=1e-5)


def test_unieditkit_train_reports_errors_as_one_line(tmp_path, capsys):
    from unieditkit.cli import main

    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unieditkit train: error:") and "no finished train shards" in err and "\n" not in err


def test_rerun_without_resume_is_refused_and_every_checkpoint_survives(two_domain_shards, tiny_config, tmp_path):
    out = tmp_path / "run"
    base = ["--config", str(tiny_config), "--data", str(two_domain_shards), "--out", str(out)]
    assert _train_cli(base) == 0
    folder = out / "checkpoints"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    log_before = (out / "log.jsonl").read_bytes()
    with pytest.raises(UserError, match=r"already holds 3 checkpoint\(s\).*--resume latest.*new --out.*--overwrite") as info:
        _train_cli(base)
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="already holds"):  # the torchrun entry point refuses the same way
        run(resolve_config(str(tiny_config), {"data.root": str(two_domain_shards), "train.run_dir": str(out)}))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert (out / "log.jsonl").read_bytes() == log_before

    assert _train_cli([*base, "--overwrite", "--max-steps", "2"]) == 0
    assert sorted(p.name for p in folder.glob("step_*.pt")) == ["step_00000002.pt"]
    assert find_checkpoint(out, "latest").name == "step_00000002.pt"
    assert any("--overwrite: removed the earlier run's checkpoints" in n for n in _notes(out))
    assert _losses(out)[1] == [1, 2]


def test_checkpoints_are_pruned_by_step_number_not_name(tmp_path):
    from unieditkit.training.runtime.checkpoint import list_checkpoints

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for name in ("step_10.pt", "step_9.pt", "step_00000011.pt", "step_100.pt"):
        (folder / name).write_bytes(b"")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_9.pt", "step_10.pt", "step_00000011.pt", "step_100.pt"]


def test_world_size_change_is_refused_unless_allowed(two_domain_shards, tiny_config, tmp_path):
    from unieditkit.training.runtime.checkpoint import load_checkpoint
    from unieditkit.training.runtime.distributed import DistInfo
    from unieditkit.training.train import _build

    out = tmp_path / "run"
    base = ["--config", str(tiny_config), "--data", str(two_domain_shards), "--out", str(out)]
    _train_cli([*base, "--max-steps", "3"])
    with pytest.raises(UserError, match=r"step_00000003\.pt: written by 1 process\(es\), this run has 4.*--nproc 1.*"
                                        r"--allow-world-size-change") as info:
        _train_cli([*base, "--nproc", "4", "--resume", "latest"])  # refused before any rank starts
    assert "\n" not in str(info.value)

    cfg = resolve_config(str(tiny_config), {"data.root": str(two_domain_shards), "train.run_dir": str(out)})
    two = DistInfo(rank=0, world_size=2, local_rank=0, device=torch.device("cpu"))
    model, _, optimizer, scheduler = _build(cfg, DistInfo(0, 1, 0, torch.device("cpu")))
    ckpt = out / "checkpoints" / "step_00000003.pt"
    with pytest.raises(UserError, match="written by 1 process"):  # what each torchrun rank checks
        load_checkpoint(ckpt, model, optimizer, scheduler, two)
    step, note, position = load_checkpoint(ckpt, model, optimizer, scheduler, two, allow_world_size_change=True)
    assert step == 3 and "continuing approximately" in note and "not bit-exact" in note and position is None


def test_run_log_notes_its_choices(two_domain_shards, tiny_config, tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.delenv("OMP_NUM_THREADS")
    argv = ["--config", str(tiny_config), "--data", str(two_domain_shards), "--out", str(out), "--max-steps", "2",
            "--resume", "latest", "--lr", "0.001", "--batch-size", "2", "--save-every", "1", "--preview-every", "1"]
    assert _train_cli(argv) == 0
    notes = _notes(out)
    assert any(n.startswith("threads: ") and "0 data worker(s)" in n for n in notes)
    assert f"--resume latest: {out} has no checkpoint yet; starting at step 0" in notes
    assert "optim.warmup_steps 2 >= train.max_steps 2: warm-up clipped to 1 steps" in notes
    assert any(n.startswith("model.train_backbone: trained (auto:") for n in notes)
    assert sorted(p.name for p in (out / "checkpoints").glob("step_*.pt")) == ["step_00000001.pt", "step_00000002.pt"]
    assert sorted(p.name for p in (out / "previews").iterdir()) == ["step_00000001.png", "step_00000002.png"]
    saved = load_config(out / "config.yaml")
    assert (saved.optim.lr, saved.train.batch_size) == (0.001, 2)


def test_thread_budget_shares_cores_between_processes_and_workers():
    from unieditkit.training.train import thread_budget

    assert thread_budget(cores=2, local_processes=1, workers=2) == 1
    assert thread_budget(cores=16, local_processes=2, workers=2) == 6
    assert thread_budget(cores=8, local_processes=1, workers=0) == 8

