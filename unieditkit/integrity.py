"""What a shard's done marker promises about its files, and the two checks that they still keep it.

The writer records each file's size, SHA-256 and MD5 in ``_stats.json``, the marker it writes last; ``validate``
re-reads every byte against the SHA-256 (``mismatch``). A resumed build must not: on object storage that would pull
the whole dataset through the driver on every re-run. It asks the store instead, with one listing of the folder
(``stored_files``), and takes a shard as done when every file has the size its marker records and (``vouch``)

* the store's ETag is the MD5 the marker records (S3 and S3-compatible servers give an object uploaded in one
  piece its content's MD5 as ETag: the store has checked the bytes for us), or
* the store's modification time of the file is not later than the marker's: the file was not written after the
  shard was finished (a local disk's mtime in nanoseconds; object storage's upload time, where no MD5 ETag says
  more: a multipart upload, a store with other ETags).

What this promises: a file deleted, truncated, extended or rewritten after its marker is rebuilt. What it does
not: a same-size change whose modification time was put back (``touch -r``, a backup restored with its old
times) or, on object storage without MD5 ETags, one written in the same second as the marker; ``validate``
finds those. A file the store cannot vouch for (a folder copied without its times, SSE-KMS ETags) is hashed in
full, in parallel tasks, and rebuilt only if its bytes differ.

Why the marker records an MD5 rather than the ETag or mtime the store reported after the upload: the marker is a
shard file and must be the same bytes on every run and every store (a killed and resumed build equals an
uninterrupted one, an S3 build equals a local one); the MD5 is exactly the ETag S3 gives a one-piece upload.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from .format import SIDECAR_SUFFIX, TAR_SUFFIX, marker_name
from .storage import Folder, as_folder

#: the files of a shard whose size and hashes its marker records, by their key in the marker's ``files``
SHARD_FILES = {"tar": TAR_SUFFIX, "parquet": SIDECAR_SUFFIX}

_MD5_ETAG = re.compile(r'^"?([0-9a-f]{32})"?$')


class RecordingWriter:
    """Passes writes on to ``fh`` and keeps the size, SHA-256 and MD5 of what went through.

    The writer records a shard's files as it writes them, so the marker costs no second read of the tar (on
    object storage, no download of what was just uploaded).
    """

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.digest = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.md5.update(data)
        self.bytes += len(data)
        return self.fh.write(data)

    def record(self) -> dict[str, Any]:
        """The entry of this file in the marker's ``files``."""
        return {"bytes": self.bytes, "md5": self.md5.hexdigest(), "sha256": self.digest.hexdigest()}


@dataclass(frozen=True)
class Stored:
    """What the store says about one file without reading it."""

    size: int
    #: the content's MD5 when the store's ETag is one, else ""
    md5: str
    #: modification (upload) time in nanoseconds; None when the store gives none
    mtime_ns: int | None


def stored_files(out: Folder | Path) -> dict[str, Stored]:
    """Every file of the folder with what the store knows of it, from one listing (a missing folder is empty)."""
    folder = as_folder(out)
    if folder.local:
        root = folder.local_path()
        if not root.is_dir():
            return {}
        with os.scandir(root) as entries:
            return {e.name: Stored(st.st_size, "", st.st_mtime_ns) for e in entries if e.is_file() for st in (e.stat(),)}
    try:
        entries = folder.fs.ls(folder.root, detail=True, refresh=True)
    except FileNotFoundError:
        return {}
    found = {}
    for e in entries:
        if e.get("type") != "file":
            continue
        etag = _MD5_ETAG.match(str(e.get("ETag", "")))
        modified = e.get("LastModified")
        found[e["name"].rstrip("/").rsplit("/", 1)[-1]] = Stored(
            int(e["size"]), etag[1] if etag else "", int(modified.timestamp() * 1e9) if isinstance(modified, datetime) else None
        )
    return found


def _malformed(recorded: Any) -> str:
    if isinstance(recorded, dict) and set(recorded) == set(SHARD_FILES) and all(isinstance(v, dict) for v in recorded.values()):
        return ""
    return f"its marker records files {sorted(recorded) if isinstance(recorded, dict) else recorded!r}, expected {sorted(SHARD_FILES)}"


def vouch(stored: dict[str, Stored], name: str, recorded: Any) -> str | None:
    """Whether the store vouches for shard ``name``'s files: "" when it does, why not when they are certainly
    damaged (missing, another size, a malformed marker), None when only their bytes can tell (``mismatch``)."""
    if malformed := _malformed(recorded):
        return malformed
    marker = stored.get(marker_name(name))
    unsure = False
    for kind, want in recorded.items():
        file = f"{name}{SHARD_FILES[kind]}"
        if file not in stored:
            return f"{file} is missing"
        have = stored[file]
        if have.size != want.get("bytes"):
            return f"{file} has {have.size} bytes, its marker says {want.get('bytes')}"
        if have.md5:  # another MD5 than the recorded one: other bytes, or ETags that are no MD5 after all (SSE-KMS)
            trusted = have.md5 == want.get("md5")
        else:
            trusted = marker is not None and have.mtime_ns is not None and marker.mtime_ns is not None and have.mtime_ns <= marker.mtime_ns
        unsure = unsure or not trusted
    return None if unsure else ""


def mismatch(out: Folder | Path, name: str, recorded: Any) -> str:
    """Why shard ``name``'s files no longer match what its marker recorded ("" when they do): every byte re-read."""
    if malformed := _malformed(recorded):
        return malformed
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
