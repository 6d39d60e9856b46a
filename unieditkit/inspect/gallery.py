"""``unieditkit gallery``: a static HTML gallery of a build, opened straight from disk (no server, no CDN).

``GALLERY/index.html`` holds the samples' metadata inline (a ``file://`` page may not fetch side files) and a
few lines of plain JavaScript: select boxes filter the cards by domain, subcategory, pair kind and split, and a
click opens the sample full size (reference, target, fine / rough / box overlays, raw masks) with its JSON.
Filters can also be given in the URL (``index.html?domain=garments&subcategory=dress``) and a sample opened by
its key (``index.html#KEY``), so a view can be bookmarked or shared.

Which samples: the first ``per_subcategory`` by key of every (domain, subcategory), so every subcategory is
represented however large the build, and the same folder always gives the same gallery. Thumbnails and
full-size pictures are written next to the HTML (``thumbs/KEY.jpg``, ``full/KEY/*``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from PIL import Image

from unieditkit.errors import UserError
from unieditkit.format import FINE, MASK_MEMBERS, MASK_VARIANTS, MEMBERS, REF_IMAGE, TARGET_IMAGE, mask_member
from unieditkit.reader import Sample, index_rows, load_samples

from . import draw

THUMB_H = 120
FILTERS = ("domain", "subcategory", "pair_kind", "split")
OVERLAYS = MASK_VARIANTS
#: the pictures of a sample's detail view: two members as stored, then each variant's overlay (``write_sample_files``)
FIGURES = [[REF_IMAGE, "reference"], [TARGET_IMAGE, "target"], *([f"{v}.jpg", f"{v} mask"] for v in OVERLAYS)]


def pick_rows(out_dir: Path, per_subcategory: int) -> list[dict[str, Any]]:
    """The first ``per_subcategory`` index rows by key of every (domain, subcategory), in key order."""
    if per_subcategory < 1:
        raise UserError(f"--per-subcategory {per_subcategory}: must be at least 1")
    taken: dict[tuple[str, str], int] = defaultdict(int)
    rows = []
    for r in index_rows(out_dir):
        group = (r["domain"], r["subcategory"])
        if taken[group] < per_subcategory:
            taken[group] += 1
            rows.append(r)
    if not rows:
        raise UserError(f"{out_dir}/index.parquet: no samples; build some first (`unieditkit build --domain D --out {out_dir}`)")
    return rows


def thumbnail(sample: Sample) -> Image.Image:
    """Reference and target side by side, the fine mask outlined on the target."""
    tgt = sample.rgb(TARGET_IMAGE)
    tgt = draw.overlay(draw.fit(tgt, 10_000, THUMB_H), sample.mask(mask_member(FINE)), draw.mask_colour(FINE), tint=0.0)
    ref = draw.fit(sample.rgb(REF_IMAGE), 10_000, THUMB_H)
    out = Image.new("RGB", (ref.width + 4 + tgt.width, THUMB_H), draw.BACKGROUND)
    out.paste(ref, (0, 0))
    out.paste(tgt, (ref.width + 4, 0))
    return out


def write_sample_files(sample: Sample, gallery: Path) -> None:
    full = gallery / "full" / sample.key
    full.mkdir(parents=True, exist_ok=True)
    for member in MEMBERS:
        (full / member).write_bytes(sample.files[member])
    tgt = sample.rgb(TARGET_IMAGE)
    fine = sample.mask(mask_member(FINE))
    for variant in OVERLAYS:
        mask = sample.mask(mask_member(variant))
        extra = () if variant == FINE else ((fine, draw.mask_colour(FINE)),)
        draw.overlay(tgt, mask, draw.mask_colour(variant), extra).save(full / f"{variant}.jpg", quality=88)
    thumbnail(sample).save(gallery / "thumbs" / f"{sample.key}.jpg", quality=85)


def card_data(sample: Sample) -> dict[str, Any]:
    m = sample.meta
    return {"key": sample.key, "shard": sample.shard, **{f: m[f] for f in FILTERS}, "name": m["subcategory_name"], "json": m}


def page(cards: list[dict[str, Any]], title: str) -> str:
    # "<" escaped inside the inline JSON, so no string in the data can close the <script> element
    data = json.dumps(cards, ensure_ascii=False, sort_keys=True).replace("<", "\\u003c")
    return _TEMPLATE.replace("__TITLE__", _html_escape(title)).replace("__RAW__", json.dumps(list(MASK_MEMBERS))).replace("__FIGURES__", json.dumps(FIGURES)).replace("__DATA__", data)


def _html_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def write_gallery(out_dir: Path, gallery: Path, per_subcategory: int = 24) -> Path:
    """Write the gallery for ``out_dir`` into ``gallery``; returns the path of ``index.html``."""
    samples = load_samples(out_dir, pick_rows(out_dir, per_subcategory))
    (gallery / "thumbs").mkdir(parents=True, exist_ok=True)
    for sample in samples:
        write_sample_files(sample, gallery)
    html = gallery / "index.html"
    html.write_text(page([card_data(s) for s in samples], f"unieditkit gallery: {out_dir.resolve().name}"), encoding="utf-8")
    return html


_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>
body { background: #18181c; color: #ebebeb; font: 14px system-ui, sans-serif; margin: 0; }
header { position: sticky; top: 0; background: #26262c; padding: 8px 12px; display: flex; gap: 12px; align-items: center; flex-wrap: wrap; z-index: 1; }
header label { color: #aaa; }
select { background: #333; color: #eee; border: 1px solid #555; padding: 2px 4px; }
#status { margin-left: auto; color: #aaa; }
#cards { display: flex; flex-wrap: wrap; gap: 10px; padding: 12px; }
.card { background: #28282e; border-radius: 4px; padding: 6px; cursor: pointer; width: min-content; }
.card:hover { outline: 2px solid #3c8cff; }
.card[hidden] { display: none; }
.card img { height: 120px; display: block; }
.card .name { margin-top: 4px; white-space: nowrap; }
.card .sub { color: #999; font-size: 12px; white-space: nowrap; }
#detail { position: fixed; inset: 0; background: rgba(16, 16, 20, 0.985); overflow: auto; padding: 12px 20px; z-index: 2; }
#detail[hidden] { display: none; }
#detail .bar { display: flex; gap: 12px; align-items: center; }
#detail .imgs { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0; }
#detail figure { margin: 0; }
#detail figure img { max-width: 46vw; max-height: 60vh; display: block; }
#detail figcaption { color: #aaa; margin-top: 2px; }
#detail a { color: #7fb0ff; margin-right: 8px; }
#detail pre { background: #222228; padding: 8px; white-space: pre-wrap; }
button { background: #3c3c44; color: #eee; border: 1px solid #666; padding: 3px 10px; cursor: pointer; }
</style>
</head>
<body>
<header>
  <strong>__TITLE__</strong>
  <label>domain <select id="f-domain" data-field="domain"></select></label>
  <label>subcategory <select id="f-subcategory" data-field="subcategory"></select></label>
  <label>pair kind <select id="f-pair_kind" data-field="pair_kind"></select></label>
  <label>split <select id="f-split" data-field="split"></select></label>
  <span id="status"></span>
</header>
<main id="cards"></main>
<div id="detail" hidden>
  <div class="bar"><button id="close">&#x2715; close</button><strong id="d-title"></strong></div>
  <div class="imgs" id="d-imgs"></div>
  <div id="d-raw"></div>
  <pre id="d-json"></pre>
</div>
<script id="data" type="application/json">__DATA__</script>
<script>
"use strict";
const SAMPLES = JSON.parse(document.getElementById("data").textContent);
const FIELDS = ["domain", "subcategory", "pair_kind", "split"];
const FIGURES = __FIGURES__;
const RAW = __RAW__;
const params = new URLSearchParams(location.search);
const cards = document.getElementById("cards");
const byKey = new Map();

function el(tag, props, children) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  for (const c of children || []) e.append(c);
  return e;
}

function fillSelect(field) {
  const select = document.getElementById("f-" + field);
  const counts = new Map();
  for (const s of SAMPLES) counts.set(s[field], (counts.get(s[field]) || 0) + 1);
  select.append(el("option", {value: "", textContent: "all (" + SAMPLES.length + ")"}));
  for (const v of [...counts.keys()].sort()) select.append(el("option", {value: v, textContent: v + " (" + counts.get(v) + ")"}));
  const wanted = params.get(field);
  if (wanted !== null) {
    if (!counts.has(wanted)) select.append(el("option", {value: wanted, textContent: wanted + " (0)"}));
    select.value = wanted;
  }
  select.addEventListener("change", applyFilters);
}

function applyFilters() {
  const chosen = FIELDS.map(f => [f, document.getElementById("f-" + f).value]);
  let shown = 0;
  for (const card of cards.children) {
    const s = byKey.get(card.dataset.key);
    card.hidden = !chosen.every(([f, v]) => v === "" || s[f] === v);
    if (!card.hidden) shown++;
  }
  document.getElementById("status").textContent = shown + " of " + SAMPLES.length + " samples";
  document.body.dataset.shown = String(shown);
}

function markLoad(img) {
  img.addEventListener("load", () => { img.dataset.loaded = String(img.naturalWidth); });
  img.addEventListener("error", () => { img.dataset.broken = "1"; });
  return img;
}

function openDetail(key) {
  const s = byKey.get(key);
  if (!s) return;
  const base = "full/" + encodeURIComponent(key) + "/";
  document.getElementById("d-title").textContent = s.name + " \\u00b7 " + s.pair_kind + " \\u00b7 " + s.split + " \\u00b7 " + key + " (" + s.shard + ")";
  document.getElementById("d-imgs").replaceChildren(...FIGURES.map(([file, label]) =>
    el("figure", {}, [markLoad(el("img", {src: base + file, alt: label})), el("figcaption", {textContent: label})])));
  document.getElementById("d-raw").replaceChildren("raw masks: ", ...RAW.map(f => el("a", {href: base + f, textContent: f})));
  document.getElementById("d-json").textContent = JSON.stringify(s.json, null, 2);
  document.getElementById("detail").hidden = false;
  document.body.dataset.open = key;
}

function closeDetail() {
  document.getElementById("detail").hidden = true;
  delete document.body.dataset.open;
  if (location.hash.length > 1) {
    try { history.replaceState(null, "", location.pathname + location.search); } catch (e) { location.hash = ""; }
  }
}

for (const s of SAMPLES) {
  byKey.set(s.key, s);
  const img = markLoad(el("img", {src: "thumbs/" + encodeURIComponent(s.key) + ".jpg", alt: s.key, loading: "lazy"}));
  const card = el("div", {className: "card", title: s.key}, [img, el("div", {className: "name", textContent: s.name}),
    el("div", {className: "sub", textContent: s.domain + " \\u00b7 " + s.pair_kind + " \\u00b7 " + s.split})]);
  card.dataset.key = s.key;
  card.addEventListener("click", () => { location.hash = s.key; });
  cards.append(card);
}
FIELDS.forEach(fillSelect);
applyFilters();
document.getElementById("close").addEventListener("click", closeDetail);
document.addEventListener("keydown", e => { if (e.key === "Escape") closeDetail(); });
window.addEventListener("hashchange", () => location.hash.length > 1 ? openDetail(decodeURIComponent(location.hash.slice(1))) : closeDetail());
if (location.hash.length > 1) openDetail(decodeURIComponent(location.hash.slice(1)));
document.body.dataset.ready = "1";
</script>
</body>
</html>
"""
