"""Source folders and files: a local path, or ``s3://BUCKET/PREFIX`` through fsspec (``unieditkit.storage``).

Sources run on the driver and only *list* their input; the workers read what the work units name
(``unieditkit.imageio.read_bytes``), with credentials and endpoint from the standard S3 configuration (the AWS
environment and config files; ``AWS_ENDPOINT_URL`` selects an S3-compatible server).

A folder is listed once into a :class:`Tree` and every later question (is there a ``cloth/`` folder, which
views does this object have, does ``X.png`` exist) is answered from that listing: on object storage a
question per file would be a request per file. Local folders and object storage fill the same ``Tree``, and
the sources only ever look at relative POSIX paths, so a prefix on S3 gives exactly the units, ids and order
of a copy of it on disk (``tests/test_sources_s3.py`` builds both and compares the shards byte for byte).
A plain path is listed with ``os.walk`` (following symbolic links), a URL with its fsspec filesystem.
"""

from __future__ import annotations

import os
import posixpath
from collections import defaultdict
from pathlib import Path
from typing import IO, Any, Iterable

from unieditkit.errors import UserError
from unieditkit.storage import CREDENTIALS_HINT as HINT
from unieditkit.storage import object_store
from unieditkit.uri import is_url


def filesystem(where: str, url: str) -> tuple[Any, str]:
    """The fsspec filesystem of ``url`` (a URL or a local path) and the path on it; ``where`` (e.g.
    ``images:s3://b/p``) names it in errors."""
    if is_url(url):
        return object_store(url, where)
    import fsspec

    return fsspec.core.url_to_fs(url)


def _unreachable(where: str, exc: Exception) -> UserError:
    """botocore raises its own types for missing credentials, an unknown host or a denied request."""
    return UserError(f"{where}: cannot read it ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); {HINT}")


def is_file(where: str, path: str) -> bool:
    """Whether ``path`` (a local path or a URL) is a file; on object storage a refused or unreachable request is
    an error, not "no such file" (``fs.isfile`` would say False for both)."""
    if not is_url(path):
        return Path(path).is_file()
    fs, target = filesystem(where, path)
    try:
        return fs.info(target)["type"] == "file"
    except FileNotFoundError:
        return False
    except Exception as exc:
        raise _unreachable(where, exc) from None


def open_text(path: str) -> IO[str]:
    """A UTF-8 text file from a local path or a URL, streamed (a manifest may have millions of lines)."""
    if not is_url(path):
        return open(path, encoding="utf-8")
    import fsspec

    return fsspec.open(path, "rt", encoding="utf-8").open()


def read_text(path: str, fix: str) -> str:
    """A small UTF-8 text file (a category name) from a local path or a URL; ``fix`` ends the error."""
    try:
        with open_text(path) as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read ({exc}); {fix}") from None


def normalize(path: str) -> str:
    """A source path as sources name it (in ``describe()``, which a resumed build compares): ``str(Path)`` for a
    local path, as sources always did, and a URL without its trailing slash."""
    return path.rstrip("/") if is_url(path) else str(Path(path))


def join(base: str, rel: str) -> str:
    """``rel`` inside the folder ``base``, spelt the way sources have always spelt local paths (``str(Path)``)."""
    return f"{base.rstrip('/')}/{rel}" if is_url(base) else str(Path(base) / rel)


def parent(path: str) -> str:
    """The folder holding ``path`` (a local path or a URL)."""
    return posixpath.dirname(path.rstrip("/")) if is_url(path) else str(Path(path).parent)


def hidden(rel: str) -> bool:
    """A leading dot anywhere in the relative path (``.DS_Store``, ``.cache/``): never input."""
    return any(part.startswith(".") for part in rel.split("/"))


def _walk(folder: Path) -> tuple[set[str], set[str]]:
    """Files and folders under a local ``folder``, relative. Symbolic links are followed, to files and to folders
    (a dataset's ``image/`` is often a link to where the files live); a folder reached twice (a link back up the
    tree) is listed the first time only, in sorted order, so the listing is the same on every machine."""
    files, folders, seen = set(), set(), set()
    for top, dirs, names in os.walk(folder, followlinks=True):
        dirs.sort()
        real = os.path.realpath(top)
        if real in seen:
            dirs.clear()
            continue
        seen.add(real)
        base = Path(top).relative_to(folder).as_posix()
        for name in dirs:
            folders.add(posixpath.join(base, name) if base != "." else name)
        for name in names:
            if os.path.isfile(os.path.join(top, name)):
                files.add(posixpath.join(base, name) if base != "." else name)
    return files, folders


