"""``unieditkit.raycluster.output_to``: what Ray writes to file descriptors 1 and 2 (its C++ client does not go
through ``sys.stderr``) lands in the log, while the stream it yields still reaches the terminal; ``None`` (what
``--verbose`` passes) leaves the terminal as it is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from unieditkit.raycluster import output_to


def test_ray_output_goes_to_the_log_and_the_yielded_stream_to_the_terminal(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    log = tmp_path / "ray.log"
    with output_to(log) as terminal:
        os.write(1, b"(raylet) stdout line\n")
        os.write(2, b"[W gcs_client.cc:210] stderr line\n")
        terminal.write("unieditkit train: note: shown\n")
    os.write(2, b"after\n")
    out, err = capfd.readouterr()
    assert log.read_text() == "(raylet) stdout line\n[W gcs_client.cc:210] stderr line\n"
    assert out == "" and err == "unieditkit train: note: shown\nafter\n"


def test_verbose_leaves_the_terminal_alone(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    with output_to(None) as terminal:
        os.write(2, b"ray line\n")
        terminal.write("note\n")
        terminal.flush()
    assert capfd.readouterr().err == "ray line\nnote\n" and not list(tmp_path.iterdir())
