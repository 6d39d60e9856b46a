"""What a shard's done marker promises about its files, and the check that they still keep it.

The writer records each file's size and SHA-256 in ``_stats.json``; the build trusts a done shard only while its
files match (a deleted, truncated or replaced tar is rebuilt), and ``validate`` reports a mismatch. Both read
this one definition.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import IO, Any

from .format import SIDECAR_SUFFIX, TAR_SUFFIX
from .storage import Folder, as_folder

#: the files of a shard whose size and hash its marker records, by their key in the marker's ``files``
SHARD_FILES = {"tar": TAR_SUFFIX, "parquet": SIDECAR_SUFFIX}


class RecordingWriter:
    """Passes writes on to ``fh`` and keeps the size and SHA-256 of what went through.

    The writer records a shard's files as it writes them, so the marker costs no second read of the tar (on
    object storage, no download of what was just uploaded).
    """

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.digest = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.bytes += len(data)
        return self.fh.write(data)

    def record(self) -> dict[str, Any]:
        """The entry of this file in the marker's ``files``."""
        return {"bytes": self.bytes, "sha256": self.digest.hexdigest()}


def mismatch(out: Folder | Path, name: str, recorded: Any) -> str:
    """Why shard ``name``'s files no longer match what its marker recorded ("" when they do)."""
    if not isinstance(recorded, dict) or set(recorded) != set(SHARD_FILES):
        return f"its marker records files {sorted(recorded) if isinstance(recorded, dict) else recorded!r}, expected {sorted(SHARD_FILES)}"
    folder = as_folder(out)
    for kind, want in recorded.items():
        file = f"{name}{SHARD_FILES[kind]}"
        if not folder.exists(file):
            return f"{file} is missing"
        size = folder.size(file)
        if size != want.get("bytes"):
            return f"{file} has {size} bytes, its marker says {want.get('bytes')}"
        if folder.sha256(file) != want.get("sha256"):
            return f"{file} differs from the SHA-256 in its marker"
    return ""
