"""Reading a build's output folder: done shards' markers, index rows, tar members, images. It sits in the core,
beside the format it reads, because the build's own catalog and dedupe, training's loader and the inspection
commands all read a built folder, and none of them may import another's room for it.

Tars are read with :mod:`tarfile` member by member and never extracted, so a hostile shard (path-traversal
names, links, devices, huge members) can be inspected and reported but cannot write anywhere. Members with an
absolute name or a ``..`` component are not even read: no sample can come from them, so no later step (a
gallery writing files named after keys) can be steered by such a name. Member names are
split into key and member by the known member suffixes rather than at the first dot, so a key that wrongly
contains a dot is still recognised as one sample (and ``validate`` can say so) instead of becoming a bogus one.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from unieditkit.errors import UserError
from unieditkit.format import DONE_MARKER_SUFFIX, INDEX_FILE, META_MEMBER, SAMPLE_FILES, TAR_SUFFIX, marker_name
from unieditkit.imageio import MAX_PIXELS
from unieditkit.storage import Folder, as_folder

KEY_RE = re.compile(r"^[a-z0-9_-]+$")
#: larger members are not read into memory (a real sample member is a few hundred kB at most)
MAX_MEMBER_BYTES = 256 << 20
_SUFFIXES = sorted(SAMPLE_FILES, key=len, reverse=True)


@dataclass(frozen=True)
class TarEntry:
    """One tar member: ``data`` is ``None`` when it was not read (not a regular file, or too large)."""

    name: str
    key: str
    member: str
    data: bytes | None
    problem: str = ""


@dataclass
class Sample:
    """The files of one sample, as stored, with lazily decoded views."""

    key: str
    shard: str
    files: dict[str, bytes] = field(default_factory=dict)

    @cached_property
    def meta(self) -> dict[str, Any]:
        return json.loads(self.files[META_MEMBER])

    def image(self, member: str) -> Image.Image:
        """The member decoded by Pillow (mode as stored), refusing decompression bombs."""
        return open_image(self.files[member], member)

    def rgb(self, member: str) -> Image.Image:
        return self.image(member).convert("RGB")

    def mask(self, member: str) -> np.ndarray:
        """A mask member as a bool array (values above 127 are inside)."""
        return np.asarray(self.image(member).convert("L")) > 127


def open_image(data: bytes, name: str) -> Image.Image:
    """Decode image bytes fully; raises ``ValueError`` with a short reason for anything unusable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.width * img.height > MAX_PIXELS:
                raise ValueError(f"{name} is {img.width}x{img.height}, above the {MAX_PIXELS} pixel limit")
            img.load()
    except ValueError:
        raise
    except Exception as exc:  # Pillow raises many types for corrupt data; all mean "does not decode"
        raise ValueError(f"{name} does not decode ({type(exc).__name__}: {exc})") from None
    return img


def split_member(name: str) -> tuple[str, str]:
    """``KEY.MEMBER`` → (key, member) by the known suffixes; unknown suffixes split at the first dot."""
    for suffix in _SUFFIXES:
        if name.endswith("." + suffix) and len(name) > len(suffix) + 1:
            return name[: -len(suffix) - 1], suffix
    key, _, member = name.partition(".")
    return key, member


def unsafe_name(name: str) -> bool:
    """An absolute member name or one with a ``..`` component (either slash), which ``tar -x`` would write outside."""
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or bool(re.match(r"^[A-Za-z]:", name)) or ".." in parts


