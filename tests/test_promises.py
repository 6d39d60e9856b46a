"""README "Guarantees", each tested as worded: SIGKILL at several named points, a second real build process, an
input edited in place between a killed build and its resume.

The kill points are reached through ``unieditkit.faults.checkpoint`` (``UNIEDITKIT_KILL_AT=POINT[:N]`` kills the
build's whole process group with SIGKILL the N-th time POINT is reached; ``UNIEDITKIT_HOLD_AT=POINT:FILE`` parks
the build there until FILE exists), so each test lands exactly where it says instead of after a guessed delay.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import cv2
import pytest

from buildproc import build_cmd
from unieditkit.faults import kill_at
from unieditkit.format import BUILD_CONFIG_FILE, CARD_FILE, INDEX_FILE, REJECTED_FILE

FINAL_NAMES = ("*.tar", "*.parquet", "*_stats.json", CARD_FILE, BUILD_CONFIG_FILE)
pytestmark = pytest.mark.slow  # each test runs real build processes
#: one kill at each named point, each run resuming the folder the one before it was killed in: the first run
#: dies after planning, the second after its 2nd tar, the third after the sidecar of the shard it redoes, ...
KILL_POINTS = ("planned", "tar-written:2", "sidecar-written:1", "marker-written:1", "index-written")


def _final_files(out: Path) -> dict[str, bytes]:
    """Every file under a final name (shards, sidecars, markers, index, rejected, card, build config)."""
    return {p.name: p.read_bytes() for pattern in FINAL_NAMES for p in sorted(out.glob(pattern))}


@pytest.fixture(scope="module")
def reference(coco_reference: Path) -> dict[str, bytes]:
    return _final_files(coco_reference)


def test_sigkill_at_each_point_then_rerun_equals_uninterrupted_build(coco_source: Path, reference: dict[str, bytes], tmp_path: Path) -> None:
    out = tmp_path / "out"
    for point in KILL_POINTS:
        env = {**os.environ, **kill_at(point, tmp_path / "kill-counts" / point.replace(":", "-"))}
        proc = subprocess.run(build_cmd(coco_source, out), env=env, capture_output=True, timeout=300, start_new_session=True)
        assert proc.returncode == -9, f"the build was not killed at {point} (exit {proc.returncode}): {proc.stderr[-500:]!r}"
        for name, data in _final_files(out).items():
            assert data == reference[name], f"killed at {point}: {name} is visible under its final name but is not the finished file"
        if point == "planned":
            assert not list(out.glob("*.tar")), "planning wrote a shard"
        if point == "index-written":  # every shard is done: the folder tables are final, the card not yet written
            assert {INDEX_FILE, REJECTED_FILE} <= set(_final_files(out)) and not (out / CARD_FILE).exists()
    subprocess.run(build_cmd(coco_source, out), check=True, capture_output=True, timeout=300)
    assert _final_files(out) == reference
    assert not list(out.glob("*.tmp"))


def test_a_second_build_process_is_refused_while_the_first_runs(coco_source: Path, reference: dict[str, bytes], tmp_path: Path) -> None:
    out, release = tmp_path / "out", tmp_path / "release"
    env = {**os.environ, "UNIEDITKIT_HOLD_AT": f"planned:{release}"}
    first = subprocess.Popen(build_cmd(coco_source, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        reached = Path(f"{release}.reached")
        deadline = time.monotonic() + 120
        while not reached.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert reached.exists(), "the first build never reached its hold point"
        second = subprocess.run(build_cmd(coco_source, out), capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert "another build is writing here" in second.stderr and second.stderr.count("\n") == 1
        release.touch()
        assert first.wait(timeout=300) == 0
    finally:
        first.kill()
    assert _final_files(out) == reference


def test_an_input_edited_in_place_after_a_kill_refuses_the_resume(coco_source: Path, tmp_path: Path) -> None:
    shutil.copytree(coco_source.parent, tmp_path / "src")
    source = tmp_path / "src" / coco_source.name
    out = tmp_path / "out"
    env = {**os.environ, **kill_at("marker-written:1", tmp_path / "kill-counts")}
    assert subprocess.run(build_cmd(source, out), env=env, capture_output=True, timeout=300, start_new_session=True).returncode == -9
    image = source.parent / "images" / "synthetic_garments_005.jpg"
    pixels = cv2.imread(str(image))
    cv2.imwrite(str(image), 255 - pixels)  # same name, other content
    resumed = subprocess.run(build_cmd(source, out), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 2
    assert "different inputs" in resumed.stderr and "build_config.json" in resumed.stderr
