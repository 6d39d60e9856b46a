"""``unieditkit validate``: check a build folder against the format contract (docs/FORMAT.md), every byte.

A folder can go wrong after the build: copied partially, edited by a script, hand-merged from two builds,
corrupted on a disk. Training on it would fail hours later or, worse, silently learn from broken masks. This
command reads every shard and lists each problem as ``SHARD KEY: problem`` (``-`` for the key when the problem
is not one sample's), exiting 1 when there is any, 0 when the folder is clean:

* files: every tar has its sidecar and ``_stats.json`` (and the reverse); no ``.tmp`` left-overs; the
  folder's ``index.parquet``, ``rejected.parquet``, ``README.md`` and ``build_config.json`` exist;
* members: each sample has exactly ``ref.jpg``, ``ref_mask.png``, ``tgt.jpg``, the three masks and ``json``,
  regular files only; keys are ``[a-z0-9_-]`` (no dots) and unique across all shards;
* pixels: images decode; masks are 8-bit L with only 0/255, of the target's size (``ref_mask``: the
  reference's); fine is not empty, rough ⊇ fine, box = filled bounding box of fine = json ``bbox``;
* json: exactly the fields of ``unieditkit.format.empty_meta()``, none null, each of the template's type, and
  consistent with the pixels (sizes, areas), the shard (domain, split) and the taxonomy;
* tables: each sidecar's rows match its tar (same keys, same values as the json says), ``index.parquet`` and
  ``rejected.parquet`` are exactly the union of the sidecars, ``_stats.json`` counts match;
  ``duplicates.parquet`` (optional, ``unieditkit dedupe``) covers the current shards and lists written keys;
* provenance: samples made by model stages with random weights (``random_init: true``) are reported, one
  problem per shard: the format is fine, but such a folder must never be mistaken for training data.
"""

from __future__ import annotations

import json
import multiprocessing
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from unieditkit.errors import TaxonomyError, UserError
from unieditkit.format import (
    BOX, BUILD_CONFIG_FILE, CARD_FILE, DONE_MARKER_SUFFIX, DUPLICATES_FILE, FINE, FORMAT_VERSION, INDEX_COLUMNS, INDEX_FILE,
    MASK_MEMBERS, MASK_VARIANTS, MASKED_IMAGE, MEMBERS, META_MEMBER, PROBES_FILE, REF_IMAGE, REJECTED_FILE, ROUGH, SAMPLE_FILES,
    SHARD_RE, SHARD_SUFFIXES, SPLITS, TARGET_IMAGE, duplicates_coverage, duplicates_info, empty_meta, index_record, marker_name,
    mask_member,
)
from unieditkit.integrity import mismatch
from unieditkit.reader import KEY_RE, Sample, done_shards, open_image, tar_entries

#: the build writes every file as NAME.tmp and renames it (``unieditkit.pipelines.writer``, not imported: it pulls in torch)
TMP_SUFFIX = ".tmp"
PAIR_KINDS = ("video", "multiview", "tryon", "self", "manifest")
PAIR_METHODS = ("self", "annotation", "track", "track_sam2", "appearance")
LABEL_SOURCES = ("annotation", "detector", "clip")
LABEL_CHECKS = ("agree", "disagree", "unchecked")
MASK_SOURCES = ("annotation", "sam", "mobile_sam", "sam2", "grabcut")
FOLDER_FILES = (CARD_FILE, BUILD_CONFIG_FILE, INDEX_FILE, REJECTED_FILE)
#: folder files that only some builds have
OPTIONAL_FILES = (DUPLICATES_FILE, PROBES_FILE)
STATS_FIELDS = {"shard", "domain", "split", "units", "samples", "rejected", "label_disagreements", "bytes", "files", "format_version"}
#: element type and length of list fields (the template's lists are empty, so they cannot say)
LIST_ITEMS: dict[str, tuple[Any, int | None]] = {
    "bbox": (0, 4), "tgt_size": (0, 2), "ref_size": (0, 2), "labels": ({"key": "", "score": 0.0}, None),
}
#: json areas are rounded to 6 decimals by the build
AREA_TOLERANCE = 2e-6
NO_KEY = "-"


