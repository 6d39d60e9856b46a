"""Each command's extra is enough for it, a missing one is one line, and the commands that need none start without
torch.

Without an extra, the packages are hidden from a subprocess the way a plain ``pip install unieditkit`` leaves them:
a ``sitecustomize`` on its ``PYTHONPATH`` puts ``None`` in ``sys.modules`` for each, so importing one raises
``ModuleNotFoundError`` and ``importlib.util.find_spec`` finds nothing.

The map test reads each command's imports from the source (the AST, function-level imports included), so an import
added to a command without its distribution in ``setup.cfg`` fails here, not on a user's machine.
"""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import unieditkit
from unieditkit.extras import COMMAND_EXTRAS, EXTRAS

REPO = Path(__file__).resolve().parents[1]
UNIEDITKIT = [str(Path(sys.executable).with_name("unieditkit"))]  # the console script a user runs
#: installed package -> repository folder (setup.py's package_dir)
ROOMS = {f"unieditkit.{room}": room for room in unieditkit.ROOMS}
#: command -> the module that registers it and runs it
COMMANDS = {"build": "unieditkit.pipelines.cli", "train": "unieditkit.training.cli", "edit": "unieditkit.training.edit",
            "eval": "unieditkit.evaluate", "dedupe": "unieditkit.pipelines.dedupe", "taxonomy": "unieditkit.taxonomy.cli", "inspect": "unieditkit.inspect.cli"}


