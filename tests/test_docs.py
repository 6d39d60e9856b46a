"""The README and docs/FORMAT.md against the code they describe, so a renamed test, a new option or a new format
version cannot leave the documentation behind unnoticed (each once drifted: a Guarantees row named a removed
test, the synopsis missed two commands and more than a dozen options, FORMAT.md gave the previous ``format_version``).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import re
from pathlib import Path

import numpy as np
from PIL import Image

from unieditkit.pipelines.lock import LOCK_NAME
from unieditkit import format as fmt
from unieditkit.cli import make_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
FORMAT_DOC = (ROOT / "docs" / "FORMAT.md").read_text(encoding="utf-8")
TEST_REF = re.compile(r"^(?P<file>tests/[\w/]+\.py)(?:::(?P<name>\w+))?$")


def section(text: str, heading: str) -> str:
    """The text from the line starting with ``heading`` up to the next heading of its level or above."""
    start = text.index(f"\n{heading}")
    level = heading.split()[0]
    ends = [i for i in (text.find(f"\n{'#' * n} ", start + 1) for n in range(1, len(level) + 1)) if i >= 0]
    return text[start:min(ends, default=len(text))]


def collected_names(path: Path) -> set[str]:
    """Names pytest collects from a file: module-level test functions and test methods of classes."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for cls in (node for node in tree.body if isinstance(node, ast.ClassDef)):
        names |= {f"{cls.name}::{node.name}" for node in cls.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return {n for n in names if n.split("::")[-1].startswith("test")}


def test_every_guarantees_row_names_tests_that_exist() -> None:
    rows = [line for line in section(README, "## Guarantees").splitlines()
            if line.startswith("| ") and not line.startswith(("| a build", "| a training run"))]
    assert len(rows) >= 30, f"only {len(rows)} Guarantees rows parsed"
    for row in rows:
        refs = re.findall(r"`([^`]+)`", row.rstrip(" |").rsplit(" | ", 1)[-1])
        assert refs, f"Guarantees row names no test: {row[:100]}"
        for ref in refs:
            match = TEST_REF.match(ref)
            assert match, f"Guarantees: `{ref}` is not tests/FILE.py or tests/FILE.py::TEST"
            path = ROOT / match["file"]
            assert path.is_file(), f"Guarantees: {match['file']} does not exist"
            if match["name"]:
                assert match["name"] in collected_names(path), f"Guarantees: {ref} does not exist"
            else:
                assert collected_names(path), f"Guarantees: {match['file']} holds no test"


def synopsis() -> dict[str, str]:
    """The README's command block, as the text written for each subcommand (comments dropped)."""
    block = section(README, "## Commands").split("```bash\n", 1)[1].split("```", 1)[0]
    commands: dict[str, str] = {}
    name = ""
    for line in block.splitlines():
        line = line.split("  #", 1)[0]
        if line.startswith("unieditkit "):
            name = line.split()[1]
        assert name, f"README Commands: {line!r} comes before any `unieditkit COMMAND` line"
        commands[name] = commands.get(name, "") + line + "\n"
    return commands


def test_the_readme_synopsis_lists_every_command_option_and_choice() -> None:
    sub = next(a for a in make_parser()._actions if isinstance(a, argparse._SubParsersAction))
    written = synopsis()
    assert set(written) == set(sub.choices), "README Commands vs argparse: " + \
        f"missing {sorted(set(sub.choices) - set(written))}, unknown {sorted(set(written) - set(sub.choices))}"
    for name, parser in sub.choices.items():
        options = {s for a in parser._actions for s in a.option_strings if s.startswith("--") and s != "--help"}
        shown = set(re.findall(r"--[a-z0-9][a-z0-9-]*", written[name]))
        assert options <= shown, f"README Commands: `unieditkit {name}` lacks {sorted(options - shown)}"
        assert shown <= options, f"README Commands: `unieditkit {name}` has no option {sorted(shown - options)}"
        for action in parser._actions:
            if action.choices is None or not action.option_strings:
                continue
            option = next(s for s in action.option_strings if s.startswith("--"))
            alternatives = re.search(rf"{option} ([\w|-]+)", written[name])
            assert alternatives and set(alternatives[1].split("|")) == {c for c in action.choices if c}, \
                f"README Commands: `unieditkit {name} {option}` should list {'|'.join(c for c in action.choices if c)}"


def test_format_doc_gives_the_format_version_and_every_folder_file_and_field() -> None:
    assert re.search(r"^# .*\(format version (\d+)\)$", FORMAT_DOC, re.M)[1] == str(fmt.FORMAT_VERSION)
    assert re.search(r"^\| `format_version` \| int \| (\d+)\b", FORMAT_DOC, re.M)[1] == str(fmt.FORMAT_VERSION)
    listing = FORMAT_DOC.split("```\nOUT/\n", 1)[1].split("```", 1)[0]
    listed = {line.split()[0] for line in listing.splitlines() if line.strip()}
    folder_files = {fmt.CARD_FILE, fmt.BUILD_CONFIG_FILE, fmt.INDEX_FILE, fmt.REJECTED_FILE, fmt.PROBES_FILE,
                    fmt.DUPLICATES_FILE, LOCK_NAME}
    assert folder_files <= listed, f"docs/FORMAT.md's OUT/ listing lacks {sorted(folder_files - listed)}"
    table = section(FORMAT_DOC, "### `json` fields")
    fields = set(re.findall(r"^\| `(\w+)` \| (?:str|int|bool|struct|list\[\w+\]) \|", table, re.M))
    assert fields == set(fmt.empty_meta()), \
        f"docs/FORMAT.md json fields: missing {sorted(set(fmt.empty_meta()) - fields)}, unknown {sorted(fields - set(fmt.empty_meta()))}"
    for field, value in fmt.empty_meta().items():
        if isinstance(value, dict):
            described = set(re.findall(r"`(\w+)`", re.search(rf"^\| `{field}` \| struct \|(.*)$", table, re.M)[1]))
            assert set(value) <= described, f"docs/FORMAT.md: `{field}` lacks {sorted(set(value) - described)}"
    members = set(re.findall(r"^\| `([\w.]+)`\s*\|", section(FORMAT_DOC, "## Sample"), re.M))
    assert members >= set(fmt.SAMPLE_FILES), f"docs/FORMAT.md members lack {sorted(set(fmt.SAMPLE_FILES) - members)}"


def test_the_readme_picture_is_what_preview_draws_of_the_bundled_sample(built_dataset: Path, tmp_path: Path) -> None:
    """Pixel for pixel: the sheet is drawn with Pillow's bundled font from the build's own JPEGs and PNGs.

    ``built_dataset`` is the README's garments build with 8 units per shard instead of 256; a sample's content
    and key do not depend on the shard it lands in, so the first three samples by key are the same.
    """
    spec = importlib.util.spec_from_file_location("render_readme_picture", ROOT / "scripts" / "render_readme_picture.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert f"]({script.PICTURE.relative_to(ROOT).as_posix()})" in README
    assert f"`unieditkit preview out --n {script.ROWS}`" in README
    fresh = tmp_path / "fresh.png"
    script.render(built_dataset, fresh)
    drawn, committed = (np.asarray(Image.open(p).convert("RGB")) for p in (fresh, script.PICTURE))
    assert drawn.shape == committed.shape and np.array_equal(drawn, committed), \
        f"{script.PICTURE.relative_to(ROOT)} is not what `unieditkit preview` draws now: run scripts/render_readme_picture.py"
