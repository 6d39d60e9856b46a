"""What ``pip install unieditkit`` (or ``pip install git+...``) gives: a wheel that carries the sample and taxonomy.

The wheel is built from this checkout and installed into a fresh virtualenv with ``--no-deps``; the heavy
dependencies come from the test environment's site-packages through a ``.pth`` file (a plain path: the editable
install's own ``.pth`` finder in that folder is not run), and every command runs outside the source tree, so
nothing of the checkout is importable: the package must bring its own data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

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


def test_wheel_installed_in_a_fresh_venv_builds_the_sample(dists: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)  # ensurepip: offline, from the wheel bundled with Python
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               env=env, capture_output=True, text=True, check=True).stdout.strip())
    wheel = next(dists.glob("unieditkit-*.whl"))
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], env=env, check=True)
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # after the install: pip would see the editable unieditkit there
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
