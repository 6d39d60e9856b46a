"""``unieditkit preview``: a contact sheet to eyeball a build — one row per sample.

Columns: reference | target | fine | rough | box, the masks tinted and outlined over the target (fine green,
rough orange, box blue; the fine outline is repeated thinly over rough and box so "rough ⊇ fine" and "box =
bbox(fine)" can be seen at a glance). Under each row: subcategory, pair kind, split and key, then the captions
or "(no caption)". Samples are the first ``n`` by key, so the same folder always gives the same sheet.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from unieditkit.errors import UserError
from unieditkit.format import FINE, MASK_VARIANTS, REF_IMAGE, TARGET_IMAGE, mask_member
from unieditkit.reader import Sample, index_rows, load_samples

from . import draw

COLUMNS = ("reference", "target", *MASK_VARIANTS)
CELL_W, CELL_H = 192, 144
GAP = 6
HEADER_H = 26
TEXT_SIZE = 13
LINE_H = 16
CAPTION_LINES = 2
ROW_H = CELL_H + GAP + LINE_H * (1 + CAPTION_LINES) + 2 * GAP
SHEET_W = len(COLUMNS) * (CELL_W + GAP) + GAP


def choose(out_dir: Path, domain: str = "", split: str = "", n: int = 16) -> list[Sample]:
    """The first ``n`` samples by key of ``domain``/``split`` (all when empty)."""
    if n < 1:
        raise UserError(f"--n {n}: must be at least 1")
    rows = index_rows(out_dir, domain, split)
    if not rows:
        what = " ".join(x for x in (domain, split) if x) or "any"
        raise UserError(f"{out_dir}/index.parquet: no samples of {what}; check --domain/--split (see `unieditkit stats {out_dir}`)")
    return load_samples(out_dir, rows[:n])


def caption_text(meta: dict) -> str:
    caps = meta.get("captions") or {}
    parts = [f"{who}: {caps[who]}" for who in ("ref", "tgt") if caps.get(who)]
    return " · ".join(parts) if parts else "(no caption)"


def row_lines(sample: Sample) -> list[str]:
    """The text under a row: one line of labels, then up to ``CAPTION_LINES`` lines of captions."""
    m = sample.meta
    head = f"{m['subcategory']} ({m['subcategory_name']}) · {m['pair_kind']} · {m['split']} · {sample.key}"
    width = SHEET_W - 2 * GAP
    return [draw.wrap(head, width, TEXT_SIZE, 1)[0], *draw.wrap(caption_text(m), width, TEXT_SIZE, CAPTION_LINES)]


def panels(sample: Sample) -> list[Image.Image]:
    """The images of a row (``COLUMNS``), each fitted into one cell; the fine mask outlined on every other variant."""
    tgt = draw.fit(sample.rgb(TARGET_IMAGE), CELL_W, CELL_H)
    fine = ((sample.mask(mask_member(FINE)), draw.mask_colour(FINE)),)
    masks = [draw.overlay(tgt, sample.mask(mask_member(v)), draw.mask_colour(v), () if v == FINE else fine) for v in MASK_VARIANTS]
    return [draw.fit(sample.rgb(REF_IMAGE), CELL_W, CELL_H), tgt, *masks]


def render_sheet(samples: list[Sample]) -> Image.Image:
    sheet = Image.new("RGB", (SHEET_W, HEADER_H + ROW_H * len(samples)), draw.BACKGROUND)
    d = ImageDraw.Draw(sheet)
    for c, title in enumerate(COLUMNS):
        x = GAP + c * (CELL_W + GAP)
        draw.text(d, (x + 4, 6), title, TEXT_SIZE + 1, draw.mask_colour(title) if title in MASK_VARIANTS else draw.TEXT)
    for r, sample in enumerate(samples):
        y = HEADER_H + r * ROW_H
        for c, img in enumerate(panels(sample)):
            x = GAP + c * (CELL_W + GAP)
            d.rectangle((x, y, x + CELL_W - 1, y + CELL_H - 1), fill=draw.PANEL)
            draw.paste_centred(sheet, img, (x, y, x + CELL_W, y + CELL_H))
        ty = y + CELL_H + GAP
        for i, line in enumerate(row_lines(sample)):
            draw.text(d, (GAP, ty + i * LINE_H), line, TEXT_SIZE, draw.TEXT if i == 0 else draw.MUTED)
    return sheet


def write_preview(out_dir: Path, out: Path, domain: str = "", split: str = "", n: int = 16) -> list[Sample]:
    """Render the sheet of the first ``n`` samples to ``out`` (PNG); returns the samples shown."""
    samples = choose(out_dir, domain, split, n)
    out.parent.mkdir(parents=True, exist_ok=True)
    render_sheet(samples).save(out, format="PNG", optimize=True)
    return samples