def tar_entries(path: Path) -> Iterator[TarEntry]:
    """Every member of a tar in stored order, read into memory only when it is a regular, reasonably sized file."""
    try:
        tf = tarfile.open(path, "r:")
    except (tarfile.TarError, OSError) as exc:
        raise UserError(f"{path}: not a readable tar ({exc}); delete it and its {DONE_MARKER_SUFFIX} and re-run the build") from None
    with tf:
        try:
            for info in tf:
                if unsafe_name(info.name):
                    yield TarEntry(info.name, "", "", None, "absolute or '..' member name (ignored)")
                    continue
                key, member = split_member(info.name)
                if not info.isfile():
                    yield TarEntry(info.name, key, member, None, "not a regular file")
                elif info.size > MAX_MEMBER_BYTES:
                    yield TarEntry(info.name, key, member, None, f"member of {info.size} bytes (limit {MAX_MEMBER_BYTES})")
                else:
                    fh = tf.extractfile(info)
                    yield TarEntry(info.name, key, member, fh.read() if fh else None)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise UserError(f"{path}: damaged tar ({type(exc).__name__}: {exc}); delete it and its {DONE_MARKER_SUFFIX} and re-run the build") from None


def iter_samples(path: Path, keys: set[str] | None = None) -> Iterator[Sample]:
    """Samples of one shard in stored order (members of a key are contiguous in a well-formed shard)."""
    shard = path.name.removesuffix(TAR_SUFFIX)
    current: Sample | None = None
    for entry in tar_entries(path):
        if entry.data is None or (keys is not None and entry.key not in keys):
            continue
        if current is None or current.key != entry.key:
            if current is not None:
                yield current
            current = Sample(entry.key, shard)
        current.files[entry.member] = entry.data
    if current is not None:
        yield current


def read_table(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise UserError(f"{path}: not found; is {path.parent} a folder written by `unieditkit build`?")
    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise UserError(f"{path}: unreadable parquet ({type(exc).__name__}); re-run the build to rewrite it") from None


def check_out_dir(out_dir: Path) -> Path:
    if not out_dir.is_dir():
        raise UserError(f"{out_dir}: no such folder; pass the --out folder of `unieditkit build`")
    return out_dir


def index_rows(out_dir: Path, domain: str = "", split: str = "") -> list[dict[str, Any]]:
    """Rows of ``index.parquet`` (written samples), optionally of one domain/split, sorted by key."""
    rows = read_table(check_out_dir(out_dir) / INDEX_FILE)
    rows = [r for r in rows if (not domain or r["domain"] == domain) and (not split or r["split"] == split)]
    return sorted(rows, key=lambda r: r["key"])


def load_samples(out_dir: Path, rows: Iterable[dict[str, Any]]) -> list[Sample]:
    """The samples of ``rows`` (index rows), in the rows' order; each shard is read once."""
    rows = list(rows)
    wanted: dict[str, set[str]] = {}
    for r in rows:
        if not KEY_RE.match(r["key"]):
            raise UserError(f"{out_dir}/index.parquet: key {r['key']!r} is not [a-z0-9_-]; run `unieditkit validate {out_dir}`")
        wanted.setdefault(r["shard"], set()).add(r["key"])
    found: dict[str, Sample] = {}
    for shard, keys in sorted(wanted.items()):
        path = out_dir / f"{shard}{TAR_SUFFIX}"
        if not path.is_file():
            raise UserError(f"{path}: listed in index.parquet but missing; re-run the build")
        found.update((s.key, s) for s in iter_samples(path, keys))
    missing = [r["key"] for r in rows if r["key"] not in found or set(SAMPLE_FILES) - set(found[r["key"]].files)]
    if missing:
        raise UserError(f"{out_dir}: sample {missing[0]} is incomplete or missing from its tar; run `unieditkit validate {out_dir}`")
    return [found[r["key"]] for r in rows]


def done_shards(out: Folder | Path) -> list[dict[str, Any]]:
    """The ``_stats.json`` of every done shard, sorted by shard name (a local folder or object storage)."""
    folder = as_folder(out)
    stats = []
    for name in folder.done_shards():
        try:
            stats.append(json.loads(folder.read_bytes(marker_name(name))))
        except (OSError, ValueError) as exc:
            raise UserError(f"{folder.path(marker_name(name))}: unreadable ({exc}); delete it to have the shard rebuilt") from None
    return stats
