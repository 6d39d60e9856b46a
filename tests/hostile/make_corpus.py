"""Generate a corpus of hostile input files and a manifest that references each of them.

``EXPECTED`` says what a build must do with each file: ``"ok"`` (used, possibly after conversion) or the
rejection reason it must record. Run as a script to write the corpus somewhere for manual poking:
``python tests/hostile/make_corpus.py DIR``.
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

W, H = 96, 64


def _photo(seed: int = 0) -> Image.Image:
    """A noisy background with a patterned object in the box x 24..72, y 16..48; every seed looks different
    (the build drops near-duplicates, which would hide what this corpus tests)."""
    rng = np.random.default_rng(seed)
    arr = np.full((H, W, 3), 90, np.uint8) + rng.integers(0, 30, (H, W, 3), dtype=np.uint8)
    yy, xx = np.mgrid[16:48, 24:72]
    angle, period = rng.uniform(0, np.pi), rng.uniform(3, 12)
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) / period * 2 * np.pi) > 0
    arr[16:48, 24:72] = np.where(stripes[..., None], rng.integers(0, 255, 3), rng.integers(0, 255, 3))
    return Image.fromarray(arr)


def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(side: int = 40_000) -> bytes:
    """A small file whose header claims side x side pixels (1.6 G): the decoder must refuse before allocating."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def exif_rotated_jpeg() -> bytes:
    """Stored landscape W x H with EXIF orientation 6 (rotate 90° clockwise): displayed as H x W portrait."""
    img = _photo(1)
    exif = Image.Exif()
    exif[0x0112] = 6
    return _bytes(img, "JPEG", exif=exif.tobytes())


def files() -> dict[str, bytes | None]:
    """name → content (None: made specially, see ``write``)."""
    def jpeg(seed: int) -> bytes:
        return _bytes(_photo(seed), "JPEG", quality=90)

    gray16 = Image.fromarray((np.asarray(_photo(3).convert("L"), np.uint16) * 257).astype(np.uint16))
    palette = _photo(4).convert("P", palette=Image.Palette.ADAPTIVE)
    palette.info["transparency"] = 0
    return {
        "ok.jpg": jpeg(0),
        "zero.jpg": b"",
        "truncated.jpg": jpeg(0)[: len(jpeg(0)) // 3],
        "truncated.png": _bytes(_photo(0), "PNG")[:1500],
        "not_an_image.jpg": b"this is a text file pretending to be a JPEG\n" * 20,
        "cmyk.jpg": _bytes(_photo(2).convert("CMYK"), "JPEG"),
        "gray16.png": _bytes(gray16, "PNG"),
        "palette_alpha.png": _bytes(palette, "PNG"),
        "rgba.png": _bytes(_photo(5).convert("RGBA"), "PNG"),
        "exif_rotated.jpg": exif_rotated_jpeg(),
        "bomb.png": bomb_png(),
        "tiny.png": _bytes(_photo(6).resize((8, 8)), "PNG"),
        "name with spaces.jpg": jpeg(7),
        "ünïcødé 名前.jpg": jpeg(8),
        "new\nline.jpg": jpeg(9),
        "no_permission.jpg": jpeg(10),
        "a_directory.jpg": None,
        "dangling_link.jpg": None,
    }


EXPECTED = {
    "ok.jpg": "ok",
    "zero.jpg": "empty_file",
    "truncated.jpg": "undecodable",
    "truncated.png": "undecodable",
    "not_an_image.jpg": "undecodable",
    "cmyk.jpg": "ok",
    "gray16.png": "ok",
    "palette_alpha.png": "ok",
    "rgba.png": "ok",
    "exif_rotated.jpg": "ok",
    "bomb.png": "too_large",
    "tiny.png": "too_small",
    "name with spaces.jpg": "ok",
    "ünïcødé 名前.jpg": "ok",
    "new\nline.jpg": "ok",
    # root reads any file whatever its mode bits; anyone else gets "permission denied"
    "no_permission.jpg": "ok" if os.geteuid() == 0 else "unreadable",
    "a_directory.jpg": "unreadable",
    "dangling_link.jpg": "unreadable",
}


def write(root: Path) -> Path:
    """Write the corpus and ``manifest.jsonl`` (one annotated object per file); returns the manifest path."""
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, data in files().items():
        path = root / name
        if name == "a_directory.jpg":
            path.mkdir()
        elif name == "dangling_link.jpg":
            path.symlink_to(root / "does-not-exist.jpg")
        else:
            path.write_bytes(data)
        if name == "no_permission.jpg":
            path.chmod(0)
        # the red box of _photo, as a polygon (the EXIF-rotated file is annotated in display orientation)
        poly = [16, 24, 48, 24, 48, 72, 16, 72] if name == "exif_rotated.jpg" else [24, 16, 72, 16, 72, 48, 24, 48]
        lines.append(json.dumps({"image": name, "objects": [{"category": "dress", "polygon": [poly]}]}, ensure_ascii=False))
    manifest = root / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


if __name__ == "__main__":
    print(write(Path(sys.argv[1])))
