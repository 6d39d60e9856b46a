"""Small Pillow drawing helpers shared by the preview sheet, the gallery and the stats plot.

Everything is drawn with Pillow and its built-in font (``ImageFont.load_default(size=...)``), so the pictures
need no plotting library, look the same on every machine with the same Pillow, and are byte-identical for the
same data.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from unieditkit.format import BOX, FINE, MASK_VARIANTS, ROUGH

BACKGROUND = (24, 24, 28)
PANEL = (40, 40, 46)
TEXT = (235, 235, 235)
MUTED = (150, 150, 160)
#: mask colours by drawing: fine green, rough orange, box blue (the same in the sheet, the gallery and the stats plot)
MASK_COLOURS = {FINE: (40, 200, 90), ROUGH: (255, 150, 30), BOX: (60, 140, 255)}


def mask_colour(variant: str) -> tuple[int, int, int]:
    """A mask variant's colour: that of how it is drawn."""
    return MASK_COLOURS[MASK_VARIANTS[variant]]


@functools.lru_cache(maxsize=8)
def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def fit(img: Image.Image, width: int, height: int, resample: Image.Resampling = Image.Resampling.BILINEAR) -> Image.Image:
    """``img`` scaled to fit in width x height, keeping its aspect ratio."""
    scale = min(width / img.width, height / img.height)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, resample)


def paste_centred(canvas: Image.Image, img: Image.Image, box: tuple[int, int, int, int]) -> tuple[int, int]:
    x0, y0, x1, y1 = box
    at = (x0 + (x1 - x0 - img.width) // 2, y0 + (y1 - y0 - img.height) // 2)
    canvas.paste(img, at)
    return at


def outline(mask: Image.Image, width: int = 2) -> Image.Image:
    """The border pixels of an L mask (255 inside), ``width`` px thick, as an L mask."""
    edge = ImageChops.subtract(mask, mask.filter(ImageFilter.MinFilter(3)))
    for _ in range(max(0, width - 1)):
        edge = edge.filter(ImageFilter.MaxFilter(3))
    return edge


def overlay(rgb: Image.Image, mask: np.ndarray, colour: tuple[int, int, int], extra_outlines: tuple[tuple[np.ndarray, tuple[int, int, int]], ...] = (),
            tint: float = 0.35) -> Image.Image:
    """``rgb`` with ``mask`` tinted in ``colour`` and outlined; ``extra_outlines`` are drawn on top (outline only).

    Masks are resized to ``rgb``'s size with nearest-neighbour sampling first, so outlines keep the same
    thickness whatever the original resolution.
    """
    out = rgb.copy()
    m = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), "L").resize(rgb.size, Image.Resampling.NEAREST)
    solid = Image.new("RGB", rgb.size, colour)
    out.paste(Image.blend(out, solid, tint), (0, 0), m)
    out.paste(solid, (0, 0), outline(m))
    for extra, c in extra_outlines:
        e = Image.fromarray(np.where(extra, 255, 0).astype(np.uint8), "L").resize(rgb.size, Image.Resampling.NEAREST)
        out.paste(Image.new("RGB", rgb.size, c), (0, 0), outline(e, 1))
    return out


def wrap(text: str, width: int, size: int, max_lines: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels; the last line ends in "…" when text is left over."""
    f = font(size)
    lines: list[str] = []
    for word in text.split():
        if lines and f.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] += " …"
    return [_clip(line, width, f) for line in lines]


def _clip(text: str, width: int, f: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> str:
    if f.getlength(text) <= width:
        return text
    while text and f.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def text(draw: ImageDraw.ImageDraw, at: tuple[int, int], s: str, size: int, fill: tuple[int, int, int] = TEXT) -> None:
    draw.text(at, s, font=font(size), fill=fill)
