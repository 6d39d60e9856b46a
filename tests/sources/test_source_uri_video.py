"""URI fragments, video frame reading and the load_uri / load_mask_uri dispatchers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from sourcedata import frame_index_of, write_image, write_label_map, write_video

from unieditkit import video
from unieditkit.imageio import ImageReadError, load_mask_uri, load_rgb
from unieditkit.media import load_uri
from unieditkit.uri import split_uri, with_fragment


def test_uri_round_trip_and_plain_paths_with_hash():
    uri = with_fragment("/d/clip one.mp4", frame=12)
    assert uri == "/d/clip one.mp4#frame=12"
    assert split_uri(uri) == ("/d/clip one.mp4", {"frame": "12"})
    assert split_uri("/d/parse.png#labels=5,6,7") == ("/d/parse.png", {"labels": "5,6,7"})
    assert split_uri("hf://u/ds#split=train&column=image&row=3") == ("hf://u/ds", {"split": "train", "column": "image", "row": "3"})
    # '#' that is part of a file name is not a fragment
    assert split_uri("/d/photo#1.jpg") == ("/d/photo#1.jpg", {})
    assert split_uri("/d/a#unknown=1") == ("/d/a#unknown=1", {})


@pytest.mark.parametrize("name,frames", [("a.mp4", 25), ("b.avi", 18)])
def test_frame_count_and_read_frame_every_index(tmp_path: Path, name: str, frames: int):
    path = write_video(tmp_path / name, frames)
    assert video.frame_count(path) == frames
    for i in range(frames):
        rgb = video.read_frame(path, i)
        assert rgb.dtype == np.uint8 and rgb.shape == (48, 64, 3)
        assert frame_index_of(rgb) == i
    with pytest.raises(ImageReadError) as err:
        video.read_frame(path, frames)
    assert err.value.reason == "video_frame_unreadable"


def test_truncated_video_counts_only_decodable_frames(clips: Path):
    path = clips / "cut.avi"
    cap = cv2.VideoCapture(str(path))
    announced = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    n = video.frame_count(path)
    assert announced == 30 and 0 < n < 30  # the header lies; the count does not
    assert frame_index_of(video.read_frame(path, n - 1)) == n - 1
    with pytest.raises(ImageReadError, match="video_frame_unreadable"):
        video.read_frame(path, n)


@pytest.mark.parametrize("name", ["empty.mp4", "garbage.mp4", "missing.mp4"])
def test_unopenable_videos_raise_video_unreadable(clips: Path, name: str):
    with pytest.raises(ImageReadError) as err:
        video.frame_count(clips / name)
    assert err.value.reason == "video_unreadable"
    with pytest.raises(ImageReadError) as err:
        video.read_frame(clips / name, 0)
    assert err.value.reason == "video_unreadable"


def test_unreliable_seek_falls_back_to_sequential_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A backend whose seek lands one frame early (and says so) must not return the wrong frame."""
    path = write_video(tmp_path / "c.mp4", 20)
    real = cv2.VideoCapture

    class EarlySeek:
        def __init__(self, p: str) -> None:
            self.cap = real(p)

        def set(self, prop: int, value: float) -> bool:
            return self.cap.set(prop, max(0, value - 1) if prop == cv2.CAP_PROP_POS_FRAMES else value)

        def __getattr__(self, name: str):
            return getattr(self.cap, name)

    monkeypatch.setattr(video.cv2, "VideoCapture", EarlySeek)
    for i in (1, 7, 19):
        assert frame_index_of(video.read_frame(path, i)) == i


def test_load_uri_dispatches(tmp_path: Path):
    img = write_image(tmp_path / "x.png", (32, 20), 200)
    assert np.array_equal(load_uri(str(img)), load_rgb(img))
    clip = write_video(tmp_path / "c.mp4", 12)
    assert frame_index_of(load_uri(with_fragment(str(clip), frame=9))) == 9
    for bad in (f"{clip}#frame=-1", f"{clip}#frame=x", f"{img}#labels=1"):
        with pytest.raises(ImageReadError):
            load_uri(bad)
    with pytest.raises(ImageReadError) as err:
        load_uri(f"{clip}#frame=99")
    assert err.value.reason == "video_frame_unreadable"


@pytest.mark.parametrize("palette", [True, False])
def test_load_mask_uri_labels_and_plain_masks(tmp_path: Path, palette: bool):
    labels = np.zeros((30, 40), np.uint8)
    labels[5:10, 5:10] = 5
    labels[12:20, 5:10] = 6
    labels[22:25, 30:35] = 7
    parse = write_label_map(tmp_path / "p.png", labels, palette=palette)
    assert np.array_equal(load_mask_uri(f"{parse}#labels=5"), labels == 5)
    assert np.array_equal(load_mask_uri(f"{parse}#labels=5,6,7"), labels > 0)
    assert not load_mask_uri(f"{parse}#labels=9").any()
    plain = tmp_path / "m.png"
    cv2.imwrite(str(plain), np.where(labels == 6, 255, 0).astype(np.uint8))
    assert np.array_equal(load_mask_uri(str(plain)), labels == 6)
    rgb = write_image(tmp_path / "rgb.png")
    with pytest.raises(ImageReadError) as err:
        load_mask_uri(f"{rgb}#labels=1")
    assert err.value.reason == "label_map_not_indexed"
    with pytest.raises(ImageReadError):
        load_mask_uri(f"{parse}#labels=a,b")
