"""Carry reference objects from the reference frame to the target frame of a video pair, by appearance.

Matching detections of two frames far apart on appearance and position alone fails exactly where it matters:
two look-alike objects (two players of one team, a pair of shoes) that moved have the same appearance and the
wrong positions. Following each object through the frames in between tells them apart.

Method (appearance tracking, no weights): every object starts as its box in the reference frame. In each next
frame its position is predicted from its last displacement (constant velocity) and searched for in a window
around the prediction with normalised cross-correlation (``cv2.matchTemplate``, ``TM_CCOEFF_NORMED``) of two
templates, the object in the reference frame and the object in the previous frame (stable against drift and
against slow change of look). The response is lowered with the squared distance from the prediction
(``MOTION_PENALTY`` per box side), so of two equally good look-alikes the one on the object's own path wins.
The box keeps its size. Frames larger than ``TRACK_SIDE`` are tracked downscaled. Deterministic: pure array
operations.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

MOTION_PENALTY = 0.5
MAX_STEPS = 48
#: frames are tracked at most this many pixels on their long side: template matching cost grows with the
#: square of the object's size, and where an object is needs no more detail than this
TRACK_SIDE = 480


def step_indices(a: int, b: int, max_steps: int = MAX_STEPS) -> list[int]:
    """Frames to look at from ``a`` to ``b`` (both included): every frame, or evenly spaced when far apart."""
    n = min(b - a, max_steps)
    return sorted({a + round(i * (b - a) / n) for i in range(n + 1)}) if b > a else [a]


def _window(cx: float, cy: float, half_w: float, half_h: float, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    return (max(0, math.floor(cx - half_w)), max(0, math.floor(cy - half_h)),
            min(w, math.ceil(cx + half_w)), min(h, math.ceil(cy + half_h)))


def _crop(frame: np.ndarray, box: Sequence[float]) -> np.ndarray:
    x0, y0, x1, y1 = _window((box[0] + box[2]) / 2, (box[1] + box[3]) / 2, (box[2] - box[0]) / 2, (box[3] - box[1]) / 2, frame.shape)
    return frame[y0:y1, x0:x1]


def _track_one(frames: Sequence[np.ndarray], box: Sequence[float]) -> tuple[float, float, float, float]:
    first = _crop(frames[0], box)
    bw, bh = first.shape[1], first.shape[0]
    if bw < 2 or bh < 2:
        return tuple(float(v) for v in box)  # type: ignore[return-value]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    vx = vy = 0.0
    previous = first
    for frame in frames[1:]:
        px, py = cx + vx, cy + vy
        reach = 0.75 * max(bw, bh) + math.hypot(vx, vy)
        x0, y0, x1, y1 = _window(px, py, bw / 2 + reach, bh / 2 + reach, frame.shape)
        region = frame[y0:y1, x0:x1]
        if region.shape[0] < bh or region.shape[1] < bw:
            break  # the object left the frame: keep its last position
        response = cv2.matchTemplate(region, first, cv2.TM_CCOEFF_NORMED)
        if previous.shape == first.shape:
            response = 0.5 * (response + cv2.matchTemplate(region, previous, cv2.TM_CCOEFF_NORMED))
        ys, xs = np.mgrid[0 : response.shape[0], 0 : response.shape[1]]
        dist2 = ((x0 + xs + bw / 2 - px) ** 2 + (y0 + ys + bh / 2 - py) ** 2) / float(max(bw, bh) ** 2)
        best = np.unravel_index(int(np.argmax(np.nan_to_num(response, nan=-1.0) - MOTION_PENALTY * dist2)), response.shape)
        nx, ny = x0 + best[1] + bw / 2, y0 + best[0] + bh / 2
        vx, vy, cx, cy = nx - cx, ny - cy, nx, ny
        previous = frame[y0 + best[0] : y0 + best[0] + bh, x0 + best[1] : x0 + best[1] + bw]
    half_w, half_h = (box[2] - box[0]) / 2, (box[3] - box[1]) / 2
    return (cx - half_w, cy - half_h, cx + half_w, cy + half_h)


def track_boxes(frames: Sequence[np.ndarray], boxes: Sequence[Sequence[float]]) -> list[tuple[float, float, float, float]]:
    """Where each of ``boxes`` (xyxy pixels in ``frames[0]``) is in ``frames[-1]``, following it frame by frame.

    ``frames`` are RGB arrays of one size, in time order, from the reference frame to the target frame.
    """
    if not frames:
        raise ValueError("track_boxes: need at least the reference frame")
    if any(f.shape != frames[0].shape for f in frames):
        raise ValueError("track_boxes: frames of one video must have one size")
    h, w = frames[0].shape[:2]
    scale = min(1.0, TRACK_SIDE / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
    tracked = [_track_one(frames, [v * scale for v in box]) for box in boxes]
    return [(x0 / scale, y0 / scale, x1 / scale, y1 / scale) for x0, y0, x1, y1 in tracked]
