"""Joining the Ray cluster a command names (``--ray-address``), and keeping Ray's own output off the terminal.

A failed ``ray.init(address=...)`` is slow and loud: Ray retries for 20 s to minutes while its C++ client writes a
warning line per attempt to the process's stderr, then raises a ``ConnectionError`` whose cause says what went
wrong. So a command asks first, in a second at most, whether a Ray head answers at the address (``check_head``):
nothing listening, or something listening that does not speak gRPC (a hung process, another service), is one line
at once. Only then is ``ray.init`` called (``joining``), with file descriptors 1 and 2 sent to a log file, and
what still fails, the token check above all, becomes one line naming the fix.

Token authentication (Ray 2.60): a local ``ray.init()`` turns it on and writes ``~/.ray/auth_token``; from then on
``ray start --head`` on that machine turns it on too, and a node or driver joins only with ``RAY_AUTH_MODE=token``
and the same token (``RAY_AUTH_TOKEN``, or the file). ``--ray-address auto`` picks the token up by itself on a
node that has the file; an explicit ``HOST:PORT`` never does (Ray's choice: a token is not sent to an address
just because one was typed). The README's multi-node recipe therefore sets the mode and the token on every node.

Alternatives rejected: turning token authentication off for local instances (``RAY_AUTH_MODE=disabled``) would
leave the recipe working by weakening every user's local Ray; reading the address's answer out of Ray's log lines
would depend on their wording.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from .errors import UserError

#: how long a head has to accept a connection and greet it (a gRPC server sends its HTTP/2 settings at once)
ANSWER_SECONDS = 5.0
TOKEN_FIX = ("export RAY_AUTH_MODE=token and the head's token (RAY_AUTH_TOKEN=..., what `ray get-auth-token` prints "
             "on the head) and run again (README 'Multi-node')")


def _host_port(address: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (or ``ray://HOST:PORT``, ``[IPv6]:PORT``) → its parts; None for ``auto`` and what Ray resolves."""
    rest = address.split("://", 1)[-1]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def check_head(address: str, flag: str = "--ray-address") -> None:
    """One line, within ``ANSWER_SECONDS``, when no Ray head answers at ``address``."""
    parts = _host_port(address)
    if parts is None:
        return
    try:
        with socket.create_connection(parts, timeout=ANSWER_SECONDS) as conn:
            conn.settimeout(ANSWER_SECONDS)
            greeting = conn.recv(9)  # an HTTP/2 frame header: length (3 bytes), type (4: SETTINGS), flags, stream
    except socket.gaierror as exc:
        raise UserError(f"{flag} {address}: unknown host ({exc.strerror}); give the head node's HOST:PORT "
                        "(port 6379 unless `ray start --head --port` chose another)") from None
    except TimeoutError:
        greeting = b""
    except OSError as exc:
        raise UserError(f"{flag} {address}: nothing accepts connections there ({exc.strerror or exc}); start the "
                        "cluster with `ray start --head` on that node, or give its HOST:PORT (port 6379 by default)") from None
    if len(greeting) < 4 or greeting[3] != 4:
        raise UserError(f"{flag} {address}: no Ray head answers there (a connection opens but no gRPC greeting comes "
                        f"in {ANSWER_SECONDS:.0f} s); check that HOST:PORT is the head's (`ray start --head` prints it)")


def failure_line(address: str, flag: str, exc: BaseException) -> str:
    """What a failed ``ray.init(address=...)`` means, in one line ending with the fix."""
    chain, cause = [], exc  # Ray wraps the reason: ConnectionError from RuntimeError naming AuthenticationError
    while cause is not None and len(chain) < 8:
        chain.append(f"{type(cause).__name__}: {cause}")
        cause = cause.__cause__ or cause.__context__
    text = " ".join(chain)
    if "AuthenticationError" in text or "InvalidAuthToken" in text or "no authentication token" in text:
        return f"{flag} {address}: the cluster requires token authentication and this process has no valid token; {TOKEN_FIX}"
    if address == "auto":
        return (f"{flag} auto: no running Ray cluster found on this machine; start one (`ray start --head`), give "
                "its HOST:PORT, or leave --ray-address out for a local instance")
    last = " ".join(str(exc).split())[:200]
    return (f"{flag} {address}: cannot join the Ray cluster there ({type(exc).__name__}: {last}); check that it is "
            "the head's HOST:PORT and that this machine runs the same Ray and Python versions")


@contextmanager
def output_to(log: Path | None) -> Iterator[IO[str]]:
    """File descriptors 1 and 2 (Ray's Python logging, its C++ client's lines, the lines workers send the driver)
    appended to ``log`` while the block runs; ``None`` leaves them alone. Yields a stream to the terminal's stderr
    for what the user must still see."""
    if log is None:
        yield sys.stderr
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    terminal = os.fdopen(os.dup(saved[1]), "w", buffering=1)
    try:
        with open(log, "ab") as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield terminal
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        terminal.close()
        for fd in saved:
            os.close(fd)


@contextmanager
def joining(address: str, flag: str = "--ray-address", quiet: bool = True) -> Iterator[None]:
    """Around the ``ray.init`` that joins ``address``: the head is asked first (``check_head``) and a failure is
    a ``UserError`` in one line. ``quiet`` sends Ray's output meanwhile to a temporary file (a failed join writes a
    line per retry); a caller that keeps Ray's output itself (``output_to``) passes False."""
    check_head(address, flag)
    with tempfile.TemporaryDirectory(prefix="unieditkit-ray-") as scratch:
        try:
            with output_to(Path(scratch) / "ray.log" if quiet else None):
                yield
        except Exception as exc:  # ray.init raises ConnectionError, RuntimeError or Ray's own AuthenticationError
            raise UserError(failure_line(address, flag, exc)) from None


def package_for_workers() -> str:
    """A folder named ``unieditkit`` holding the whole package, for Ray's ``py_modules`` on other machines. An
    installed wheel already is one; an editable checkout maps ``unieditkit.pipelines`` etc. to folders beside
    ``unieditkit/`` (``setup.py``), which Ray would not ship, so they are copied into one folder for this process."""
    import unieditkit

    here = Path(unieditkit.__file__).resolve().parent
    if all((here / room / "__init__.py").is_file() for room in unieditkit.ROOMS):
        return str(here)
    staged = Path(tempfile.mkdtemp(prefix="unieditkit-workers-")) / "unieditkit"
    atexit.register(shutil.rmtree, staged.parent, True)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(here, staged, ignore=skip)
    for room in unieditkit.ROOMS:
        module = __import__(f"unieditkit.{room}", fromlist=["_"])
        shutil.copytree(Path(module.__file__).resolve().parent, staged / room, ignore=skip)
    return str(staged)
