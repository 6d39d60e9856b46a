"""Image model stages in a real Ray build: decodes per image and model constructions, counted in the workers.

Random weights, real GroundingDINO (Swin-T) and SAM code; ``tests/counting_build.py`` logs from inside the Ray
workers. One multi-view object with three pairs that share the reference view, and photos as self pairs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import pytest
import skimage.data

ROOT = Path(__file__).resolve().parent.parent
BUILD = ["--domain", "animals", "--random-weights", "--models", "detect,segment", "--splits", "1,0,0", "--no-progress",
         "--box-threshold", "0.05", "--text-threshold", "0.05", "--min-detector-score", "0"]


def _write(path: Path, rgb) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(cv2.resize(rgb, (256, 192)), cv2.COLOR_RGB2BGR))


def _counting_build(tmp_path: Path, sources: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, list[tuple[int, str, str]]]:
    log = tmp_path / "count.log"
    args = [sys.executable, str(ROOT / "tests" / "counting_build.py"), str(log), "build", *BUILD, "--out", str(tmp_path / "out")]
    for source in sources:
        args += ["--source", source]
    done = subprocess.run(args, capture_output=True, text=True, timeout=900, env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line.split(" ", 2) for line in log.read_text().splitlines()]
    return done, [(int(pid), event, detail) for pid, event, detail in lines]


@pytest.mark.slow
def test_each_image_is_decoded_once_for_all_model_stages_and_once_per_unit_by_pair(tmp_path: Path) -> None:
    cat = skimage.data.chelsea()
    views = tmp_path / "mv" / "cat" / "obj1"
    views.mkdir(parents=True)
    for i in range(6):  # pairs (v0, v3), (v0, v4), (v0, v5): v0 is the reference of all three
        _write(views / f"v{i}.jpg", cat[10 * i : 240 + 10 * i, 20 * i : 320 + 20 * i])
    photos = tmp_path / "photos"
    photos.mkdir()
    _write(photos / "coffee.jpg", skimage.data.coffee())
    done, log = _counting_build(tmp_path, [f"multiview:{tmp_path / 'mv'}?pairs_per_object=3", f"images:{photos}"])
    decodes = Counter(detail for _, event, detail in log if event == "decode")
    # one call of the detect+segment actor decodes each image once; pair decodes each image once per unit
    assert decodes == {"v0.jpg": 1 + 3, "v3.jpg": 2, "v4.jpg": 2, "v5.jpg": 2, "coffee.jpg": 2}, done.stdout
    builds = Counter(detail for _, event, detail in log if event == "build")
    assert builds == {"GroundingDinoDetector": 1, "SamSegmenter": 1}


@pytest.mark.slow
def test_quarantine_reruns_build_each_model_once_per_process(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        _write(photos / f"{name}.jpg", getattr(skimage.data, name)())
    # the poison unit kills the pair task of the only batch, so all four units run again one per Ray task, the
    # poison one last (units run in name order): two processes share the three others
    done, log = _counting_build(tmp_path, [f"images:{photos}"], {"UNIEDITKIT_CRASH_ON": "rocket.jpg"})
    assert "quarantined 1" in done.stdout, done.stdout
    reruns = Counter(pid for pid, event, _ in log if event == "instantiate")
    assert sum(reruns.values()) >= 4 * 4  # four units, four stages each (detect+segment, pair, filter, mats)
    assert max(reruns.values()) >= 2 * 4, f"no process re-ran two units, so reuse was not exercised: {reruns}"
    builds = Counter((pid, detail) for pid, event, detail in log if event == "build")
    assert builds and max(builds.values()) == 1, f"a process built a model twice: {builds}"
