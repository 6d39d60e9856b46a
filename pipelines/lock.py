"""One build at a time per output folder.

Two builds writing the same shards would race on the temp files and on the index. An advisory ``flock`` on
``OUT/.lock`` is held for the whole build; the kernel drops it when the process dies, even by SIGKILL, so a
crashed build never leaves a stale lock behind (unlike a pid file). The file itself stays empty and
untouched, so a no-op re-run changes nothing in the folder.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from unieditkit.errors import UserError

LOCK_NAME = ".lock"


@contextmanager
def build_lock(out: Path) -> Iterator[None]:
    path = out / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{out}: another build is writing here (it holds {path}); wait for it to finish or use another --out") from None
        yield
    finally:
        os.close(fd)
