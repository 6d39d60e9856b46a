"""`unieditkit train --launcher ray` as a user runs it: relative paths, a terminal that shows the training's own
lines once and none of Ray's (they are in RUN/ray.log), and a wrong --ray-address as one line."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import socket
import subprocess
import sys

import pytest

from unieditkit.training.cli import register
from unieditkit.errors import UserError

ROOT = pathlib.Path(__file__).resolve().parents[2]
#: what Ray's own output looks like on a terminal: coloured "(Actor pid=N)" prefixes, its loggers, its C++ lines
RAY_LINE = re.compile(r"\x1b\[|\((?:RayTrainWorker|TrainController|raylet|PlacementGroupCleaner)|pid=\d+\)|"
                      r"authentication|core_worker|\.cc:\d+|\b(?:INFO|WARNING) [a-z_]+\.py:\d+|ray\.init")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_relative_paths_work_and_the_terminal_shows_each_note_once_and_no_ray_line(two_domain_shards, tiny_config,
                                                                                    tmp_path: pathlib.Path) -> None:
    (tmp_path / "data").symlink_to(two_domain_shards)
    (tmp_path / "tiny.yaml").write_text(tiny_config.read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1", RAY_ENABLE_UV_RUN_RUNTIME_ENV="0",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p))
    done = subprocess.run([sys.executable, "-m", "unieditkit.cli", "train", "--config", "tiny.yaml", "--data", "data",
                           "--out", "runs/r1", "--launcher", "ray", "--num-workers", "1", "--max-steps", "2"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    shown = (done.stdout + done.stderr).splitlines()
    assert not [line for line in shown if RAY_LINE.search(line)], done.stdout + done.stderr
    run = tmp_path / "runs" / "r1"
    notes = [json.loads(line)["note"] for line in (run / "log.jsonl").read_text().splitlines() if '"note"' in line]
    assert notes
    for note in notes:
        assert shown.count(f"unieditkit train: note: {note}") == 1, (note, shown)
    assert (run / "checkpoints" / "latest").read_text().strip()
    assert RAY_LINE.search((run / "ray.log").read_text())  # Ray did talk: into the run folder


def test_a_refused_ray_address_is_one_line_and_makes_no_run_folder(two_domain_shards, tiny_config,
                                                                   tmp_path: pathlib.Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"  # closed once the block ends: nothing listens there
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "--config", str(tiny_config), "--data", str(two_domain_shards), "--out",
                              str(tmp_path / "run"), "--launcher", "ray", "--ray-address", address])
    with pytest.raises(UserError, match=f"--ray-address {address}: nothing accepts connections there") as err:
        args.func(args)
    assert "\n" not in str(err.value) and "ray start --head" in str(err.value)
    assert not (tmp_path / "run").exists()
