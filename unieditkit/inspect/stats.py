"""``unieditkit stats``: what a build contains, as tables on the terminal and one PNG of plots.

Counts per domain × split, pair kind and subcategory; rejections by reason, from ``rejected.parquet`` and
from the shards' ``_stats.json`` side by side (they must agree; ``validate`` says where they do not); the
distribution of mask areas (fine / rough / box, as fractions of the target) and of the rough-vs-fine IoU. The
IoU needs no pixels: MATS rough masks contain the fine mask, so the intersection is the fine mask and
IoU = fine_area / rough_area exactly. Everything comes from the index files, so it is instant on any size.

The plot is drawn with Pillow (no plotting library to install), deterministic for the same folder.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from unieditkit.format import DONE_MARKER_SUFFIX, INDEX_COLUMNS, INDEX_FILE, MASK_VARIANTS, REJECTED_FILE, SPLITS
from unieditkit.reader import check_out_dir, done_shards, read_table

from . import draw

BINS = 20
#: the variants whose covered fraction the index records
AREAS = tuple(v for v in MASK_VARIANTS if f"{v}_area" in INDEX_COLUMNS)


def histogram(values: list[float], bins: int = BINS) -> list[int]:
    """Counts of ``values`` in ``bins`` equal bins over [0, 1] (1.0 goes into the last bin)."""
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int(v * bins)))] += 1
    return counts


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    s = sorted(values)
    return {"n": len(s), "mean": sum(s) / len(s), "median": s[len(s) // 2], "min": s[0], "max": s[-1]}


def compute(out_dir: Path) -> dict[str, Any]:
    """All counts and distributions of a build folder, as plain JSON-able data."""
    check_out_dir(out_dir)
    rows = read_table(out_dir / INDEX_FILE)
    rejected = read_table(out_dir / REJECTED_FILE)
    shards = done_shards(out_dir)
    by_domain: dict[str, Counter] = {}
    for r in rows:
        by_domain.setdefault(r["domain"], Counter())[r["split"]] += 1
    from_stats: Counter = Counter()
    for s in shards:
        from_stats.update(s["rejected"])
    from_parquet = Counter(r["reason"] for r in rejected)
    areas = {a: [r[f"{a}_area"] for r in rows if r[f"{a}_area"] >= 0] for a in AREAS}
    iou = [r["fine_area"] / r["rough_area"] for r in rows if r["rough_area"] > 0 and r["fine_area"] >= 0]
    return {
        "samples": len(rows),
        "rejected": len(rejected),
        "shards": len(shards),
        "domain_split": {d: {sp: c[sp] for sp in SPLITS} for d, c in sorted(by_domain.items())},
        "split": dict(sorted(Counter(r["split"] for r in rows).items())),
        "pair_kind": dict(sorted(Counter(r["pair_kind"] for r in rows).items())),
        "subcategory": dict(sorted(Counter(f"{r['domain']}/{r['subcategory']}" for r in rows).items())),
        "reasons": {k: {REJECTED_FILE: from_parquet[k], DONE_MARKER_SUFFIX: from_stats[k]} for k in sorted(from_parquet | from_stats)},
        "area_hist": {a: histogram(v) for a, v in areas.items()},
        "area": {a: _summary(v) for a, v in areas.items()},
        "iou_hist": histogram(iou),
        "iou": _summary(iou),
    }


def _table(title: str, header: list[str], rows: list[list[Any]]) -> str:
    cells = [header, *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    lines = [title, fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in cells[1:]] or ["(none)"]
    return "\n".join(lines)


def _dist(name: str, s: dict[str, float]) -> list[Any]:
    return [name, s["n"], *(f"{s[k]:.3f}" if s["n"] else "-" for k in ("mean", "median", "min", "max"))]


def format_tables(st: dict[str, Any]) -> str:
    ds = st["domain_split"]
    parts = [
        f"{st['samples']} samples, {st['rejected']} rejected, {st['shards']} shards",
        _table("samples per domain and split", ["domain", *SPLITS, "total"],
               [[d, *c.values(), sum(c.values())] for d, c in ds.items()]),
        _table("samples per pair kind", ["pair kind", "samples"], [[k, n] for k, n in st["pair_kind"].items()]),
        _table("samples per subcategory", ["domain/subcategory", "samples"], [[k, n] for k, n in st["subcategory"].items()]),
        _table("rejections by reason", ["reason", REJECTED_FILE, DONE_MARKER_SUFFIX],
               [[k, v[REJECTED_FILE], v[DONE_MARKER_SUFFIX]] for k, v in st["reasons"].items()]),
        _table("mask area (fraction of the target) and rough-vs-fine IoU", ["", "n", "mean", "median", "min", "max"],
               [_dist(f"{a} area", st["area"][a]) for a in AREAS] + [_dist("IoU(rough, fine)", st["iou"])]),
    ]
    return "\n\n".join(parts)


# ---- plot -------------------------------------------------------------------------------------------------

PANEL_W, PANEL_H = 520, 300
PAD = 14
BAR = (90, 160, 255)


def _frame(d: ImageDraw.ImageDraw, box: tuple[int, int, int, int], title: str) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    d.rectangle(box, fill=draw.PANEL)
    draw.text(d, (x0 + 8, y0 + 6), title, 14)
    return x0 + 8, y0 + 28, x1 - 8, y1 - 8


def bar_rows(items: list[tuple[str, int]], limit: int = 14) -> tuple[list[tuple[str, int]], tuple[int, int] | None]:
    """The bars to draw, largest first, and ``(how many, their total)`` of the items left out. The rest is
    reported as a line of text, never as a bar: summed into one bar it was often the longest, and read as one big
    category."""
    items = sorted(items, key=lambda kv: (-kv[1], kv[0]))
    if len(items) <= limit:
        return items, None
    rest = items[limit - 1 :]
    return items[: limit - 1], (len(rest), sum(n for _, n in rest))


def bars(d: ImageDraw.ImageDraw, box: tuple[int, int, int, int], title: str, items: list[tuple[str, int]], limit: int = 14) -> None:
    """Horizontal bars, largest first, scaled to the largest; when there are too many, the last line says how many
    more there are and their total, in grey text without a bar (``bar_rows``)."""
    x0, y0, x1, y1 = _frame(d, box, title)
    shown, rest = bar_rows(items, limit)
    if not shown:
        draw.text(d, (x0, y0), "(none)", 12, draw.MUTED)
        return
    label_w = 170
    h = min(20, (y1 - y0) // (len(shown) + (rest is not None)))
    top = max(n for _, n in shown) or 1
    for i, (label, n) in enumerate(shown):
        y = y0 + i * h
        draw.text(d, (x0, y + 2), draw.wrap(label, label_w - 6, 12, 1)[0] if label else "(empty)", 12)
        w = round((x1 - x0 - label_w - 50) * n / top)
        d.rectangle((x0 + label_w, y + 3, x0 + label_w + max(w, 1), y + h - 3), fill=BAR)
        draw.text(d, (x0 + label_w + w + 6, y + 2), str(n), 12, draw.MUTED)
    if rest is not None:
        note = f"... and {rest[0]} more, {rest[1]} in all (none larger than the bars above)"
        draw.text(d, (x0, y0 + len(shown) * h + 2), note, 12, draw.MUTED)


def hist(d: ImageDraw.ImageDraw, box: tuple[int, int, int, int], title: str, series: dict[str, tuple[list[int], tuple[int, int, int]]], xlabel: str) -> None:
    """Histograms over [0, 1] as step lines, one colour per series, with a legend."""
    x0, y0, x1, y1 = _frame(d, box, title)
    legend_y = y0
    for name, (_, colour) in series.items():
        d.rectangle((x1 - 90, legend_y + 4, x1 - 80, legend_y + 12), fill=colour)
        draw.text(d, (x1 - 74, legend_y), name, 12)
        legend_y += 16
    px0, py0, px1, py1 = x0 + 30, y0 + 4, x1 - 100, y1 - 30
    d.line((px0, py1, px1, py1), fill=draw.MUTED)
    d.line((px0, py0, px0, py1), fill=draw.MUTED)
    top = max([max(c) for c, _ in series.values() if c] + [1])
    draw.text(d, (x0, py0), str(top), 11, draw.MUTED)
    draw.text(d, (x0, py1 - 12), "0", 11, draw.MUTED)
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = px0 + round(t * (px1 - px0))
        d.line((x, py1, x, py1 + 4), fill=draw.MUTED)
        draw.text(d, (x - 10, py1 + 6), f"{t:g}", 11, draw.MUTED)
    draw.text(d, ((px0 + px1) // 2 - 60, py1 + 18), xlabel, 11, draw.MUTED)
    for counts, colour in series.values():
        n = len(counts)
        points = [(px0, py1)]
        for i, c in enumerate(counts):
            y = py1 - round((py1 - py0) * c / top)
            points += [(px0 + round(i * (px1 - px0) / n), y), (px0 + round((i + 1) * (px1 - px0) / n), y)]
        points.append((px1, py1))
        d.line(points, fill=colour, width=2)


def render_plot(st: dict[str, Any]) -> Image.Image:
    cols, rows = 2, 3
    img = Image.new("RGB", (cols * (PANEL_W + PAD) + PAD, rows * (PANEL_H + PAD) + PAD + 30), draw.BACKGROUND)
    d = ImageDraw.Draw(img)
    draw.text(d, (PAD, 10), f"{st['samples']} samples, {st['rejected']} rejected, {st['shards']} shards", 16)

    def box(i: int) -> tuple[int, int, int, int]:
        x = PAD + (i % cols) * (PANEL_W + PAD)
        y = 30 + PAD + (i // cols) * (PANEL_H + PAD)
        return x, y, x + PANEL_W, y + PANEL_H

    splits = [(f"{dom} {sp}", n) for dom, c in st["domain_split"].items() for sp, n in c.items() if n]
    bars(d, box(0), "samples per domain and split", splits)
    bars(d, box(1), "samples per pair kind", list(st["pair_kind"].items()))
    bars(d, box(2), "samples per subcategory", list(st["subcategory"].items()))
    bars(d, box(3), f"rejections by reason ({DONE_MARKER_SUFFIX})", [(k, v[DONE_MARKER_SUFFIX]) for k, v in st["reasons"].items()])
    hist(d, box(4), "mask area", {a: (st["area_hist"][a], draw.mask_colour(a)) for a in AREAS}, "fraction of the target image")
    hist(d, box(5), "IoU(rough, fine) = fine area / rough area", {"IoU": (st["iou_hist"], BAR)}, "IoU")
    return img


def write_stats(out_dir: Path, out: Path) -> dict[str, Any]:
    st = compute(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    render_plot(st).save(out, format="PNG", optimize=True)
    return st
