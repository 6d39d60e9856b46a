"""Fixtures for the inspection commands: a small writable copy of the sample build and a tar editor."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path
from typing import Callable

import pytest

Members = dict[str, bytes]


@pytest.fixture()
def small_copy(built_dataset: Path, tmp_path: Path) -> Path:
    """A copy of the sample build holding only its val shard, folder files rebuilt by the build's own code.

    Validating one two-sample shard takes milliseconds, so each corruption test can check a whole folder.
    """
    from unieditkit.pipelines.catalog import finalize

    out = tmp_path / "out"
    out.mkdir()
    val = sorted(p.name.removesuffix(".tar") for p in built_dataset.glob("*-val-*.tar"))[0]
    for suffix in (".tar", ".parquet", "_stats.json"):
        shutil.copy2(built_dataset / f"{val}{suffix}", out)
    shutil.copy2(built_dataset / "build_config.json", out)
    finalize(out)
    return out


def _read(tar: Path) -> Members:
    with tarfile.open(tar) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}  # type: ignore[union-attr]


def _write(tar: Path, members: Members) -> None:
    with tarfile.open(tar, "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


@pytest.fixture()
def edit_tar() -> Callable[[Path, Callable[[Members], Members | None]], None]:
    """``edit_tar(tar, fn)``: rewrite ``tar`` with ``fn(members)`` (name → bytes, in stored order; edit in place or return a new dict)."""

    def edit(tar: Path, fn: Callable[[Members], Members | None]) -> None:
        members = _read(tar)
        result = fn(members)
        _write(tar, result if isinstance(result, dict) else members)

    return edit
