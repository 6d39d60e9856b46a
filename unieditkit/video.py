"""Reading single frames of video files with OpenCV, robust to the ways real video files lie.

Container headers are often wrong: a truncated download still announces its full frame count, some formats
only estimate it, and seeking (``CAP_PROP_POS_FRAMES``) can land on the wrong frame or fail near the end.
So :func:`frame_count` checks that the last announced frame really decodes and otherwise counts frames one by
one, and :func:`read_frame` checks the position after a seek and falls back to decoding from the start.
Failures are :class:`~unieditkit.imageio.ImageReadError` so that the build records them like a bad image.
:func:`read_frames` reads a run of frames in one decoding pass, for tracking an object from one frame to another.
:func:`shots` finds the hard cuts, so that no pair is made of two frames of different shots.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import cv2
import numpy as np

from .imageio import MIN_SIDE, ImageReadError

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})


@contextmanager
def _capture(path: str | os.PathLike) -> Iterator[cv2.VideoCapture]:
    if not os.path.isfile(path):
        raise ImageReadError("video_unreadable", f"{path}: no such file")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ImageReadError("video_unreadable", f"{path}: OpenCV cannot open it (empty, truncated or unknown codec)")
        yield cap
    finally:
        cap.release()


def _count_by_decoding(path: str | os.PathLike) -> int:
    with _capture(path) as cap:
        n = 0
        while cap.grab():
            n += 1
        return n


def frame_count(path: str | os.PathLike) -> int:
    """Number of frames that actually decode (0 for a video that opens but has none).

    Trusts the header only after decoding its last frame; otherwise decodes the whole file to count. Raises
    ``ImageReadError("video_unreadable")`` when the file cannot be opened at all.
    """
    with _capture(path) as cap:
        announced = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if announced > 0:
            cap.set(cv2.CAP_PROP_POS_FRAMES, announced - 1)
            ok, frame = cap.read()
            if ok and frame is not None and not cap.grab():
                return announced
    return _count_by_decoding(path)


def _to_rgb(frame: np.ndarray, path: str | os.PathLike, index: int) -> np.ndarray:
    if frame.ndim == 2:
        rgb = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    else:
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    if min(rgb.shape[:2]) < MIN_SIDE:
        raise ImageReadError("too_small", f"{path}#frame={index} is {rgb.shape[1]}x{rgb.shape[0]}, below {MIN_SIDE} px")
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def read_frame(path: str | os.PathLike, index: int) -> np.ndarray:
    """Frame ``index`` (0-based) as RGB uint8 HxWx3.

    Seeks first (fast); if the read fails or the reported position afterwards is not ``index + 1``, decodes
    sequentially from the start instead (slow but exact). Raises ``ImageReadError("video_frame_unreadable")``
    when the frame does not exist or does not decode.
    """
    if index < 0:
        raise ImageReadError("video_frame_unreadable", f"{path}#frame={index}: negative frame index")
    with _capture(path) as cap:
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = cap.read()
        if ok and frame is not None and int(cap.get(cv2.CAP_PROP_POS_FRAMES)) == index + 1:
            return _to_rgb(frame, path, index)
    with _capture(path) as cap:
        for decoded in range(index):
            if not cap.grab():
                raise ImageReadError("video_frame_unreadable", f"{path}#frame={index}: the video ends after {decoded} frames")
        ok, frame = cap.read()
        if not ok or frame is None:
            raise ImageReadError("video_frame_unreadable", f"{path}#frame={index}: the video ends after {index} frames")
        return _to_rgb(frame, path, index)


def _grab_at(cap: cv2.VideoCapture, index: int) -> bool:
    """Seek ``cap`` to ``index`` and grab it; False when the seek did not land exactly there."""
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    return cap.grab() and int(cap.get(cv2.CAP_PROP_POS_FRAMES)) == index + 1


def read_frames(path: str | os.PathLike, indices: list[int]) -> list[np.ndarray]:
    """Frames ``indices`` (sorted, distinct, 0-based) as RGB arrays, decoded in one sequential pass.

    Seeks once to the first index (checked like :func:`read_frame`, else decodes from the start) and then only
    grabs forward, so reading the frames between two frames of a pair costs one pass over them, not one seek
    per frame. Raises ``ImageReadError("video_frame_unreadable")`` when a frame does not decode.
    """
    if not indices:
        return []
    if indices != sorted(set(indices)) or indices[0] < 0:
        raise ValueError(f"read_frames: indices must be sorted, distinct and non-negative, got {indices[:5]}")
    wanted = set(indices)
    with _capture(path) as seeking:
        if _grab_at(seeking, indices[0]):
            return _collect(path, seeking, indices[0], indices[-1], wanted)
    with _capture(path) as cap:
        if not cap.grab():
            raise ImageReadError("video_frame_unreadable", f"{path}#frame=0: the video has no frames")
        return _collect(path, cap, 0, indices[-1], wanted)


def _collect(path: str | os.PathLike, cap: cv2.VideoCapture, position: int, last: int, wanted: set[int]) -> list[np.ndarray]:
    """Retrieve the wanted frames from ``position`` (already grabbed) up to ``last``, grabbing forward."""
    frames = []
    while True:
        if position in wanted:
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                raise ImageReadError("video_frame_unreadable", f"{path}#frame={position}: does not decode")
            frames.append(_to_rgb(frame, path, position))
        if position == last:
            return frames
        if not cap.grab():
            raise ImageReadError("video_frame_unreadable", f"{path}#frame={last}: the video ends after {position + 1} frames")
        position += 1


#: PySceneDetect's ContentDetector: a cut where the mean HSV change between consecutive frames exceeds the
#: threshold (its default, 27, on a 0-255 scale), at least MIN_SHOT_FRAMES after the previous cut
DEFAULT_CUT_THRESHOLD = 27.0
MIN_SHOT_FRAMES = 15


def shots(path: str | os.PathLike, n_frames: int, threshold: float = DEFAULT_CUT_THRESHOLD) -> list[tuple[int, int]]:
    """The shots of a video as ``[start, end)`` frame ranges covering ``range(n_frames)``, in order.

    Cuts come from PySceneDetect's ``ContentDetector`` (``threshold``; ``0`` turns detection off: one shot).
    A cut the detector places beyond ``n_frames`` (the frames that decode, see :func:`frame_count`) is dropped.
    Detection decodes the whole video; a build keeps the result in its output folder (``pipelines/probe.py``),
    keyed by :func:`shot_settings` among others, so a resume does not detect again.
    """
    if threshold <= 0 or n_frames <= 1:
        return [(0, n_frames)] if n_frames > 0 else []
    cuts = _detect_cuts(path, threshold)
    bounds = [0, *sorted(c for c in set(cuts) if 0 < c < n_frames), n_frames]
    return list(zip(bounds[:-1], bounds[1:]))


def shot_settings(threshold: float) -> str:
    """Everything besides the file's bytes that decides what :func:`shots` returns, for the key of a cached result."""
    import scenedetect

    return f"cut_threshold={float(threshold)!r}&min_shot_frames={MIN_SHOT_FRAMES}&scenedetect={scenedetect.__version__}"


def _detect_cuts(path: str | os.PathLike, threshold: float) -> list[int]:
    from scenedetect import ContentDetector, detect
    from scenedetect.video_stream import VideoOpenFailure

    try:
        scenes = detect(str(path), ContentDetector(threshold=threshold, min_scene_len=MIN_SHOT_FRAMES), start_in_scene=True)
    except VideoOpenFailure as exc:
        raise ImageReadError("video_unreadable", f"{path}: PySceneDetect cannot open it ({exc})") from None
    return [int(start.frame_num) for start, _ in scenes[1:]]