def run_without(modules: tuple[str, ...], args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    hide = cwd / "hide"
    hide.mkdir(exist_ok=True)
    (hide / "sitecustomize.py").write_text(f"import sys\nsys.modules.update(dict.fromkeys({list(modules)!r}))\n")
    env = {**os.environ, "PYTHONPATH": str(hide), "OMP_NUM_THREADS": "1"}
    return subprocess.run(UNIEDITKIT + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("extra, args", [
    ("train", ["train", "--data", "data", "--out", "made"]),
    ("train", ["edit", "--checkpoint", "run", "--ref", "r.png", "--image", "i.png", "--mask", "m.png", "--out", "made/x.png"]),
    ("eval", ["eval", "--pred", "made", "--data", "data", "--random-weights"]),
    ("models", ["build", "--domain", "garments", "--source", f"images:{REPO / 'pipelines/sample_data/images'}",
                "--out", "made", "--workers", "1"]),
    ("models", ["dedupe", "made", "--clip-model", "ViT-B-32", "--random-weights"]),
])
def test_a_command_without_its_extra_says_so_in_one_line_and_creates_nothing(tmp_path: Path, extra: str, args: list[str]) -> None:
    proc = run_without(EXTRAS[extra], args, tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].endswith(f"is not installed; pip install 'unieditkit[{extra}]'"), proc.stderr
    assert re.match(rf"unieditkit {args[0]}: error: .*: {EXTRAS[extra][0]} is not installed", lines[0]), lines[0]
    assert not (tmp_path / "made").exists()


def test_the_flux_backbone_without_its_extra_says_so(tmp_path: Path) -> None:
    """torch is there ([train]), diffusers is not: the FLUX run stops at the config, before reading the data."""
    proc = run_without(("diffusers",), ["train", "--backbone", "flux-fill", "--pretrained", "flux",
                                          "--data", "data", "--out", "made"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ("unieditkit train: error: model.backbone flux-fill: diffusers is not installed; "
                                   "pip install 'unieditkit[flux]'")
    assert not (tmp_path / "made").exists()


@pytest.mark.parametrize("args", [["--help"], ["taxonomy"], ["build", "--help"]])
def test_commands_that_run_no_model_import_no_torch(args: list[str]) -> None:
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    proc = subprocess.run(UNIEDITKIT + args, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "unieditkit.cli" in imported  # the profile is there to read
    assert not {"torch", "webdataset"} & imported


# ---- the map: each command's third-party imports against setup.cfg ----

def _source(module: str) -> Path | None:
    parts = module.split(".")
    folder = next((ROOMS[p] for p in ROOMS if module == p or module.startswith(p + ".")), None)
    base = REPO / folder / Path(*parts[2:]) if folder else REPO / Path(*parts)
    return next((p for p in (base / "__init__.py", base.with_suffix(".py")) if p.is_file()), None)


def _is_type_checking(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


class Reach:
    """What running a command can import. A module is taken whole (its top level without ``if TYPE_CHECKING``, and
    every function and class) when it is the command's or imported as ``import m`` / ``from pkg import m``; for
    ``from m import name``, only ``m``'s top level, ``name``'s own body and the bodies of ``m``'s other top-level
    functions and classes that body names, each followed through ``unieditkit`` modules by the same rule. Per name
    rather than per module, so ``eval`` taking ``load_state_dict`` from the models' weight module is not charged with
    GroundingDINO, which another function of that module imports."""

    #: ``visit``'s ``name`` for a module's top level alone (what importing it runs)
    TOP = ""

    def __init__(self) -> None:
        self.done: set[tuple[str, str | None]] = set()
        self.third_party: dict[str, str] = {}  # top-level import name -> a module that imports it

    def visit(self, module: str, name: str | None = None) -> None:
        """``name`` None: the whole module; ``TOP``: its top level; else that top-level function or class."""
        path = _source(module)
        if path is None or (module, name) in self.done:
            return
        self.done.add((module, name))
        parts = module.split(".")
        for i in range(1, len(parts)):
            self.visit(".".join(parts[:i]), self.TOP)
        tree = ast.parse(path.read_text())
        defs = {n.name: n for n in tree.body if isinstance(n, DEFS)}
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        if name != self.TOP:
            self.visit(module, self.TOP)
        if name is None:
            for used in defs:
                self.visit(module, used)
        elif name == self.TOP:
            for node in tree.body:
                if not isinstance(node, DEFS) and not _is_type_checking(node):
                    self._imports(node, package, module)
        elif name in defs:
            self._imports(defs[name], package, module)
            for used in {n.id for n in ast.walk(defs[name]) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} & defs.keys() - {name}:
                self.visit(module, used)

    def _imports(self, node: ast.AST, package: str, where: str) -> None:
        for n in ast.walk(node):
            if isinstance(n, ast.Import):
                for alias in n.names:
                    self._target(alias.name, None, where)
            elif isinstance(n, ast.ImportFrom):
                base = package.rsplit(".", n.level - 1)[0] if n.level > 1 else package
                full = (f"{base}.{n.module}" if n.module else base) if n.level else n.module
                for alias in n.names:
                    sub = f"{full}.{alias.name}"
                    if _source(sub):
                        self._target(sub, None, where)
                    else:
                        self._target(full, alias.name, where)

    def _target(self, module: str, name: str | None, where: str) -> None:
        top = module.split(".")[0]
        if top == "unieditkit":
            self.visit(module, None if name == "*" else name)
        elif top not in sys.stdlib_module_names and top != "__future__":
            self.third_party.setdefault(top, where)


def _normalize(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    """setup.cfg's install_requires and extras, as normalized distribution names."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")

    def names(text: str) -> set[str]:
        return {_normalize(re.match(r"[A-Za-z0-9_.-]+", line.strip()).group()) for line in text.splitlines() if line.strip()}

    return names(cfg["options"]["install_requires"]), {k: names(v) for k, v in cfg["options.extras_require"].items()}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_third_party_import_of_a_command_is_declared_for_it(command: str) -> None:
    base, extras = _declared()
    allowed = base | {d for extra in COMMAND_EXTRAS.get(command, ()) for d in extras[extra]}
    reach = Reach()
    reach.visit(COMMANDS[command])
    dists = importlib.metadata.packages_distributions()
    undeclared = {name: (where, dists.get(name)) for name, where in reach.third_party.items()
                  if not {_normalize(d) for d in dists.get(name, [name])} & allowed}
    assert not undeclared, f"unieditkit {command}: imports not in install_requires or {COMMAND_EXTRAS.get(command, ())}: {undeclared}"


def test_each_extra_declares_the_modules_a_command_checks_for() -> None:
    _, extras = _declared()
    dists = importlib.metadata.packages_distributions()
    for extra, modules in EXTRAS.items():
        assert all({_normalize(d) for d in dists[m]} & extras[extra] for m in modules), extra
