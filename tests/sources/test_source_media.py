"""images:, video: and multiview: sources on small real folders."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
from sourcedata import frame_index_of, write_image, write_label_map, write_video

from unieditkit.pipelines.plan import split_of
from unieditkit.pipelines.sources import parse_source
from unieditkit.pipelines.sources.multiview import target_views
from unieditkit.pipelines.sources.video import choose_pairs
from unieditkit.errors import UserError
from unieditkit.imageio import ImageReadError, load_mask_uri
from unieditkit.media import load_uri
from unieditkit.uri import split_uri


def units_of(spec: str):
    return list(parse_source(spec).units())


def test_images_source_recursive_sorted_any_case(tmp_path: Path):
    root = tmp_path / "photos"
    for name in ("b.jpg", "A.JPG", "sub/c.PNG", "sub/d.webp", "sub/deeper/e.jpeg", "f.TIFF"):
        write_image(root / name)
    (root / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "readme.txt").write_text("x")
    write_image(root / ".hidden" / "g.jpg")
    write_image(root / ".h.jpg")
    units = units_of(f"images:{root}")
    rels = [u.relative(u.tgt_uri) for u in units]
    assert rels == ["A.JPG", "b.jpg", "broken.jpg", "f.TIFF", "sub/c.PNG", "sub/d.webp", "sub/deeper/e.jpeg"]
    assert [u.unit_id for u in units] == [f"images/photos/{r}" for r in rels]
    assert [u.unit_id for u in units_of(f"images:{root}")] == [u.unit_id for u in units]  # stable
    for u in units:
        assert (u.pair_kind, u.source_kind, u.needs_detection, u.objects, u.ref_uri) == ("self", "images", True, (), "")
        assert u.group_id == u.unit_id and u.source_root == str(root)
    # the unreadable file is a unit; reading it fails with a reason the build records
    with pytest.raises(ImageReadError) as err:
        load_uri(units[2].tgt_uri)
    assert err.value.reason == "undecodable"


def test_images_source_follows_symbolic_links_once(tmp_path: Path):
    """A linked file or folder is input like any other (datasets are often assembled from links); a link back
    up the tree is not followed round, and a dangling link is no file."""
    elsewhere = tmp_path / "elsewhere"
    write_image(elsewhere / "x.jpg")
    root = tmp_path / "photos"
    write_image(root / "a.jpg")
    (root / "linked.jpg").symlink_to(elsewhere / "x.jpg")
    (root / "more").symlink_to(elsewhere, target_is_directory=True)
    (root / "zloop").symlink_to(root, target_is_directory=True)
    (root / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    rels = [u.relative(u.tgt_uri) for u in units_of(f"images:{root}")]
    assert rels == ["a.jpg", "linked.jpg", "more/x.jpg"]


def test_images_source_errors(tmp_path: Path):
    with pytest.raises(UserError, match="not a folder"):
        parse_source(f"images:{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images found"):
        parse_source(f"images:{tmp_path / 'empty'}")


@pytest.mark.parametrize("n,frac,count", [(40, 0.1, 2), (30, 0.5, 5), (10, 0.3, 100), (2, 0.1, 3), (200, 0.25, 7)])
def test_choose_pairs_gap_count_determinism(n: int, frac: float, count: int):
    pairs = choose_pairs(n, frac, count, "clip.mp4", seed=0)
    gap = max(1, math.ceil(frac * n))
    available = (n - gap) * (n - gap + 1) // 2
    assert len(pairs) == min(count, available) and len(set(pairs)) == len(pairs)
    assert all(0 <= a and a + gap <= b < n for a, b in pairs)
    assert pairs == choose_pairs(n, frac, count, "clip.mp4", seed=0)
    assert choose_pairs(1, frac, count, "x", 0) == []


def test_choose_pairs_depends_on_clip_and_seed():
    draws = {tuple(choose_pairs(500, 0.1, 3, key, seed)) for key in ("a.mp4", "b.mp4") for seed in (0, 1)}
    assert len(draws) == 4


def test_video_source_pairs_groups_and_broken_files(clips: Path, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING):
        source = parse_source(f"video:{clips}?pairs_per_video=3&min_gap_frac=0.25")
        units = list(source.units())
    by_video: dict[str, list] = {}
    for u in units:
        by_video.setdefault(u.group_id, []).append(u)
    # walk.mp4 (40 frames), sub/Turn.AVI (30) and the decodable part of cut.avi; empty/garbage/1-frame are skipped
    assert sorted(by_video) == ["video/clips/cut.avi", "video/clips/sub/Turn.AVI", "video/clips/walk.mp4"]
    assert source.skipped == {"video_unreadable": 2, "video_too_short": 1}
    assert "skipped 3 of 6 videos" in caplog.text
    for group, us in by_video.items():
        assert len(us) == 3
        for u in us:
            assert (u.pair_kind, u.needs_detection, u.objects) == ("video", True, ())
            tgt_path, tgt = split_uri(u.tgt_uri)
            ref_path, ref = split_uri(u.ref_uri)
            assert tgt_path == ref_path and group.endswith(u.relative(tgt_path))
            a, b = int(ref["frame"]), int(tgt["frame"])
            n = 40 if "walk" in group else 30 if "Turn" in group else None
            if n:
                assert b - a >= math.ceil(0.25 * n) and b < n
            assert u.unit_id == f"{group}#frames={a}-{b}"
        assert len({split_of(u.group_id, (0.5, 0.25, 0.25)) for u in us}) == 1
    walk = by_video["video/clips/walk.mp4"][0]
    assert walk.relative(walk.tgt_uri).startswith("walk.mp4#frame=")
    assert frame_index_of(load_uri(walk.tgt_uri)) == int(split_uri(walk.tgt_uri)[1]["frame"])
    for u in by_video["video/clips/cut.avi"]:  # pairs of a truncated clip only use frames that decode
        load_uri(u.tgt_uri)
        load_uri(u.ref_uri)
    again = [u.unit_id for u in parse_source(f"video:{clips}?pairs_per_video=3&min_gap_frac=0.25").units()]
    assert again == [u.unit_id for u in units]


def test_video_source_single_file_and_option_errors(clips: Path):
    units = units_of(f"video:{clips / 'walk.mp4'}")
    assert len(units) == 2 and all(u.group_id == "video/clips/walk.mp4" for u in units)
    with pytest.raises(UserError, match="min_gap_frac must be in"):
        parse_source(f"video:{clips}?min_gap_frac=1.5")
    with pytest.raises(UserError, match="unknown option 'pairs'.*did you mean 'pairs_per_video'"):
        parse_source(f"video:{clips}?pairs=2")
    with pytest.raises(UserError, match="option 'pairs_per_video': expected int"):
        parse_source(f"video:{clips}?pairs_per_video=two")
    with pytest.raises(UserError, match="not found"):
        parse_source(f"video:{clips / 'nope'}")


def _annotated_clip(root: Path) -> Path:
    """dog.mp4 (30 frames); masks every 5th frame; instance 1 visible throughout, 2 only in 4 frames, 3 never."""
    clip = write_video(root / "dog.mp4", 30)
    for frame in range(0, 30, 5):
        labels = np.zeros((48, 64), np.uint8)
        labels[10:30, 5 + frame : 20 + frame] = 1
        if frame >= 10:
            labels[35:45, 40:50] = 2
        write_label_map(root / "dog" / f"{frame:05d}.png", labels)
    (root / "dog" / "00031.png").write_bytes(b"broken")
    (root / "dog.json").write_text(json.dumps({"1": "dog", "2": "ball", "3": "cat"}))
    return clip


def test_video_source_with_segmentation_annotation(tmp_path: Path):
    root = tmp_path / "vos"
    _annotated_clip(root)
    write_video(root / "plain.mp4", 20)
    source = parse_source(f"video:{root}?pairs_per_video=2&min_gap_frac=0.3")
    units = list(source.units())
    annotated = [u for u in units if u.group_id == "video/vos/dog.mp4"]
    assert source.skipped_mask_frames == {"undecodable": 1}
    assert {u.objects[0].object_id for u in annotated} == {"1", "2"}  # 3 never appears
    assert len(annotated) == 4
    for u in annotated:
        assert not u.needs_detection and u.pair_kind == "video"
        (obj,) = u.objects
        assert obj.category == {"1": "dog", "2": "ball"}[obj.object_id]
        a, b = int(split_uri(u.ref_uri)[1]["frame"]), int(split_uri(u.tgt_uri)[1]["frame"])
        assert b > a and a % 5 == 0 and b % 5 == 0
        assert u.unit_id == f"video/vos/dog.mp4#frames={a}-{b}&obj={obj.object_id}"
        tgt = load_uri(u.tgt_uri)
        mask = load_mask_uri(obj.mask_uri)
        ref_mask = load_mask_uri(u.ref_mask_uri)
        assert mask.shape == tgt.shape[:2] and mask.any() and ref_mask.any()
        ys, xs = np.nonzero(mask)
        assert obj.bbox == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) and obj.image_size == (64, 48)
    assert [u for u in units if u.group_id == "video/vos/plain.mp4" and u.needs_detection]


def test_video_annotation_errors_name_the_file(tmp_path: Path):
    root = tmp_path / "vos"
    write_video(root / "cat.mp4", 10)
    (root / "cat.json").write_text(json.dumps({"1": "cat"}))
    with pytest.raises(UserError, match=r"cat\.json: found, but the mask folder"):
        units_of(f"video:{root}")
    write_label_map(root / "cat" / "00000.png", np.ones((48, 64), np.uint8))
    (root / "cat.json").write_text(json.dumps({"0": "background"}))
    with pytest.raises(UserError, match=r"cat\.json: entry '0'"):
        units_of(f"video:{root}")
    (root / "cat.json").unlink()
    with pytest.raises(UserError, match="mask folder without cat.json"):
        units_of(f"video:{root}")


def test_target_views():
    assert target_views(1, 0.5, 1) == []
    assert target_views(2, 0.5, 1) == [1]
    assert target_views(31, 0.5, 1) == [15]
    assert target_views(31, 0.5, 3) == [15, 22, 30]
    assert target_views(5, 0.5, 10) == [2, 3, 4]


def test_multiview_source_both_layouts(tmp_path: Path):
    root = tmp_path / "mv"
    for i in range(9):
        write_image(root / "chair" / "obj1" / "images" / f"{i:03d}.jpg")
        write_image(root / "17" / "obj2" / "images" / f"{i:03d}.jpg")
    for i in range(5):
        write_image(root / "flat3" / f"view_{i}.JPG")
    (root / "flat3" / "category.txt").write_text("teapot\n")
    write_image(root / "chair" / "lonely" / "images" / "000.jpg")
    source = parse_source(f"multiview:{root}?pairs_per_object=2")
    units = list(source.units())
    assert source.skipped == {"single_view": 1}
    got = {(u.unit_id, u.group_id, u.category_hint) for u in units}
    assert got == {
        ("multiview/mv/17/obj2#views=000-004", "multiview/mv/17/obj2", ""),
        ("multiview/mv/17/obj2#views=000-008", "multiview/mv/17/obj2", ""),
        ("multiview/mv/chair/obj1#views=000-004", "multiview/mv/chair/obj1", "chair"),
        ("multiview/mv/chair/obj1#views=000-008", "multiview/mv/chair/obj1", "chair"),
        ("multiview/mv/flat3#views=view_0-view_2", "multiview/mv/flat3", "teapot"),
        ("multiview/mv/flat3#views=view_0-view_4", "multiview/mv/flat3", "teapot"),
    }
    for u in units:
        assert (u.pair_kind, u.needs_detection, u.objects) == ("multiview", True, ())
        assert u.relative(u.ref_uri).split("/")[-1] in ("000.jpg", "view_0.JPG")
    assert [u.unit_id for u in parse_source(f"multiview:{root}?pairs_per_object=2").units()] == [u.unit_id for u in units]
    with pytest.raises(UserError, match="no object folders"):
        (tmp_path / "e").mkdir()
        parse_source(f"multiview:{tmp_path / 'e'}")