@dataclass(frozen=True)
class Problem:
    shard: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.shard} {self.key}: {self.message}"


@dataclass
class ShardResult:
    """What one shard contributes: its problems, its keys, and its sidecar rows (for the folder-wide checks)."""

    problems: list[Problem] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    ok_rows: list[dict[str, Any]] = field(default_factory=list)
    rejected_rows: list[dict[str, Any]] = field(default_factory=list)
    random_init: int = 0


# ---- json ---------------------------------------------------------------------------------------------------


def _type_name(template: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "object"}[type(template)]


def _has_type(value: Any, template: Any) -> bool:
    if isinstance(template, bool):
        return isinstance(value, bool)
    if isinstance(template, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(template, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, type(template))


def check_fields(value: Any, template: Any, path: str = "") -> list[str]:
    """Structural problems of ``value`` against the metadata template: missing, extra, null, wrong type."""
    name = path or "json"
    if value is None:
        return [f"json field {name} is null"]
    if not _has_type(value, template):
        return [f"json field {name} is {type(value).__name__}, expected {_type_name(template)}"]
    problems: list[str] = []
    if isinstance(template, dict):
        for k in template:
            if k not in value:
                problems.append(f"json field {path + '.' if path else ''}{k} is missing")
            else:
                problems += check_fields(value[k], template[k], f"{path + '.' if path else ''}{k}")
        problems += [f"json field {path + '.' if path else ''}{k} is not in the format" for k in value if k not in template]
    elif isinstance(template, list) and path in LIST_ITEMS:
        item, length = LIST_ITEMS[path]
        if length is not None and len(value) != length:
            problems.append(f"json field {path} has {len(value)} items, expected {length}")
        for i, v in enumerate(value):
            problems += check_fields(v, item, f"{path}[{i}]")
    return problems


def check_meta_values(meta: dict[str, Any], key: str, shard: str, taxonomy: Any | None) -> list[str]:
    """Value problems of a structurally valid ``meta``: consistency with the key, the shard and the taxonomy."""
    m = SHARD_RE.match(shard)
    problems = []
    expected = {"key": key, "format_version": FORMAT_VERSION}
    if m:
        expected.update(domain=m["domain"], split=m["split"])
    problems += [f"json {f} is {meta[f]!r}, expected {v!r}" for f, v in expected.items() if meta[f] != v]
    for f, allowed in (("split", SPLITS), ("pair_kind", PAIR_KINDS), ("mask_source", MASK_SOURCES), ("pair_method", PAIR_METHODS),
                       ("label_source", LABEL_SOURCES), ("label_check", LABEL_CHECKS)):
        if meta[f] not in allowed:
            problems.append(f"json {f} is {meta[f]!r}, expected one of {', '.join(allowed)}")
    if taxonomy is not None:
        try:
            sub = taxonomy.by_key(meta["subcategory"])
        except TaxonomyError:
            sub = None
        if sub is None or sub.domain != meta["domain"]:
            problems.append(f"json subcategory {meta['subcategory']!r} is not a {meta['domain']} subcategory of taxonomy {taxonomy.version}")
        elif (meta["subcategory_id"], meta["subcategory_name"], meta["rigid"]) != (sub.id, sub.name, sub.rigid):
            problems.append(f"json subcategory_id/subcategory_name/rigid do not match taxonomy {taxonomy.version} ({sub.id}, {sub.name!r}, {sub.rigid})")
    return problems


# ---- pixels -------------------------------------------------------------------------------------------------


def bbox_of(mask: np.ndarray) -> list[int]:
    """``[x0, y0, x1, y1]`` (exclusive upper bounds) of a non-empty bool mask."""
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def check_pixels(sample: Sample, meta: dict[str, Any] | None) -> list[str]:
    """Decoding, mask format and mask relations of one complete sample; ``meta`` when its json is valid."""
    problems: list[str] = []
    images = {}
    for member in MEMBERS:
        try:
            images[member] = open_image(sample.files[member], member)
        except ValueError as exc:
            problems.append(str(exc))
    for member in (REF_IMAGE, TARGET_IMAGE):
        if member in images and (images[member].format, images[member].mode) != ("JPEG", "RGB"):
            problems.append(f"{member} is {images[member].format} {images[member].mode}, expected an RGB JPEG")
    masks: dict[str, np.ndarray] = {}
    for member in MASK_MEMBERS:
        img = images.get(member)
        if img is None:
            continue
        owner = images.get(MASKED_IMAGE[member])
        if img.format != "PNG" or img.mode != "L":
            problems.append(f"{member} is {img.format} {img.mode}, expected an 8-bit L PNG")
            continue
        arr = np.asarray(img)
        if (grey := int(np.count_nonzero((arr != 0) & (arr != 255)))):
            problems.append(f"{member} has values other than 0 and 255 ({grey} pixels)")
        if owner is not None and img.size != owner.size:
            problems.append(f"{member} is {img.width}x{img.height}, {MASKED_IMAGE[member]} is {owner.width}x{owner.height}")
            continue
        masks[member] = arr > 127
    if meta is not None:
        for member, f in ((TARGET_IMAGE, "tgt_size"), (REF_IMAGE, "ref_size")):
            if member in images and list(images[member].size) != meta[f]:
                problems.append(f"json {f} is {meta[f]}, {member} is {list(images[member].size)}")
    fine_member = mask_member(FINE)
    fine = masks.get(fine_member)
    if fine is None:
        return problems
    if not fine.any():
        return problems + [f"{fine_member} is empty"]
    bbox = bbox_of(fine)
    for variant, how in MASK_VARIANTS.items():
        member, mask = mask_member(variant), masks.get(mask_member(variant))
        if mask is None or variant == FINE:
            continue
        if how == FINE and (differ := int(np.count_nonzero(mask != fine))):
            problems.append(f"{member} is not {fine_member} ({differ} pixels differ)")
        if how == ROUGH and (outside := int(np.count_nonzero(fine & ~mask))):
            problems.append(f"{member} does not cover {fine_member} ({outside} fine pixels outside {variant})")
        if how == BOX:
            expected = np.zeros_like(fine)
            expected[bbox[1] : bbox[3], bbox[0] : bbox[2]] = True
            if (differ := int(np.count_nonzero(mask != expected))):
                problems.append(f"{member} is not the filled bounding box {bbox} of {fine_member} ({differ} pixels differ)")
    if meta is not None:
        if meta["bbox"] != bbox:
            problems.append(f"json bbox is {meta['bbox']}, the bounding box of {fine_member} is {bbox}")
        areas = {"scores.fine_area": (meta["scores"]["fine_area"], fine)}
        areas.update({"mats.rough_area": (meta["mats"]["rough_area"], masks.get(mask_member(ROUGH))),
                      "mats.box_area": (meta["mats"]["box_area"], masks.get(mask_member(BOX)))})
        for name, (value, mask) in areas.items():
            if mask is not None and abs(value - float(mask.mean())) > AREA_TOLERANCE:
                problems.append(f"json {name} is {value}, the mask covers {float(mask.mean()):.6f}")
    return problems


# ---- one shard ----------------------------------------------------------------------------------------------


def _sidecar(path: Path, res: ShardResult, shard: str) -> list[dict[str, Any]] | None:
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        res.problems.append(Problem(shard, NO_KEY, f"{path.name} is not readable parquet ({type(exc).__name__})"))
        return None
    if tuple(table.column_names) != INDEX_COLUMNS:
        res.problems.append(Problem(shard, NO_KEY, f"{path.name} has columns {table.column_names}, expected {list(INDEX_COLUMNS)}"))
        return None
    return table.to_pylist()


def _row_differences(row: dict[str, Any], meta: dict[str, Any], shard: str) -> list[str]:
    want = index_record(meta, shard)
    differ = []
    for c in INDEX_COLUMNS:
        a, b = row[c], want[c]
        if isinstance(a, float) and isinstance(b, (int, float)):
            same = a == float(np.float32(b))
        else:
            same = a == b
        if not same:
            differ.append(c)
    return differ


def check_shard(out_dir: Path, name: str, taxonomy: Any | None = None) -> ShardResult:
    """Every check that needs only this shard's files."""
    res = ShardResult()

    def problem(key: str, message: str) -> None:
        res.problems.append(Problem(name, key, message))

    tar, sidecar, stats_path = (out_dir / f"{name}{s}" for s in SHARD_SUFFIXES)
    for path, what in ((tar, "tar"), (sidecar, "sidecar"), (stats_path, DONE_MARKER_SUFFIX)):
        if not path.is_file():
            hint = "the shard is not done; re-run the build to finish it" if path is stats_path else "delete the shard's files and re-run the build"
            problem(NO_KEY, f"no {path.name} ({what}); {hint}")
    metas: dict[str, dict[str, Any] | None] = {}
    if tar.is_file():
        metas = _check_tar(tar, name, taxonomy, problem)
        res.keys = list(metas)
        res.random_init = sum(1 for m in metas.values() if m is not None and m["random_init"])
        if res.random_init:
            problem(NO_KEY, f"{res.random_init} samples made by model stages with random weights (random_init: true): "
                            "plumbing-test output, not training data; rebuild with real weights")
    rows = _sidecar(sidecar, res, name) if sidecar.is_file() else None
    if rows is not None:
        res.ok_rows = [r for r in rows if r["status"] == "ok"]
        res.rejected_rows = [r for r in rows if r["status"] != "ok"]
        _check_sidecar(rows, metas if tar.is_file() else None, name, problem)
    if stats_path.is_file():
        _check_stats(stats_path, name, tar, metas if tar.is_file() else None, res.rejected_rows if rows is not None else None, problem)
    return res


def _check_tar(tar: Path, name: str, taxonomy: Any | None, problem: Any) -> dict[str, dict[str, Any] | None]:
    """Members and pixels of every sample; returns key → valid metadata (``None`` when the json is broken)."""
    metas: dict[str, dict[str, Any] | None] = {}
    groups: dict[str, Sample] = {}
    order: list[str] = []
    previous = None
    try:
        for entry in tar_entries(tar):
            if entry.problem:
                problem(entry.key or NO_KEY, f"member {entry.name!r}: {entry.problem}")
                continue
            if entry.key not in groups:
                groups[entry.key] = Sample(entry.key, name)
                order.append(entry.key)
            elif entry.key != previous:
                problem(entry.key, "members are not contiguous in the tar (the key appears twice)")
            previous = entry.key
            sample = groups[entry.key]
            if entry.member not in SAMPLE_FILES:
                problem(entry.key, f"unexpected member {entry.name!r}")
            elif entry.member in sample.files:
                problem(entry.key, f"member {entry.member} appears twice")
            else:
                sample.files[entry.member] = entry.data  # type: ignore[assignment]
    except UserError as exc:  # damaged tar: report it, and check the samples read before the damage
        problem(NO_KEY, str(exc).removeprefix(f"{tar}: "))
    if order != sorted(order):
        problem(NO_KEY, "samples are not sorted by key (a rebuilt shard would not be byte-identical)")
    for key in order:
        sample = groups[key]
        if "." in key:
            problem(key, "key has a dot (keys are [a-z0-9_-]; webdataset and HF datasets split the member name at the first dot)")
        elif not KEY_RE.match(key):
            problem(key, "key is not [a-z0-9_-]")
        missing = [m for m in SAMPLE_FILES if m not in sample.files]
        for m in missing:
            problem(key, f"missing {m}")
        meta = _check_json(sample, name, taxonomy, problem) if META_MEMBER in sample.files else None
        metas[key] = meta
        if not any(m in missing for m in MEMBERS):
            for msg in check_pixels(sample, meta):
                problem(key, msg)
        sample.files.clear()  # only the metadata is needed from here on
    return metas


def _check_json(sample: Sample, name: str, taxonomy: Any | None, problem: Any) -> dict[str, Any] | None:
    try:
        meta = json.loads(sample.files[META_MEMBER])
    except (ValueError, UnicodeDecodeError) as exc:
        problem(sample.key, f"json does not parse ({exc})")
        return None
    structural = check_fields(meta, empty_meta())
    for msg in structural or check_meta_values(meta, sample.key, name, taxonomy):
        problem(sample.key, msg)
    return None if structural else meta


def _check_sidecar(rows: list[dict[str, Any]], metas: dict[str, dict[str, Any] | None] | None, name: str, problem: Any) -> None:
    ok = [r for r in rows if r["status"] == "ok"]
    for r in rows:
        if r["shard"] != name:
            problem(r["key"], f"sidecar row names shard {r['shard']!r}")
        if r["status"] not in ("ok", "rejected"):
            problem(r["key"], f"sidecar status is {r['status']!r}, expected ok or rejected")
        elif r["status"] == "rejected" and not r["reason"]:
            problem(r["key"], "sidecar row is rejected without a reason")
    for key, n in Counter(r["key"] for r in ok).items():
        if n > 1:
            problem(key, f"sidecar has {n} ok rows for this key")
    if metas is None:
        return
    for r in ok:
        if r["key"] not in metas:
            problem(r["key"], "in the sidecar (ok) but not in the tar")
        elif (meta := metas[r["key"]]) is not None and (differ := _row_differences(r, meta, name)):
            problem(r["key"], f"sidecar row differs from the json in {', '.join(differ)}")
    listed = {r["key"] for r in ok}
    rejected = {r["key"] for r in rows if r["status"] == "rejected"}
    for key in metas:
        if key not in listed:
            problem(key, "in the tar but not in the sidecar" + (" (listed as rejected)" if key in rejected else ""))


def _check_stats(path: Path, name: str, tar: Path, metas: dict | None, rejected_rows: list[dict[str, Any]] | None, problem: Any) -> None:
    try:
        stats = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        problem(NO_KEY, f"{path.name} does not parse ({exc})")
        return
    if not isinstance(stats, dict) or set(stats) != STATS_FIELDS:
        problem(NO_KEY, f"{path.name} has fields {sorted(stats) if isinstance(stats, dict) else type(stats).__name__}, expected {sorted(STATS_FIELDS)}")
        return
    if damage := mismatch(path.parent, name, stats["files"]):
        problem(NO_KEY, f"{damage}: delete {path.name} and re-run the build to rebuild this shard")
    m = SHARD_RE.match(name)
    expected: dict[str, Any] = {"shard": name, "format_version": FORMAT_VERSION}
    if m:
        expected.update(domain=m["domain"], split=m["split"])
    if metas is not None:
        expected.update(samples=len(metas), bytes=tar.stat().st_size)
    if rejected_rows is not None:
        expected["rejected"] = dict(sorted(Counter(r["reason"] for r in rejected_rows).items()))
    for f, v in expected.items():
        if stats[f] != v:
            problem(NO_KEY, f"{path.name} {f} is {stats[f]!r}, the shard has {v!r}")


# ---- the folder ---------------------------------------------------------------------------------------------


def shard_names(out_dir: Path) -> tuple[list[str], list[Problem]]:
    """Shard names from every tar, sidecar and stats file, plus problems with files that fit no pattern."""
    names: set[str] = set()
    problems = []
    for p in sorted(out_dir.iterdir()):
        if p.name.endswith(TMP_SUFFIX):
            problems.append(Problem(p.name, NO_KEY, "left-over temporary file of an interrupted build; re-run the build to finish it"))
            continue
        if p.name in FOLDER_FILES or p.name in OPTIONAL_FILES or not p.is_file():
            continue
        stem = next((p.name[: -len(s)] for s in SHARD_SUFFIXES if p.name.endswith(s)), None)
        if stem is None:
            continue
        if SHARD_RE.match(stem):
            names.add(stem)
        else:
            problems.append(Problem(p.name, NO_KEY, f"not a shard file name (DOMAIN-SPLIT-NNNNNN{' / '.join(SHARD_SUFFIXES)})"))
    return sorted(names), problems


def _bundled_taxonomy_if_used(out_dir: Path) -> Any | None:
    """The bundled taxonomy when the build used it (build_config.json says so), else ``None`` (no check)."""
    from unieditkit.taxonomy import load_taxonomy

    try:
        config = json.loads((out_dir / "build_config.json").read_text())
        used = {d["taxonomy"] for d in config["domains"].values()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    tax = load_taxonomy()
    return tax if used == {f"{tax.name} {tax.version} {tax.fingerprint()[:16]}"} else None


def _compare_table(out_dir: Path, file: str, want: list[dict[str, Any]], problems: list[Problem]) -> None:
    path = out_dir / file
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        problems.append(Problem(file, NO_KEY, f"not readable parquet ({type(exc).__name__}); re-run the build to rewrite it"))
        return
    if tuple(table.column_names) != INDEX_COLUMNS:
        problems.append(Problem(file, NO_KEY, f"columns {table.column_names}, expected {list(INDEX_COLUMNS)}"))
        return
    have = Counter(tuple(r.items()) for r in table.to_pylist())
    need = Counter(tuple(r.items()) for r in want)
    for row, n in sorted((have - need).items()):
        r = dict(row)
        problems.append(Problem(r["shard"] or file, r["key"], f"{file} row not in the shard's sidecar" + (f" ({n}x)" if n > 1 else "")))
    for row, _ in sorted((need - have).items()):
        r = dict(row)
        problems.append(Problem(r["shard"], r["key"], f"sidecar row missing from {file} or different there"))


def _check_duplicates(out_dir: Path, written: set[str], problems: list[Problem]) -> None:
    """``duplicates.parquet``, when present: it covers the done shards, names written samples, one keep per cluster."""
    if not (out_dir / DUPLICATES_FILE).is_file():
        return
    try:
        info = duplicates_info(out_dir)
    except UserError as exc:
        problems.append(Problem(DUPLICATES_FILE, NO_KEY, str(exc).split(": ", 1)[-1]))
        return
    if info is None:
        return
    if info.get("shards") != duplicates_coverage(done_shards(out_dir)):
        problems.append(Problem(DUPLICATES_FILE, NO_KEY, f"stale: computed for other shards; re-run `unieditkit dedupe {out_dir}`"))
        return
    rows = pq.read_table(out_dir / DUPLICATES_FILE).to_pylist()
    keeps = Counter(r["cluster"] for r in rows if r["keep"])
    for r in rows:
        if r["key"] not in written:
            problems.append(Problem(r["shard"], r["key"], f"{DUPLICATES_FILE} names a sample that is not written"))
    for cluster in sorted({r["cluster"] for r in rows}):
        if keeps[cluster] != 1:
            problems.append(Problem(DUPLICATES_FILE, cluster, f"cluster has {keeps[cluster]} members with keep: true, expected 1"))


def validate(out_dir: Path, jobs: int = 1) -> tuple[list[Problem], dict[str, int]]:
    """All problems of ``out_dir`` sorted by shard and key (check order kept within a sample), and counts."""
    names, problems = shard_names(out_dir)
    if not names and not any((out_dir / f).is_file() for f in FOLDER_FILES):
        raise UserError(f"{out_dir}: no shards and none of {', '.join(FOLDER_FILES)}; is {out_dir} a folder written by `unieditkit build`?")
    for f in FOLDER_FILES:
        if not (out_dir / f).is_file():
            problems.append(Problem(f, NO_KEY, "missing; re-run the build (it rewrites the folder files from the done shards)"))
    taxonomy = _bundled_taxonomy_if_used(out_dir)
    if jobs > 1 and len(names) > 1:
        # spawned, not forked: the caller may hold threads (Ray, torch) that a fork would copy mid-lock
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(check_shard, [out_dir] * len(names), names, [taxonomy] * len(names)))
    else:
        results = [check_shard(out_dir, n, taxonomy) for n in names]
    seen: dict[str, str] = {}
    ok_rows: list[dict[str, Any]] = []
    rejected_rows: list[dict[str, Any]] = []
    for name, res in zip(names, results, strict=True):
        problems += res.problems
        for key in res.keys:
            if key in seen:
                problems.append(Problem(name, key, f"key also in {seen[key]} (keys must be unique across shards)"))
            seen.setdefault(key, name)
        if (out_dir / marker_name(name)).is_file():  # only done shards are in the folder tables
            ok_rows += res.ok_rows
            rejected_rows += res.rejected_rows
    for file, rows in ((INDEX_FILE, ok_rows), (REJECTED_FILE, rejected_rows)):
        if (out_dir / file).is_file():
            _compare_table(out_dir, file, rows, problems)
    _check_duplicates(out_dir, {r["key"] for r in ok_rows}, problems)
    problems.sort(key=lambda p: (p.shard, p.key))
    return problems, {"shards": len(names), "samples": len(seen)}
