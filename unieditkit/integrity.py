"""What a shard's done marker promises about its files, and the check that they still keep it.

The writer records each file's size and SHA-256 in ``_stats.json``; the build trusts a done shard only while its
files match (a deleted, truncated or replaced tar is rebuilt), and ``validate`` reports a mismatch. Both read
this one definition.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

#: the files of a shard whose size and hash its marker records, by their key in the marker's ``files``
SHARD_FILES = {"tar": ".tar", "parquet": ".parquet"}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_records(folder: Path, name: str) -> dict[str, dict[str, Any]]:
    """Size and SHA-256 of shard ``name``'s files, as its marker records them."""
    records = {}
    for kind, suffix in SHARD_FILES.items():
        path = folder / f"{name}{suffix}"
        records[kind] = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
    return records


def mismatch(folder: Path, name: str, recorded: Any) -> str:
    """Why shard ``name``'s files no longer match what its marker recorded ("" when they do)."""
    if not isinstance(recorded, dict) or set(recorded) != set(SHARD_FILES):
        return f"its marker records files {sorted(recorded) if isinstance(recorded, dict) else recorded!r}, expected {sorted(SHARD_FILES)}"
    for kind, want in recorded.items():
        path = folder / f"{name}{SHARD_FILES[kind]}"
        if not path.is_file():
            return f"{path.name} is missing"
        if path.stat().st_size != want.get("bytes"):
            return f"{path.name} has {path.stat().st_size} bytes, its marker says {want.get('bytes')}"
        if file_sha256(path) != want.get("sha256"):
            return f"{path.name} differs from the SHA-256 in its marker"
    return ""
