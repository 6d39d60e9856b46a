"""What ``pip install unieditkit`` (or ``pip install git+...``) gives: a wheel that carries the sample and taxonomy,
and declares every dependency its build needs.

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
def dists(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)], check=True)
    return out


def sample_files() -> set[str]:
    folder = ROOT / "pipelines" / "sample_data"
    return {p.relative_to(ROOT).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_wheel_and_sdist_carry_the_sample_and_the_taxonomy(dists: Path, tmp_path: Path) -> None:
    wheel = next(dists.glob("unieditkit-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert sample_files() <= names, sorted(sample_files() - names)[:5]
    assert "taxonomy/unieditkit-taxonomy-v1.yaml" in names
    subprocess.run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(tmp_path)!r})"],
                   cwd=ROOT, check=True, capture_output=True)
    sdist = next(tmp_path.glob("unieditkit-*.tar.gz"))
    with tarfile.open(sdist) as tf:
        inside = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert sample_files() <= inside, sorted(sample_files() - inside)[:5]
    assert "taxonomy/unieditkit-taxonomy-v1.yaml" in inside


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

    where = subprocess.run([str(python), "-c", "import pipelines, unieditkit; print(pipelines.__file__, unieditkit.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True, check=True).stdout
    assert str(ROOT) not in where and str(site) in where, where
    taxonomy = run("taxonomy", "--json")
    assert taxonomy.returncode == 0, taxonomy.stderr
    assert len(json.loads(taxonomy.stdout)["domains"]) == 8
    built = run("build", "--domain", "garments", "--out", "out", "--no-progress")
    assert built.returncode == 0, built.stderr[-2000:]
    assert "samples written" in built.stdout
    assert list((work / "out").glob("garments-train-*.tar"))
