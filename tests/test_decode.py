"""RGB JPEGs decode through OpenCV (fast path) with exactly the pixels and orientation Pillow gives."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from unieditkit.imageio import ImageReadError, decode_rgb


def _jpeg(orientation: int, seed: int = 0, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)
    img = Image.fromarray(pixels).resize((160, 96), Image.BICUBIC).convert(mode)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


def _pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow(orientation):
    data = _jpeg(orientation, seed=orientation)
    ours = decode_rgb(data)
    assert ours.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(ours, _pillow(data))
    assert ours.shape[:2] == ((160, 96) if orientation >= 5 else (96, 160))


@pytest.mark.parametrize("variant", ["grey", "trailing-bytes"])
def test_files_off_the_fast_path_still_decode_as_pillow_does(variant):
    data = _jpeg(1, mode="L") if variant == "grey" else _jpeg(1) + b"camera maker notes"
    np.testing.assert_array_equal(decode_rgb(data), _pillow(data))


def test_a_truncated_jpeg_is_refused_not_padded():
    data = _jpeg(1)
    with pytest.raises(ImageReadError) as err:
        decode_rgb(data[: len(data) * 2 // 3], "cut.jpg")
    assert err.value.reason == "undecodable" and "cut.jpg" in err.value.detail
