"""Source specs with options and the sources YAML file."""

from __future__ import annotations

from pathlib import Path

import pytest
from sourcedata import write_image, write_video

from unieditkit.pipelines.plan import make_plan
from unieditkit.pipelines.config import OutputSettings
from unieditkit.pipelines.sources import parse_source
from unieditkit.pipelines.sources import load_sources_yaml
from unieditkit.pipelines.sources.config import format_spec, split_spec
from unieditkit.taxonomy import load_taxonomy
from unieditkit.errors import UserError


def test_split_spec_and_format_spec():
    assert split_spec("video:clips/?min_gap_frac=0.2&pairs_per_video=4") == ("video", "clips/", {"min_gap_frac": "0.2", "pairs_per_video": "4"})
    assert split_spec("images:odd?name") == ("images", "odd?name", {})
    assert split_spec("coco:a.json") == ("coco", "a.json", {})
    assert format_spec("video", "c", {"seed": 1, "min_gap_frac": 0.1}) == "video:c?min_gap_frac=0.1&seed=1"
    assert format_spec("x", "p", {"flag": True}) == "x:p?flag=true"
    with pytest.raises(UserError, match="given twice"):
        split_spec("video:c?seed=1&seed=2")


def test_existing_kinds_reject_options(tmp_path: Path):
    with pytest.raises(UserError, match="unknown option 'x' for kind 'coco'; valid options: none"):
        parse_source(f"coco:{tmp_path}/i.json?x=1")


def _tree(tmp_path: Path) -> Path:
    write_video(tmp_path / "data" / "clips" / "a.mp4", 20)
    write_image(tmp_path / "data" / "photos" / "p.jpg")
    return tmp_path / "data"


def test_load_sources_yaml_resolves_paths_and_options(tmp_path: Path):
    data = _tree(tmp_path)
    cfg = data / "sources.yaml"
    cfg.write_text(
        "sources:\n"
        "  - {kind: video, path: clips/, min_gap_frac: 0.25, pairs_per_video: 3}\n"
        f"  - {{kind: images, path: {data / 'photos'}}}\n"
        "  - {kind: hf, path: someone/some-dataset, split: train}\n"
    )
    specs = load_sources_yaml(cfg)
    assert specs == [
        f"video:{data / 'clips'}?min_gap_frac=0.25&pairs_per_video=3",
        f"images:{data / 'photos'}",
        "hf:someone/some-dataset?split=train",
    ]
    source = parse_source(specs[0])
    assert (source.min_gap_frac, source.pairs_per_video, source.seed) == (0.25, 3, 0)
    assert source.describe() == f"video:{data / 'clips'}?cut_threshold=27.0&max_gap_frac=0.5&min_gap_frac=0.25&pairs_per_video=3&seed=0"
    assert len(list(source.units())) == 3


@pytest.mark.parametrize(
    "body,match",
    [
        ("sources: [{kind: vidoe, path: clips}]", r"sources\[0\]\.kind: unknown kind 'vidoe'; did you mean 'video'"),
        ("sources: [{kind: video, path: nope}]", r"sources\[0\]\.path: 'nope' not found"),
        ("sources: [{kind: video}]", r"sources\[0\]\.path: expected a non-empty path"),
        ("sources: [{kind: video, path: clips, gap: 3}]", r"sources\[0\]: unknown option 'gap' for kind 'video'"),
        ("sources: [{kind: video, path: clips, pairs_per_video: lots}]", r"sources\[0\]: option 'pairs_per_video': expected int"),
        ("sources: [{kind: video, path: clips, seed: true}]", r"option 'seed': expected int"),
        ("sources: []", "non-empty 'sources:' list"),
        ("srcs: [{kind: video, path: clips}]", "non-empty 'sources:' list"),
        ("sources: [{kind: video, path: clips}]\nextra: 1", "unknown top-level key 'extra'"),
        ("sources: [video]", r"sources\[0\]: expected a mapping"),
        ("sources: [{kind: video, path: clips", "not valid YAML"),
    ],
)
def test_load_sources_yaml_errors_name_file_and_field(tmp_path: Path, body: str, match: str):
    data = _tree(tmp_path)
    cfg = data / "s.yaml"
    cfg.write_text(body)
    with pytest.raises(UserError, match=match) as err:
        load_sources_yaml(cfg)
    assert str(err.value).startswith(str(cfg)) and "\n" not in str(err.value)


def test_missing_yaml_file(tmp_path: Path):
    with pytest.raises(UserError, match="cannot read the sources file"):
        load_sources_yaml(tmp_path / "none.yaml")


def test_new_sources_plan_with_groups_in_one_split(tmp_path: Path):
    """Detection-pending units survive planning and every group lands in exactly one split."""
    data = _tree(tmp_path)
    for i in range(3):
        write_video(data / "clips" / f"v{i}.mp4", 15 + i)
    sources = [parse_source(f"video:{data / 'clips'}?pairs_per_video=4"), parse_source(f"images:{data / 'photos'}")]
    shards, report = make_plan(sources, load_taxonomy(), "garments", OutputSettings(split_ratios=(0.4, 0.3, 0.3), units_per_shard=5))
    planned = [(s.split, u) for s in shards for u in s.units]
    assert report.units_planned == len(planned) == 4 * 4 + 1
    splits_of: dict[str, set[str]] = {}
    for split, u in planned:
        splits_of.setdefault(u.group_id, set()).add(split)
    assert len(splits_of) == 5 and all(len(v) == 1 for v in splits_of.values())
