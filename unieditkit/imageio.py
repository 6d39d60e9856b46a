"""Reading and writing images for the build.

All decoding goes through :func:`load_rgb` so that every stage sees the same thing for the same file: an
RGB uint8 array with the EXIF orientation applied. A file that cannot be used raises :class:`ImageReadError`
with a short machine-readable ``reason`` (it becomes the rejection reason in the shard stats) and a human
``detail``; the build records it and goes on.

Encoding is deterministic (fixed quality, no timestamps) so rebuilt shards are byte-identical.
"""

from __future__ import annotations

import io
import os
import warnings

import cv2
import numpy as np
from PIL import Image, ImageOps

from .uri import is_url

JPEG_QUALITY = 92
MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb threshold (~0.25 GB of RGB)
MIN_SIDE = 16


class ImageReadError(Exception):
    """An input image that cannot be used; ``reason`` is a stable key for the stats."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _to_rgb(img: Image.Image) -> Image.Image:
    """Bring any Pillow mode to 8-bit RGB; 16/32-bit greyscale is rescaled instead of clipped to white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = float(arr.max()) if arr.size else 0.0
        scale = 255.0 / hi if hi > 255.0 else 1.0
        img = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


# EXIF orientation -> the same turn as Pillow's ``exif_transpose``, on an array (views; made contiguous once)
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


def _decode_rgb_jpeg(img: Image.Image, data: bytes) -> np.ndarray | None:
    """An RGB JPEG's pixels through OpenCV, or None for anything else (Pillow decodes that).

    Why: Pillow's decode plus its copy into numpy costs 3-5x OpenCV's decode of the same file, and JPEG
    targets are most of a build's input. Both use libjpeg-turbo with the same defaults, so the pixels are the
    same (tested against Pillow, every EXIF orientation included); Pillow still reads the header, so the size
    limit, the mode and the orientation come from it, as for every other format."""
    if img.format != "JPEG" or img.mode != "RGB" or not data.endswith(b"\xff\xd9"):
        return None  # a truncated file (no end marker) is Pillow's to refuse; OpenCV would pad it with grey
    flags = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if arr is None or arr.shape[:2] != (img.height, img.width):
        return None  # truncated or odd files: Pillow's decoder says what is wrong with them
    turn = _ORIENT.get(img.getexif().get(0x0112, 1))
    return np.ascontiguousarray(turn(arr)) if turn else arr


def decode_rgb(data: bytes, name: str = "<bytes>", min_side: int = MIN_SIDE) -> np.ndarray:
    """Decode image bytes to RGB uint8 HxWx3, honouring EXIF orientation and refusing decompression bombs.

    ``min_side`` refuses build inputs too small to hold an object; a finished shard's members were accepted by
    the build already (a reference crop of a small object may be smaller), so readers of a build pass 1."""
    if not data:
        raise ImageReadError("empty_file", f"{name} is 0 bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise ImageReadError(
                        "too_large", f"{name} is {img.width}x{img.height}, above the {MAX_PIXELS} pixel limit"
                    )
                arr = _decode_rgb_jpeg(img, data)
                if arr is None:
                    img.load()
                    ImageOps.exif_transpose(img, in_place=True)  # not a copy of every image that needs no turn
                    rgb = img if img.mode == "RGB" else _to_rgb(img)
                    arr = np.asarray(rgb, dtype=np.uint8)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError("too_large", f"{name}: {exc}") from None
    except Exception as exc:  # Pillow raises many types for corrupt data; all mean "unusable file"
        raise ImageReadError("undecodable", f"{name}: {type(exc).__name__}: {exc}") from None
    if min(arr.shape[:2]) < min_side:
        raise ImageReadError("too_small", f"{name} is {arr.shape[1]}x{arr.shape[0]}, below {min_side} px")
    return arr


def read_bytes(path: str | os.PathLike) -> bytes:
    """Read a file (a local path, or a URL of any fsspec filesystem: ``s3://…``), turning OS errors into an
    :class:`ImageReadError` naming the path."""
    try:
        if is_url(path):
            import fsspec

            with fsspec.open(str(path), "rb") as fh:
                return fh.read()
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ImageReadError("unreadable", f"{path}: {exc.strerror or exc}") from None


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read and decode an image file (see :func:`decode_rgb`)."""
    return decode_rgb(read_bytes(path), str(path))


def encode_jpeg(rgb: np.ndarray) -> bytes:
    """RGB uint8 → JPEG bytes (OpenCV's encoder: same bytes for the same pixels, and fast)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def encode_mask(mask: np.ndarray) -> bytes:
    """Bool/0-1 mask → 8-bit L PNG with values 0/255.

    No row filter and the lowest zlib level: masks are long runs that deflate well anyway, and this is 4-5x
    faster than OpenCV's defaults, which otherwise dominate the build's CPU time (four masks per sample).
    """
    params = [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE, cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, buf = cv2.imencode(".png", (mask if mask.dtype == bool else mask != 0).view(np.uint8) * np.uint8(255), params)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def decode_mask(data: bytes) -> np.ndarray:
    """8-bit PNG mask bytes → bool array (anything above 127 is inside)."""
    arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    if arr is None:
        raise ValueError("mask PNG could not be decoded")
    return arr > 127


def load_label_map(path: str | os.PathLike) -> np.ndarray:
    """A parsing / instance-id PNG as its integer labels (palette indices or grey values), HxW."""
    data = read_bytes(path)
    if not data:
        raise ImageReadError("empty_file", f"{path} is 0 bytes")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.mode not in ("P", "L", "I", "I;16", "I;16B", "I;16L"):
                raise ImageReadError("label_map_not_indexed", f"{path} is mode {img.mode}; a label map must be a palette or greyscale PNG")
            return np.asarray(img).astype(np.int32)
    except ImageReadError:
        raise
    except Exception as exc:  # Pillow raises many types for corrupt data
        raise ImageReadError("undecodable", f"{path}: {type(exc).__name__}: {exc}") from None


def load_mask_uri(uri: str) -> np.ndarray:
    """A mask reference → bool HxW.

    ``PATH`` is a mask image (anything above 127 is inside); ``LABELMAP.png#labels=5,6`` is the union of those
    labels in a parsing map or instance-id map, so sources can point at a garment or a video instance without
    writing mask files.
    """
    from .uri import split_uri

    base, params = split_uri(uri)
    if not params:
        return load_rgb(uri)[..., 0] > 127
    if set(params) != {"labels"}:
        raise ImageReadError("bad_uri", f"{uri}: not a mask reference (PATH or LABELMAP#labels=A,B)")
    try:
        labels = [int(v) for v in params["labels"].split(",")]
    except ValueError:
        raise ImageReadError("bad_uri", f"{uri}: labels must be comma-separated integers") from None
    return np.isin(load_label_map(base), labels)
