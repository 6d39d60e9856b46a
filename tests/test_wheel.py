"""What ``pip install unieditkit`` (or ``pip install git+...``) gives: a wheel with one top-level import name,
``unieditkit`` (the repository's ``pipelines/``, ``taxonomy/`` and ``training/`` inside it, so no other
distribution's ``training`` can clash with ours), that carries the sample and taxonomy and declares every
dependency its build needs.

The wheel is built from this checkout and installed into a fresh virtualenv by pip, resolving its dependencies
offline (``--no-index``). They cannot be downloaded here, so they are taken from the test environment, but only
those the wheel declares: the distributions its ``Requires-Dist`` names (no extras), and theirs in turn, are
linked file by file (from each one's ``RECORD``) into a folder the new venv sees through a ``.pth`` file. pip
checks their versions against the wheel's requirements; anything else the test environment holds (torch, the
extras, this checkout) is not importable, and every command runs outside the source tree, so the package must
bring its own data and declare its own needs. What is not tested: downloading the dependencies from an index,
and building the ones without wheels (``noise``, ``pycocotools`` on some platforms) from source.
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # builds a wheel and runs a build from it


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files a fresh clone (with this working tree's edits) holds: an in-place build would pack whatever a
    previous build left in the ignored ``build/`` folder, which a user's clone does not have."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\0")
    copy = tmp_path_factory.mktemp("checkout")
    for name in filter(None, files):
        if (ROOT / name).is_file():  # a tracked file deleted in the working tree is not in a clone of it
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    return copy


@pytest.fixture(scope="module")
def dists(checkout: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(checkout)], check=True)
    return out


def data_files() -> set[str]:
    """The sample and the taxonomy files, as paths in the repository."""
    found = {p for p in (ROOT / "pipelines" / "sample_data").rglob("*") if p.is_file()} | set((ROOT / "taxonomy").glob("*.yaml"))
    assert any(p.suffix == ".jpg" for p in found) and any(p.suffix == ".yaml" for p in found), sorted(found)
    return {p.relative_to(ROOT).as_posix() for p in found}


def test_wheel_holds_one_top_level_name(dists: Path) -> None:
    wheel = next(dists.glob("unieditkit-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        assert zf.read(f"{dist_info}/top_level.txt").decode().split() == ["unieditkit"]
    assert {n.split("/")[0] for n in names} == {"unieditkit", dist_info}, sorted({n.split("/")[0] for n in names})
    for room in ("pipelines", "taxonomy", "training"):
        assert f"unieditkit/{room}/__init__.py" in names, room
    missing = {f"unieditkit/{f}" for f in data_files()} - set(names)
    assert not missing, sorted(missing)[:5]


def test_sdist_carries_the_sample_and_the_taxonomy(checkout: Path, tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(tmp_path)!r})"],
                   cwd=checkout, check=True, capture_output=True)
    sdist = next(tmp_path.glob("unieditkit-*.tar.gz"))
    with tarfile.open(sdist) as tf:
        inside = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert data_files() <= inside, sorted(data_files() - inside)[:5]


def declared_distributions(wheel: Path) -> dict[str, importlib.metadata.Distribution]:
    """The installed distributions the wheel's ``Requires-Dist`` names without extras, and theirs, transitively."""
    with zipfile.ZipFile(wheel) as zf:
        metadata = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        declared = email.parser.Parser().parsestr(zf.read(metadata).decode()).get_all("Requires-Dist")
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = [(Requirement(r), "") for r in declared]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        dist = importlib.metadata.distribution(req.name)
        for wanted in ("", *sorted(req.extras)):
            if (dist.metadata["Name"].lower(), wanted) not in found:
                found[(dist.metadata["Name"].lower(), wanted)] = dist
                todo += [(Requirement(r), wanted) for r in dist.requires or []]
    return {name: dist for (name, _), dist in found.items()}


def link_distributions(dists: dict[str, importlib.metadata.Distribution], folder: Path) -> None:
    """A site folder holding exactly the files these distributions installed (scripts outside it left out)."""
    for dist in dists.values():
        for file in dist.files:
            source = Path(dist.locate_file(file))
            if file.parts[0] != ".." and source.is_file():
                target = folder / file
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(source)


def test_wheel_installed_in_a_fresh_venv_builds_the_sample(dists: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)  # ensurepip: offline, from the wheel bundled with Python
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               env=env, capture_output=True, text=True, check=True).stdout.strip())
    wheel = next(dists.glob("unieditkit-*.whl"))
    deps = declared_distributions(wheel)
    assert {"ray", "numpy", "pyarrow", "datasets"} <= set(deps) and not {"torch", "unieditkit"} & set(deps), sorted(deps)
    link_distributions(deps, tmp_path / "deps")
    (site / "deps.pth").write_text(f"{tmp_path / 'deps'}\n")
    installed = subprocess.run([str(python), "-m", "pip", "install", "--no-index", str(wheel)], env=env, capture_output=True, text=True)
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    assert "Requirement already satisfied: ray" in installed.stdout, installed.stdout[-2000:]
    undeclared = subprocess.run([str(python), "-c", "import torch"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert undeclared.returncode != 0, "torch (an extra) is importable: the test would not see an undeclared dependency"
    work = tmp_path / "elsewhere"
    work.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(env_dir / "bin" / "unieditkit"), *args], cwd=work, env=env, capture_output=True, text=True)

    where = subprocess.run([str(python), "-c", "import unieditkit.pipelines as p, unieditkit.taxonomy as t; print(p.__file__, t.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True, check=True).stdout
    assert str(ROOT) not in where and str(site) in where, where
    for room in ("pipelines", "taxonomy", "training"):
        bare = subprocess.run([str(python), "-c", f"import {room}"], cwd=work, env=env, capture_output=True, text=True)
        assert "ModuleNotFoundError" in bare.stderr, f"the installed wheel provides a top-level {room!r}: {bare.stderr[-500:]}"
    taxonomy = run("taxonomy", "--json")
    assert taxonomy.returncode == 0, taxonomy.stderr
    assert len(json.loads(taxonomy.stdout)["domains"]) == 8
    built = run("build", "--domain", "garments", "--out", "out", "--no-progress")
    assert built.returncode == 0, built.stderr[-2000:]
    assert "samples written" in built.stdout
    assert list((work / "out").glob("garments-train-*.tar"))
