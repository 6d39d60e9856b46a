"""A build's output folder, and its inputs' folders: a local path, or ``s3://BUCKET/PREFIX`` through fsspec (s3fs).

Object storage means S3 and the stores that speak its API (MinIO, Ceph, R2, Google Cloud Storage's
interoperability endpoint …), the one kind the project tests (``tests/test_cluster_s3.py`` against moto's
server). Other fsspec schemes are refused by name (``object_store``) instead of half-working: ``gs://`` needs a
package the project does not install, ``hdfs://`` a JVM, and a URL whose scheme fsspec does not know, or that
names no bucket (``s3://``), would otherwise fall through to a local folder called ``s3:``.

Credentials and endpoints come from the standard S3 configuration (the AWS environment variables and config
files; ``AWS_ENDPOINT_URL`` selects an S3-compatible server), on the driver and on every Ray worker alike: a
``Folder`` travels to the workers as its URL only.

How "done" works on each kind:

* local: every file is written under ``NAME.tmp``, fsynced and renamed, so a final name always holds a whole file;
* object storage has no rename, but an object becomes visible only once its upload completed, whole. Files are
  uploaded straight under their final names, and the shard's done marker is uploaded last: a tar or sidecar
  without its marker is left-over work, treated as absent and overwritten by the next run.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

from .errors import UserError
from .format import DONE_MARKER_SUFFIX, done_shard_names
from .uri import is_url

TMP_SUFFIX = ".tmp"
#: URL schemes of the object stores a build reads and writes (fsspec's names for s3fs)
OBJECT_STORE_SCHEMES = ("s3", "s3a")
#: the fix every credential or endpoint problem on object storage ends with
CREDENTIALS_HINT = "set the credentials (and AWS_ENDPOINT_URL for an S3-compatible server) as for boto3"


def object_store(url: str, where: str = "") -> tuple[Any, str]:
    """The fsspec filesystem of an object-storage URL and the path on it, or a ``UserError`` naming ``where``
    (e.g. ``--out s3://``) and the fix. Checks the URL only: nothing is contacted."""
    where = where or url
    scheme, _, rest = url.partition("://")
    if scheme not in OBJECT_STORE_SCHEMES:
        raise UserError(f"{where}: {scheme}:// is not supported; use a local path or s3://BUCKET/PREFIX "
                        "(S3-compatible stores, Google Cloud Storage's interoperability endpoint too, through AWS_ENDPOINT_URL)")
    if not rest.split("/", 1)[0]:
        raise UserError(f"{where}: names no bucket; write {scheme}://BUCKET or {scheme}://BUCKET/PREFIX")
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError:
        raise UserError(f"{where}: reading object storage needs s3fs; pip install s3fs (or unieditkit[s3])") from None


def _fsync_replace(tmp: Path, final: Path) -> None:
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)


class Folder:
    """One output folder; names are file names inside it (no sub-folders)."""

    def __init__(self, url: str | os.PathLike, where: str = "") -> None:
        """``where`` names the folder in errors (e.g. ``--out s3://b``); the default is the URL itself."""
        self.url = str(url).rstrip("/")
        self.local = not is_url(url)
        if self.local:
            import fsspec

            self.fs, root = fsspec.core.url_to_fs(self.url)
        else:
            self.fs, root = object_store(str(url), where)
        self.root = root.rstrip("/")

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return Folder, (self.url,)

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"Folder({self.url!r})"

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def local_path(self, name: str = "") -> Path:
        """A local folder's file (or the folder itself), for the few things only a local disk can do (the lock)."""
        if not self.local:
            raise ValueError(f"{self.url} is not a local folder")
        return Path(self.root) / name if name else Path(self.root)

    def check_store(self, where: str = "") -> None:
        """Object storage: the bucket exists and answers with these credentials, asked before anything is planned.
        A listing cannot tell: a prefix of a missing bucket lists as empty, and the first upload fails only after
        planning."""
        if self.local:
            return
        where = where or self.url
        bucket = self.root.split("/", 1)[0]
        try:
            self.fs.info(bucket)
            self.names()
        except FileNotFoundError:
            raise UserError(f"{where}: there is no bucket '{bucket}'; create it (aws s3 mb s3://{bucket}) or name one that exists") from None
        except Exception as exc:  # botocore raises its own types for missing credentials, a refused request or an unknown host
            raise UserError(f"{where}: cannot list it ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); {CREDENTIALS_HINT}") from None

    def makedirs(self) -> None:
        if self.local:
            Path(self.root).mkdir(parents=True, exist_ok=True)

    def exists(self, name: str) -> bool:
        return bool(self.fs.exists(self.path(name)))

    def read_bytes(self, name: str) -> bytes:
        return bytes(self.fs.cat_file(self.path(name)))

    def size(self, name: str) -> int:
        return int(self.fs.size(self.path(name)))

    def sha256(self, name: str) -> str:
        """SHA-256 of a file, streamed (a shard does not have to fit in memory)."""
        digest = hashlib.sha256()
        with self.fs.open(self.path(name), "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    def names(self, suffix: str = "") -> list[str]:
        """File names in the folder ending with ``suffix``, sorted (a missing folder is empty)."""
        if self.local:
            root = Path(self.root)
            return sorted(p.name for p in root.iterdir() if p.name.endswith(suffix)) if root.is_dir() else []
        try:
            entries = self.fs.ls(self.root, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return sorted(n for n in (e.rstrip("/").rsplit("/", 1)[-1] for e in entries) if n.endswith(suffix))

    def done_shards(self) -> list[str]:
        """Shards whose done marker exists (written last, so their files are complete)."""
        return done_shard_names(self.names(DONE_MARKER_SUFFIX))

    def write_bytes(self, name: str, data: bytes) -> None:
        """Publish a whole file under ``name``: never visible half-written."""
        if self.local:
            final = Path(self.path(name))
            tmp = final.with_name(final.name + TMP_SUFFIX)
            tmp.write_bytes(data)
            _fsync_replace(tmp, final)
        else:
            self.fs.pipe_file(self.path(name), data)

    @contextmanager
    def open_write(self, name: str) -> Iterator[IO[bytes]]:
        """A binary file to stream into; published under ``name`` only when the block ends without an error."""
        if self.local:
            final = Path(self.path(name))
            tmp = final.with_name(final.name + TMP_SUFFIX)
            with open(tmp, "wb") as fh:
                yield fh
            _fsync_replace(tmp, final)
            return
        with tempfile.TemporaryDirectory(prefix="unieditkit-") as staging:
            local = Path(staging) / name
            with open(local, "wb") as fh:
                yield fh
            self.fs.put_file(str(local), self.path(name))

    def remove(self, name: str) -> None:
        self.fs.rm_file(self.path(name))

    def remove_partial_files(self) -> None:
        """Temp files are only ever left by a killed run on a local disk (object storage has none)."""
        for name in self.names(TMP_SUFFIX) if self.local else ():
            Path(self.path(name)).unlink()


def as_folder(out: Folder | str | os.PathLike) -> Folder:
    return out if isinstance(out, Folder) else Folder(out)

