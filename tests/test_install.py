"""What ``scripts/install.sh`` leaves: one top-level import name, ``unieditkit``, beside sam2's own ``training``.

sam2 1.1.0 installs a top-level package named ``training`` (its training code). unieditkit installs its rooms as
``unieditkit.pipelines``, ``unieditkit.taxonomy`` and ``unieditkit.training`` (``setup.py``), so both live side
by side and no script touches sam2's files. Run from another folder, with no ``PYTHONPATH``: pytest's own path
settings could hide a clash, so this runs in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(code: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, *code], cwd=tmp_path, env=env, capture_output=True, text=True)


def test_installed_interpreter_imports_this_projects_packages(tmp_path: Path) -> None:
    code = ("import unieditkit.pipelines as p, unieditkit.taxonomy as t, unieditkit.training.train as tr; "
            "print(p.__file__, t.__file__, tr.__file__)")
    found = _run(["-c", code], tmp_path)
    assert found.returncode == 0, found.stderr[-1500:]
    assert all(Path(f).resolve().is_relative_to(ROOT) for f in found.stdout.split()), found.stdout


def test_sam2_keeps_its_training_package_and_train_still_runs(tmp_path: Path) -> None:
    pytest.importorskip("sam2", reason="sam2 comes with the [models] extra")
    code = ("import importlib.metadata as m, training, sam2; print(training.__file__); "
            "print(*[f.locate() for f in m.files('sam2') if f.as_posix() == 'training/__init__.py'])")
    theirs = _run(["-c", code], tmp_path)
    assert theirs.returncode == 0, theirs.stderr[-1500:]
    imported, *recorded = theirs.stdout.split()
    assert [Path(imported).resolve()] == [Path(f).resolve() for f in recorded], theirs.stdout  # the file sam2's RECORD lists
    helped = _run(["-m", "unieditkit.cli", "train", "--help"], tmp_path)
    assert helped.returncode == 0 and "--backbone" in helped.stdout, helped.stderr[-1500:]


@pytest.mark.parametrize("room", ["pipelines", "taxonomy"])
def test_installed_interpreter_has_no_bare_room_names(room: str, tmp_path: Path) -> None:
    bare = _run(["-c", f"import {room}; print({room}.__file__)"], tmp_path)
    assert "ModuleNotFoundError" in bare.stderr, f"{room!r} is importable at top level: {bare.stdout}{bare.stderr[-500:]}"
