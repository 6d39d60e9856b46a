"""Folder-level files rebuilt after every build: ``index.parquet``, ``rejected.parquet`` and the dataset card.

They are derived only from the done shards' sidecars, so they are always consistent with what is on disk,
whichever domains were built into the folder and however often a build was interrupted. Files are only
rewritten when their content changes, so a no-op re-run leaves the folder untouched (and reads no sidecar).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from unieditkit.faults import checkpoint
from unieditkit.format import (
    BUILD_CONFIG_FILE, CARD_FILE, DUPLICATES_FILE, FORMAT_VERSION, INDEX_FILE, MASK_VARIANTS, META_MEMBER, REF_IMAGE, REF_MASK,
    REJECTED_FILE, SIDECAR_SUFFIX, SPLITS, TARGET_IMAGE, duplicates_coverage, duplicates_info, hf_features, index_schema,
    mask_member, split_glob,
)
from unieditkit.reader import done_shards

from .sources import SAMPLE_DATA
from unieditkit.storage import Folder, as_folder


#: schema metadata key of the folder tables: ``content_fingerprint`` of the shards they were made from
_MADE_FROM = b"unieditkit_shards"


def _write_if_changed(folder: Folder, name: str, data: bytes) -> bool:
    if folder.exists(name) and folder.read_bytes(name) == data:
        return False
    folder.write_bytes(name, data)
    return True


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def _made_from(folder: Folder, name: str) -> str:
    """The shards' fingerprint a folder table records in its schema metadata ("" when absent or unreadable)."""
    if not folder.exists(name):
        return ""
    try:
        with folder.fs.open(folder.path(name), "rb") as fh:  # the footer only: a few ranged reads
            return (pq.read_schema(fh).metadata or {}).get(_MADE_FROM, b"").decode()
    except (OSError, pa.ArrowInvalid):
        return ""


def rebuild_index(out: Folder | Path, shards: list[dict[str, Any]]) -> None:
    """``index.parquet`` and ``rejected.parquet``, the union of the sidecars, each recording the fingerprint of
    the markers it was made from: while those are the markers on disk the tables are current, and a no-op re-run
    reads no sidecar (on object storage, nothing of the shards goes through the driver)."""
    folder = as_folder(out)
    made_from = content_fingerprint(shards)
    if all(_made_from(folder, name) == made_from for name in (INDEX_FILE, REJECTED_FILE)):
        return
    tables = [pq.read_table(pa.BufferReader(folder.read_bytes(f"{s['shard']}{SIDECAR_SUFFIX}")), schema=index_schema()) for s in shards]
    table = (pa.concat_tables(tables) if tables else index_schema().empty_table()).replace_schema_metadata({_MADE_FROM: made_from})
    ok = pc.equal(table["status"], "ok")
    _write_if_changed(folder, INDEX_FILE, _parquet_bytes(table.filter(ok)))
    _write_if_changed(folder, REJECTED_FILE, _parquet_bytes(table.filter(pc.invert(ok))))


def content_fingerprint(shards: list[dict[str, Any]]) -> str:
    """A hash of the done shards' markers, written into each config of the card.

    ``datasets`` caches a non-streaming ``load_dataset(folder, config)`` under a key made from the card's
    ``configs`` and ``dataset_info`` only (not the files; huggingface/datasets#2956), so a rebuilt folder, or
    another folder with the same base name, would silently load the old rows. A config description that
    changes with the shards on disk changes that key.
    """
    markers = json.dumps(sorted(shards, key=lambda s: s["shard"]), sort_keys=True).encode("utf-8")
    return hashlib.sha256(markers).hexdigest()[:16]


def card_notes(out: Folder | Path, shards: list[dict[str, Any]]) -> list[str]:
    """What the card must carry beyond the counts: domains mined with random weights, each domain's MATS
    rough-mask parameters and whether it is the bundled sample (from ``build_config.json``), and the state of the
    dataset-wide near-duplicate pass (``duplicates.parquet``, made by the local-folder command ``unieditkit dedupe``)."""
    folder = as_folder(out)
    notes = []
    try:
        domains = json.loads(folder.read_bytes(BUILD_CONFIG_FILE))["domains"]
    except (OSError, ValueError, KeyError):
        domains = {}
    random = sorted(d for d, e in domains.items() if isinstance(e, dict) and (e.get("models") or {}).get("random_init"))
    if random:
        notes.append(f"**Random weights**: {', '.join(random)} was mined with `--random-weights` (a plumbing test): "
                     "its samples are noise, not training data; each one's json has `random_init: true`.")
    for domain, entry in sorted(domains.items()):
        mats = (entry.get("settings") or {}).get("mats") if isinstance(entry, dict) else None
        if mats:
            notes.append(f"**MATS** ({domain}): rough masks drawn with `{json.dumps(mats, sort_keys=True)}` and each sample's "
                         "`mats.seed`; `unieditkit.format.recorded_mats_params(folder, domain)` returns these parameters.")
    if any(source == f"coco:{SAMPLE_DATA}" for entry in domains.values() if isinstance(entry, dict) for source in entry.get("sources", [])):
        notes.append("**Bundled sample**: built from unieditkit's bundled sample. Samples whose key contains `synthetic` "
                     "come from generated images (textured shapes); the others from real public-domain or CC0 photographs, "
                     "listed with their licences in the toolkit's `pipelines/sample_data/README.md`. Not training data.")
    if folder.local:
        notes.append(duplicates_note(folder.local_path(), shards))
    return [n for n in notes if n]


