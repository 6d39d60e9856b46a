"""Fault injection for reliability tests: make the worker handling a chosen unit die, as a native crash would.

``UNIEDITKIT_CRASH_ON=substr[,substr...]`` kills (``os._exit``) any worker that starts a unit whose id contains
one of the substrings — a poison sample. ``UNIEDITKIT_CRASH_ONCE=substr:MARKER`` does so only while the file
``MARKER`` does not exist (it is created first) — a transient failure that a retry survives. Both are read in
the worker, so they must be in the environment the Ray workers inherit. Unset, this costs one dict lookup.

``checkpoint(POINT)`` marks a named point of the build (``planned``, ``tar-written``, ``sidecar-written``,
``marker-written``, ``index-written``). ``UNIEDITKIT_KILL_AT=POINT[:N]`` kills the build's whole process group
(driver and Ray) with SIGKILL the N-th time any process of the group reaches POINT (shards are written by several
Ray workers, so the count lives in a file named after the process group), so a test lands a kill exactly there;
a test arms it with ``kill_at(POINT, FOLDER)``, which also names the folder for the counts (a killed build cannot
remove a folder of its own, so a test gives one under its tmp path).
Ray workers run in process groups of their own: ``share_with_workers()``, called by the driver before Ray starts,
passes the driver's group down, and a worker that reaches the point kills that group and then its own;
``UNIEDITKIT_HOLD_AT=POINT:FILE`` creates ``FILE.reached`` and waits (up to 10 minutes) until FILE exists, so a
test can act while the build is parked at a known point.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

_BUILD_GROUP = "UNIEDITKIT_BUILD_PGID"
_KILL_AT = "UNIEDITKIT_KILL_AT"
_COUNTERS = "UNIEDITKIT_CHECKPOINT_COUNTERS"


def kill_at(point: str, counters: Path) -> dict[str, str]:
    """The environment that makes a build SIGKILL itself at ``point`` (``POINT[:N]``), counting in ``counters``
    (created here), for a test to add to the build's environment."""
    counters.mkdir(parents=True, exist_ok=True)
    return {_KILL_AT: point, _COUNTERS: str(counters)}


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


def checkpoint(point: str) -> None:
    kill = os.environ.get(_KILL_AT)
    if kill:
        name, _, nth = kill.partition(":")
        if name == point:
            group = int(os.environ.get(_BUILD_GROUP) or os.getpgid(0))
            if _times_reached(group, point) >= int(nth or 1):
                os.killpg(group, signal.SIGKILL)
                os.killpg(os.getpgid(0), signal.SIGKILL)
    hold = os.environ.get("UNIEDITKIT_HOLD_AT")
    if hold:
        name, _, release = hold.partition(":")
        if name == point and release:
            Path(f"{release}.reached").touch()
            deadline = time.monotonic() + 600
            while not Path(release).exists() and time.monotonic() < deadline:
                time.sleep(0.05)


def share_with_workers() -> None:
    """Record the driver's process group in the environment the Ray workers inherit (only when a kill is armed)."""
    if os.environ.get(_KILL_AT):
        os.environ[_BUILD_GROUP] = str(os.getpgid(0))
        _counter_dir()


def _times_reached(group: int, point: str) -> int:
    """How often the build has reached ``point``, this time included, across its driver and Ray workers.

    The count lives in a file made for this build (its path travels to the workers in the environment); a name
    derived from the process group alone could meet a stale file of an earlier build whose group id was the
    same, and kill at the wrong moment. Appends of one byte are atomic.
    """
    path = Path(_counter_dir()) / f"{group}-{point}"
    with open(path, "ab") as fh:
        fh.write(b".")
    return path.stat().st_size


def _counter_dir() -> str:
    folder = os.environ.get(_COUNTERS)
    if not folder:
        folder = os.environ[_COUNTERS] = tempfile.mkdtemp(prefix="unieditkit-checkpoints-")
    return folder
