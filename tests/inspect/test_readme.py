"""The README's "Browse with Hugging Face datasets" and "Look at the data" code blocks, run exactly as written.

The blocks are read out of README.md, not copied here, so an edited snippet that stops working fails this test.
They run in a folder where ``out`` is a copy of the sample build (the README's main command builds ``out``).
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from unieditkit.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


def code_blocks(section: str, language: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"README.md has no section '## {section}'"
    return re.findall(rf"^```{language}\n(.*?)^```", match.group(1), re.S | re.M)


@pytest.fixture()
def in_workdir(built_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(built_dataset, tmp_path / "out")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "out"


def test_hf_datasets_snippets_run(in_workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    blocks = code_blocks("Browse with Hugging Face datasets", "python")
    assert len(blocks) == 3  # load, filter by subcategory, stream
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    train = sorted((r for r in pq.read_table(in_workdir / "index.parquet").to_pylist() if r["split"] == "train"), key=lambda r: r["key"])
    first = train[0]
    assert printed[0].startswith(f"{first['key']} {first['subcategory']} [")
    assert printed[1] == f"({first['ref_width']}, {first['ref_height']}) L"
    n_blouses = Counter(r["subcategory"] for r in train)["blouse"]
    assert n_blouses > 0 and f"{n_blouses} blouses" in printed
    assert printed[-3:] == [f"{r['key']} {r['pair_kind']} ({r['tgt_width']}, {r['tgt_height']})" for r in train[:3]]


def test_look_at_the_data_commands_run(in_workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (block,) = code_blocks("Look at the data", "bash")
    commands = [shlex.split(line.split("#")[0]) for line in block.splitlines() if line.strip()]
    assert [c[:2] for c in commands] == [["unieditkit", "preview"], ["unieditkit", "gallery"], ["unieditkit", "stats"], ["unieditkit", "validate"]]
    for argv in commands:
        assert main(argv[1:]) == 0, argv
    assert (in_workdir.parent / "sheet.png").is_file() and (in_workdir.parent / "stats.png").is_file()
    assert (in_workdir / "gallery" / "index.html").is_file()
    assert capsys.readouterr().out.rstrip().endswith("samples: valid")  # the gallery inside out/ is not a problem