def duplicates_note(out_dir: Path, shards: list[dict[str, Any]]) -> str:
    """The card's line about ``duplicates.parquet``: what it found, or that it is stale ("" when absent)."""
    info = duplicates_info(out_dir)
    if info is None:
        return ""
    if info["shards"] != duplicates_coverage(shards):
        return (f"**Near-duplicates**: `{DUPLICATES_FILE}` was computed before the last build changed the shards; "
                f"re-run `unieditkit dedupe` on this folder.")
    table = pq.read_table(out_dir / DUPLICATES_FILE, columns=["cluster", "keep"])
    skipped = table.num_rows - sum(table["keep"].to_pylist())
    clip = f", CLIP {info['clip']}" if info["clip"] else ""
    return (f"**Near-duplicates**: {table.num_rows} samples fall in {len(set(table['cluster'].to_pylist()))} clusters "
            f"across shards (perceptual hash within {info['hamming']} bits{clip}); `{DUPLICATES_FILE}` marks one per "
            f"cluster `keep: true`, the one to train on; the other {skipped} are near-duplicates to skip.")


# ---- `unieditkit dedupe OUT` ------------------------------------------------------------------------------------


def dataset_card(shards: list[dict[str, Any]], title: str = "unieditkit dataset", notes: list[str] | None = None) -> str:
    """README.md with ``configs:`` (one per domain present) and explicit ``features`` for HF ``datasets``."""
    domains: dict[str, Counter] = {}
    rejected: Counter = Counter()
    for s in shards:
        domains.setdefault(s["domain"], Counter())[s["split"]] += s["samples"]
        rejected.update(s["rejected"])
    features = hf_features()
    import datasets

    feature_yaml = datasets.DatasetInfo(features=features)._to_yaml_dict()["features"]
    configs, infos = [], []
    for domain, counts in domains.items():
        mine = [s for s in shards if s["domain"] == domain]
        present = [sp for sp in SPLITS if any(s["split"] == sp for s in mine)]
        configs.append({
            "config_name": domain,
            "data_files": [{"split": sp, "path": split_glob(domain, sp)} for sp in present],
            "description": f"unieditkit build of {domain}, shards {content_fingerprint(mine)}",
        })
        splits = [{"name": sp, "num_bytes": sum(s["bytes"] for s in mine if s["split"] == sp), "num_examples": counts[sp]}
                  for sp in present]
        infos.append({"config_name": domain, "features": feature_yaml, "splits": splits,
                      "download_size": sum(sp["num_bytes"] for sp in splits)})
    header = yaml.safe_dump(
        {
            "pretty_name": title,
            "tags": ["image-editing", "reference-guided-editing", "inpainting", "unieditkit"],
            "task_categories": ["image-to-image"],
            "configs": configs,
            "dataset_info": infos,
        },
        sort_keys=False,
    )
    rows = "\n".join(
        f"| {d} | " + " | ".join(str(c[sp]) for sp in SPLITS) + f" | {sum(c.values())} |" for d, c in domains.items()
    )
    reasons = "\n".join(f"| {r} | {n} |" for r, n in sorted(rejected.items())) or "| (none) | 0 |"
    notes_text = "".join(f"\n{n}\n" for n in notes or [])
    return f"""---
{header}---

# {title}

Reference-guided image-editing pairs built with [unieditkit](https://pypi.org/project/unieditkit/) (format
version {FORMAT_VERSION}). Each sample: `{REF_IMAGE}` (reference object on grey), `{REF_MASK}`, `{TARGET_IMAGE}`
(target scene = ground truth), MATS masks {" / ".join(f"`{mask_member(v)}`" for v in MASK_VARIANTS)}, and `{META_MEMBER}`
metadata (taxonomy subcategory, pair kind, captions, scores, MATS seed). See the toolkit's `docs/FORMAT.md`.
{notes_text}

```python
from datasets import load_dataset
ds = load_dataset("path/to/this/folder", "{next(iter(domains), "garments")}", split="train")
```

| domain | {" | ".join(SPLITS)} | total |
|---|{"---|" * len(SPLITS)}---|
{rows}

| rejected (reason) | count |
|---|---|
{reasons}
"""


def write_card(out: Folder | Path, shards: list[dict[str, Any]]) -> None:
    folder = as_folder(out)
    _write_if_changed(folder, CARD_FILE, dataset_card(shards, notes=card_notes(folder, shards)).encode("utf-8"))


def finalize(out: Folder | Path) -> list[dict[str, Any]]:
    folder = as_folder(out)
    shards = done_shards(folder)
    rebuild_index(folder, shards)
    checkpoint("index-written")
    write_card(folder, shards)
    return shards
