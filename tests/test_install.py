"""What ``scripts/install.sh`` leaves: the ``unieditkit`` command imports this project's packages.

sam2 1.1.0 installs a top-level ``training`` package of its own; install.sh removes it
(``scripts/remove_sam2_training.py``). Run from another folder, with no ``PYTHONPATH``, the interpreter of the
environment must find this project's ``training``, ``pipelines`` and ``taxonomy`` — pytest's own path settings
would hide a shadowing package, so this runs in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_installed_interpreter_imports_this_projects_packages(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = "import pipelines, taxonomy, training, training.train; print(pipelines.__file__, taxonomy.__file__, training.__file__)"
    found = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr[-1500:]
    assert all(Path(p).resolve().is_relative_to(ROOT) for p in found.stdout.split()), found.stdout


def test_installed_train_command_runs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    helped = subprocess.run([sys.executable, "-m", "unieditkit.cli", "train", "--help"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert helped.returncode == 0 and "--backbone" in helped.stdout, helped.stderr[-1500:]
