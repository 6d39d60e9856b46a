"""Fixtures for the source tests; the writers they use live in ``sourcedata.py`` (importable by the tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sourcedata import write_video


@pytest.fixture()
def clips(tmp_path: Path) -> Path:
    """clips/: a 40-frame mp4, a 30-frame avi in a subfolder, a zero-length mp4, a truncated avi, garbage, a 1-frame clip."""
    root = tmp_path / "clips"
    write_video(root / "walk.mp4", 40)
    write_video(root / "sub" / "Turn.AVI", 30)
    (root / "empty.mp4").write_bytes(b"")
    truncated = write_video(root / "cut.avi", 30)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    (root / "garbage.mp4").write_bytes(b"not a video" * 100)
    write_video(root / "still.mp4", 1)
    (root / "notes.txt").write_text("ignored")
    return root
