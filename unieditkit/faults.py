"""Fault injection for reliability tests: make the worker handling a chosen unit die, as a native crash would.

``UNIEDITKIT_CRASH_ON=substr[,substr...]`` kills (``os._exit``) any worker that starts a unit whose id contains
one of the substrings — a poison sample. ``UNIEDITKIT_CRASH_ONCE=substr:MARKER`` does so only while the file
``MARKER`` does not exist (it is created first) — a transient failure that a retry survives. Both are read in
the worker, so they must be in the environment the Ray workers inherit. Unset, this costs one dict lookup.
"""

from __future__ import annotations

import os
from pathlib import Path


def maybe_crash(unit_id: str) -> None:
    always = os.environ.get("UNIEDITKIT_CRASH_ON")
    if always and any(s and s in unit_id for s in always.split(",")):
        os._exit(77)
    once = os.environ.get("UNIEDITKIT_CRASH_ONCE")
    if once:
        needle, _, marker = once.partition(":")
        if needle in unit_id and marker and not Path(marker).exists():
            Path(marker).touch()
            os._exit(77)
