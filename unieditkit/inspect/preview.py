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
from unieditkit.format import MASK_VARIANTS, mask_member
from unieditkit.reader import Sample, index_rows, load_samples

from . import draw

COLUMNS = ("reference", "target", "fine", "rough", "box")
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
    """The five images of a row, each fitted into one cell."""
    tgt = draw.fit(sample.rgb("tgt.jpg"), CELL_W, CELL_H)
    fine, rough, box = (sample.mask(mask_member(v)) for v in MASK_VARIANTS)
    green = draw.MASK_COLOURS["fine"]
    return [
        draw.fit(sample.rgb("ref.jpg"), CELL_W, CELL_H),
        tgt,
        draw.overlay(tgt, fine, green),
        draw.overlay(tgt, rough, draw.MASK_COLOURS["rough"], ((fine, green),)),
        draw.overlay(tgt, box, draw.MASK_COLOURS["box"], ((fine, green),)),
    ]


def render_sheet(samples: list[Sample]) -> Image.Image:
    sheet = Image.new("RGB", (SHEET_W, HEADER_H + ROW_H * len(samples)), draw.BACKGROUND)
    d = ImageDraw.Draw(sheet)
    for c, title in enumerate(COLUMNS):
        x = GAP + c * (CELL_W + GAP)
        draw.text(d, (x + 4, 6), title, TEXT_SIZE + 1, draw.MASK_COLOURS.get(title, draw.TEXT))
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