class Tree:
    """Every file and folder under a source folder, as sorted relative POSIX paths.

    ``url`` is the folder as given, normalised by :func:`normalize`; :meth:`uri` turns a relative path back
    into what the workers read.
    """

    def __init__(self, where: str, url: str, hint: str) -> None:
        """List ``url``; a missing folder (or bucket, or prefix) is a :class:`UserError` ending with ``hint``."""
        self.url = normalize(url)
        if is_url(url):
            fs, root = filesystem(where, url)
            root = root.rstrip("/")
            try:
                found = fs.find(root, withdirs=True, detail=True) if fs.isdir(root) else None
            except Exception as exc:
                raise _unreachable(where, exc) from None
            if found is None:
                raise UserError(f"{where}: not a folder (no such bucket or prefix); {hint}")
            rels = {name: posixpath.relpath(name, root) for name in found if name.rstrip("/") != root}
            files = {rel for name, rel in rels.items() if found[name]["type"] == "file" and not name.endswith("/")}
            folders = {rel for name, rel in rels.items() if found[name]["type"] == "directory"}
            self.name = posixpath.basename(root)
        else:
            folder = Path(url)
            if not folder.is_dir():
                raise UserError(f"{where}: not a folder; {hint}")
            files, folders = _walk(folder)
            self.name = folder.resolve().name
        folders |= {posixpath.dirname(rel) for rel in files} - {""}
        self.files = sorted(files)
        self.folders = frozenset(folders)
        self._file_set = frozenset(files)
        self._by_folder: dict[str, list[str]] = {}
        for rel in self.files:
            self._by_folder.setdefault(posixpath.dirname(rel), []).append(rel)

    def uri(self, rel: str) -> str:
        """What a work unit carries for the file ``rel``: a local path or a URL the workers read."""
        return join(self.url, rel) if rel else self.url

    def is_file(self, rel: str) -> bool:
        return rel in self._file_set

    def is_dir(self, rel: str) -> bool:
        return rel == "" or rel in self.folders

    def find(self, extensions: frozenset[str], under: str = "") -> list[str]:
        """Files under ``under`` (recursively) with one of ``extensions`` (any case), hidden ones skipped; sorted."""
        prefix = f"{under}/" if under else ""
        return [
            rel for rel in self.files
            if rel.startswith(prefix) and posixpath.splitext(rel)[1].lower() in extensions and not hidden(rel[len(prefix):])
        ]

    def children(self, folder: str, extensions: frozenset[str]) -> list[str]:
        """Files directly in ``folder`` with one of ``extensions`` (any case), hidden names skipped; sorted by name."""
        return [
            rel for rel in self._by_folder.get(folder, [])
            if posixpath.splitext(rel)[1].lower() in extensions and not posixpath.basename(rel).startswith(".")
        ]


#: what tells one version of a file from another, best first: S3's ETag, GCS's generation, else a modification time
VERSION_FIELDS = ("ETag", "etag", "generation", "mtime", "LastModified", "last_modified", "updated")


def remote_versions(urls: Iterable[str]) -> dict[str, tuple[int, str]]:
    """Size and version (see ``VERSION_FIELDS``) of each URL that exists, for the build's inputs fingerprint.

    One listing per folder rather than a request per file: s3fs answers it from the listing the source has just
    made, and a manifest's files, which no source lists, cost a listing per folder, not a request each.
    """
    by_folder: dict[str, list[str]] = defaultdict(list)
    for url in set(urls):
        by_folder[posixpath.dirname(url)].append(url)
    found: dict[str, tuple[int, str]] = {}
    for folder, members in sorted(by_folder.items()):
        fs, path = filesystem(folder, folder)
        try:
            listing = {posixpath.basename(info["name"].rstrip("/")): info for info in fs.ls(path, detail=True)}
        except FileNotFoundError:
            continue
        except Exception as exc:
            raise _unreachable(folder, exc) from None
        for url in members:
            info = listing.get(posixpath.basename(url))
            if info is not None and info.get("type") == "file":
                version = next((str(info[k]) for k in VERSION_FIELDS if info.get(k) is not None), "")
                found[url] = (int(info.get("size") or 0), version)
    return found
