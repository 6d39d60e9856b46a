"""Small real inputs for the source tests (helpers; the fixtures are in conftest.py), written with OpenCV / Pillow into the test's tmp folder.

Videos encode their frame number in the pixels (its 8 bits as 8 black/white vertical bands), so a test can
tell which frame a read returned even after lossy compression. ``mp4v`` (.mp4) and ``MJPG`` (.avi) are the
codecs OpenCV's bundled FFmpeg writes here; H.264 (``avc1``) is not available in the wheel.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

BAND = 8
FRAME_SIZE = (64, 48)  # width, height
FOURCC = {".mp4": "mp4v", ".avi": "MJPG"}


def write_video(path: Path, frames: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = FRAME_SIZE
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC[path.suffix.lower()]), 10, (w, h))
    assert writer.isOpened(), f"OpenCV cannot write {path.suffix} here"
    for i in range(frames):
        bits = np.array([(i >> b) & 1 for b in range(w // BAND)], np.uint8) * 255
        writer.write(np.repeat(np.repeat(bits, BAND)[None, :, None], h, axis=0).repeat(3, axis=2))
    writer.release()
    return path


def frame_index_of(rgb: np.ndarray) -> int:
    """The frame number a frame written by :func:`write_video` encodes."""
    bands = rgb.mean(axis=(0, 2)).reshape(-1, BAND).mean(axis=1)
    return sum(1 << b for b, level in enumerate(bands) if level > 127)


def write_image(path: Path, size: tuple[int, int] = (40, 30), value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)
    return path


def write_label_map(path: Path, labels: np.ndarray, palette: bool = True) -> Path:
    """An index PNG as the datasets ship them: palette mode (DAVIS, VITON-HD) or plain greyscale (DressCode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(labels.astype(np.uint8), mode="L")
    if palette:
        img = img.convert("P")
        img.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)])
    img.save(path)
    return path


def write_cut_video(path: Path, frames: int, cut: int) -> Path:
    """A clip with one hard cut at frame ``cut`` that PySceneDetect finds: a flat colour that changes at the cut,
    crossed by a white column moving one pixel a frame (so consecutive frames differ, but only a little)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = FRAME_SIZE
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC[path.suffix.lower()]), 10, (w, h))
    assert writer.isOpened(), f"OpenCV cannot write {path.suffix} here"
    for i in range(frames):
        frame = np.empty((h, w, 3), np.uint8)
        frame[:] = (30, 180, 60) if i < cut else (200, 40, 160)
        frame[:, i % w] = 255
        writer.write(frame)
    writer.release()
    return path
