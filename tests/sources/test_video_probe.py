"""Probing clips (frame counts, shots) in parallel Ray tasks with the answers kept in the output folder
(``pipelines/probe.py``): the same units and shards as the source measuring each clip on the driver, no second
measurement on a re-run, and a new one for a clip that changed.

The builds run no model stages (``--models none``): the video units are then rejected as ``no_objects``, but
their keys carry the frame numbers of every pair, so the shards still differ when the plan does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sourcedata import write_cut_video, write_video

import unieditkit.pipelines.build
from unieditkit.pipelines.build import build
from unieditkit.pipelines.config import BuildConfig, ModelStagesConfig, OutputSettings
from unieditkit.pipelines.probe import Probes, probe_sources
from unieditkit.pipelines.sources import WorkUnit, parse_source
from unieditkit.format import PROBES_FILE, SHARD_SUFFIXES
from unieditkit.storage import Folder
from unieditkit.uri import split_uri


@pytest.fixture()
def clips(tmp_path: Path) -> Path:
    """Four clips that give units (one with a hard cut, one truncated, so counted by decoding) and one that cannot be read."""
    root = tmp_path / "clips"
    write_video(root / "walk.mp4", 40)
    write_cut_video(root / "sub" / "cut.avi", 50, cut=25)
    write_video(root / "short.mp4", 30)
    truncated = write_video(root / "truncated.avi", 30)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    (root / "garbage.mp4").write_bytes(b"not a video" * 100)
    return root


def _config(clips: Path, out: Path, domain: str = "animals", options: str = "pairs_per_video=3") -> BuildConfig:
    return BuildConfig(domain=domain, out_dir=str(out), sources=(f"video:{clips}?{options}",), settings=OutputSettings(units_per_shard=4),
                       model_stages=ModelStagesConfig(stages=()), progress=False)


def _shards(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name.endswith(SHARD_SUFFIXES)}


def _pairs(units: list[WorkUnit], clip: str) -> list[tuple[int, int]]:
    """The (reference, target) frame numbers of a clip's units."""
    return [(int(split_uri(u.ref_uri)[1]["frame"]), int(split_uri(u.tgt_uri)[1]["frame"])) for u in units if clip in u.unit_id]


def test_parallel_probes_plan_and_build_what_the_sequential_path_does(clips: Path, tmp_path: Path, ray_local, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(clips, tmp_path / "parallel")
    sequential = parse_source(config.sources[0])
    expected = list(sequential.units())  # no probes handed over: the source measures each clip itself, on the driver
    assert _pairs(expected, "cut.avi") and all((a < 25) == (b < 25) for a, b in _pairs(expected, "cut.avi")), "the cut was found"
    parallel = parse_source(config.sources[0])
    nowhere = tmp_path / "nowhere"
    probes = probe_sources([parallel], Folder(nowhere), config)
    assert (probes.probed, probes.cached) == (5, 0)
    assert list(parallel.units()) == expected and parallel.skipped == sequential.skipped == {"video_unreadable": 1}
    assert not nowhere.exists(), "probing must write nothing: only a build that planned saves the answers"

    summary = build(config)
    assert summary.probes is not None and (summary.probes.probed, summary.probes.cached) == (5, 0)
    assert "probed inputs (frame counts, shots): 5 measured in Ray tasks, 0 taken from probes.json" in summary.lines()
    # the sequential path through the whole build: no probing step, so the source measures on the driver as before
    monkeypatch.setattr(unieditkit.pipelines.build, "probe_sources", lambda sources, out, config: Probes(out))
    build(_config(clips, tmp_path / "sequential"))
    assert len(_shards(tmp_path / "parallel")) >= 6 and _shards(tmp_path / "parallel") == _shards(tmp_path / "sequential")
    assert not (tmp_path / "sequential" / PROBES_FILE).exists()


def test_a_rerun_takes_the_probes_from_the_output_folder(clips: Path, tmp_path: Path, ray_local) -> None:
    out = tmp_path / "out"
    config = _config(clips, out)
    build(config)
    cache = out / PROBES_FILE
    kept, written = cache.read_bytes(), cache.stat().st_mtime_ns
    entries = json.loads(kept)["entries"]
    assert len(entries) == 4 and not any("garbage" in key for key in entries), "an unreadable clip's error is not kept"
    shards = _shards(out)

    again = build(config)
    assert again.probes is not None and (again.probes.probed, again.probes.cached) == (1, 4)  # only the unreadable clip
    assert cache.read_bytes() == kept and cache.stat().st_mtime_ns == written and _shards(out) == shards

    # planning uses the kept answer, not a new measurement: a kept frame count of 12 bounds the clip's pairs
    walk = next(key for key in entries if "walk.mp4" in key)
    entries[walk]["answer"] = {"frames": 12, "shots": [[0, 12]]}
    cache.write_text(json.dumps({"version": 1, "entries": entries}))
    source = parse_source(config.sources[0])
    probe_sources([source], Folder(out), config)
    assert max(map(max, _pairs(list(source.units()), "walk.mp4"))) < 12

    cache.write_text("{not json")
    source = parse_source(config.sources[0])
    probes = probe_sources([source], Folder(out), config)
    assert (probes.probed, probes.cached) == (5, 0)
    assert len(probes.notes) == 1 and f"{PROBES_FILE}: unreadable (JSONDecodeError" in probes.notes[0]


def test_a_changed_clip_or_setting_is_probed_again(clips: Path, tmp_path: Path, ray_local) -> None:
    out = tmp_path / "out"
    build(_config(clips, out))
    write_video(clips / "walk.mp4", 16)  # edited in place: other size and modification time
    summary = build(_config(clips, out, domain="vehicles"))  # another domain into the same folder shares its probes
    assert summary.probes is not None and (summary.probes.probed, summary.probes.cached) == (2, 3)
    entries = json.loads((out / PROBES_FILE).read_text())["entries"]
    assert len(entries) == 4 and next(e for k, e in entries.items() if "walk.mp4" in k)["answer"] == {"frames": 16, "shots": [[0, 16]]}
    source = parse_source(_config(clips, out).sources[0])
    probes = probe_sources([source], Folder(out), _config(clips, out))
    assert (probes.probed, probes.cached) == (1, 4)
    planned = list(source.units())
    assert planned == list(parse_source(_config(clips, out).sources[0]).units()) and max(map(max, _pairs(planned, "walk.mp4"))) < 16

    other = parse_source(_config(clips, out, options="pairs_per_video=3&cut_threshold=0").sources[0])
    probes = probe_sources([other], Folder(out), _config(clips, out))
    assert (probes.probed, probes.cached) == (5, 0), "the cut threshold is part of the key"
