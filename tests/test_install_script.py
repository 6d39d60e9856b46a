"""``scripts/install.sh`` without root, and the versions it installs.

The install must succeed for a user without root: everything but the browser goes into ``.venv``, and the browser
step (``scripts/install-browser.sh``) installs Chromium only where it can, otherwise printing the one command to run
and exiting 0. The browser script runs here as ``nobody`` (``setpriv``) with a ``PATH`` that hides any installed
Chromium, so it takes its no-root branch for real and cannot install anything. Running the whole install as a
non-root user takes minutes (a fresh venv, torch); what is checked instead is that no other line of install.sh
needs root.

``constraints.txt`` pins the versions CI tests while ``setup.cfg`` declares ranges: each pin must lie inside the
range setup.cfg declares for that package (or pip refuses to install), every package setup.cfg names must be
pinned, and each pin must be the version this environment holds (install.sh installs with the file, so a mismatch
means the file no longer describes what was tested).
"""

from __future__ import annotations

import configparser
import importlib.metadata
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
BROWSER_SCRIPT = ROOT / "scripts" / "install-browser.sh"
NOBODY = 65534
ROOT_ONLY = ("sudo", "apt-get", "apt ", "dpkg", "yum", "dnf", "chown", "--user", "/usr/", "/etc/")


def declared() -> list[Requirement]:
    """Every requirement setup.cfg declares: the base install and each extra."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    blocks = [cfg["options"]["install_requires"], *cfg["options.extras_require"].values()]
    return [Requirement(line) for block in blocks for line in block.splitlines() if line.strip()]


def pins() -> dict[str, str]:
    """constraints.txt as {canonical name: version}."""
    found = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            assert canonicalize_name(name) not in found, f"{name} is pinned twice"
            found[canonicalize_name(name)] = version
    return found


def test_every_declared_package_is_pinned_inside_its_range() -> None:
    pinned = pins()
    for req in declared():
        name = canonicalize_name(req.name)
        assert name in pinned, f"setup.cfg names {req} but constraints.txt does not pin {req.name}"
        assert req.specifier.contains(pinned[name], prereleases=True), f"constraints.txt pins {req.name}=={pinned[name]}, outside setup.cfg's {req}"


def test_pins_are_the_tested_versions() -> None:
    wrong = {}
    for name, version in pins().items():
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            have = "not installed"
        if have != version:
            wrong[name] = f"pinned {version}, installed {have}"
    assert not wrong, f"constraints.txt does not describe this environment: {wrong}"


def test_base_install_has_no_exact_pin() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    exact = [line for line in cfg["options"]["install_requires"].splitlines() if "==" in line]
    assert not exact, f"exact pins in install_requires fight other packages (pin them in constraints.txt): {exact}"


def commands(script: Path) -> list[str]:
    return [line for line in script.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_install_sh_needs_root_only_for_the_browser() -> None:
    lines = commands(ROOT / "scripts" / "install.sh")
    assert [line for line in lines if "scripts/" in line] == ["bash scripts/install-browser.sh"], lines
    assert not [line for line in lines if any(word in line for word in ROOT_ONLY)], lines
    assert all(".venv/bin/python -m pip" in line for line in lines if re.search(r"\bpip3?\b", line)), "pip must install into .venv"
    assert any("-c constraints.txt" in line for line in lines), "install.sh must install the versions CI tests"


def test_install_sh_installs_every_extra() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    installed = re.findall(r"-e '\.\[([a-z0-9,]+)\]'", (ROOT / "scripts" / "install.sh").read_text())
    assert len(installed) == 1 and set(installed[0].split(",")) == set(cfg["options.extras_require"]), installed


@pytest.fixture
def bare_path() -> Iterator[Path]:
    """An empty folder for PATH that ``nobody`` can read: the browser script sees only the tools linked into it."""
    with tempfile.TemporaryDirectory(prefix="bin-") as folder:
        os.chmod(folder, 0o755)
        yield Path(folder)


def link(folder: Path, *tools: str) -> None:
    for tool in tools:
        exe = shutil.which(tool)
        assert exe is not None, f"{tool} is not on PATH"
        (folder / tool).symlink_to(exe)


def run_browser_script(path: Path, as_nobody: bool) -> subprocess.CompletedProcess:
    prefix = []
    if as_nobody and os.geteuid() == 0:
        prefix = [shutil.which("setpriv"), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    return subprocess.run([*prefix, shutil.which("bash"), str(BROWSER_SCRIPT)], env={"PATH": str(path)},
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_browser_script_without_root_prints_the_command_and_succeeds(bare_path: Path) -> None:
    if shutil.which("apt-get") is None:
        pytest.skip("no apt-get on this machine: the no-root branch is the apt-get one")
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv (util-linux): cannot drop to nobody")
    link(bare_path, "id", "apt-get")
    done = run_browser_script(bare_path, as_nobody=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"chromium not installed (apt-get needs root): run `sudo bash {BROWSER_SCRIPT}` "
        "(only the gallery tests use it; they are skipped until then)"], done.stdout
    assert done.stderr == ""


def test_browser_script_without_apt_get_names_the_package_manager_and_succeeds(bare_path: Path) -> None:
    link(bare_path, "id")
    done = run_browser_script(bare_path, as_nobody=False)  # no apt-get on PATH: nothing can be installed, even as root
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1 and "install Chromium with your package manager" in done.stdout, done.stdout


def test_browser_script_leaves_an_installed_browser_alone(bare_path: Path) -> None:
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed here (run `sudo bash scripts/install-browser.sh`)")
    link(bare_path, "id", "chromium")
    done = run_browser_script(bare_path, as_nobody=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"chromium already installed: {bare_path / 'chromium'}"], done.stdout
