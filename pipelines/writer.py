"""Shard writer: turns a finished shard's rows into ``NAME.tar``, ``NAME.parquet`` and ``NAME_stats.json``.

Each file is written under a temporary name and renamed, and the stats file comes last: a shard is complete when
its ``_stats.json`` exists *and* the tar and sidecar still have the size and SHA-256 it records (a deleted,
truncated or replaced tar is rebuilt), anything else is left-over work that the next run redoes. Tar members are sorted
by key with fixed owner and mtime, so the same rows always give the same bytes.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq
import webdataset as wds

from unieditkit.faults import checkpoint
from unieditkit.integrity import file_records

from .plan import ShardPlan
from .schema import FORMAT_VERSION, INDEX_COLUMNS, MEMBERS, index_record

TMP_SUFFIX = ".tmp"


def _publish(tmp: Path, final: Path) -> None:
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + TMP_SUFFIX)
    tmp.write_bytes(data)
    _publish(tmp, path)


def sidecar_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=index_schema())


def index_schema() -> pa.Schema:
    ints = {"subcategory_id", "tgt_width", "tgt_height", "ref_width", "ref_height"}
    floats = {"fine_area", "rough_area", "box_area", "detector_score", "categorize_score", "sharpness"}
    return pa.schema(
        [(c, pa.int32() if c in ints else pa.float32() if c in floats else pa.string()) for c in INDEX_COLUMNS]
    )


def _rejected_record(row: dict[str, Any], shard: ShardPlan) -> dict[str, Any]:
    rec: dict[str, Any] = {c: "" for c in INDEX_COLUMNS}
    rec.update({c: -1 for c in ("subcategory_id", "tgt_width", "tgt_height", "ref_width", "ref_height")})
    rec.update({c: -1.0 for c in ("fine_area", "rough_area", "box_area", "detector_score", "categorize_score", "sharpness")})
    rec.update(key=row["key"], shard=shard.name, status="rejected", reason=row["reason"], detail=row["detail"])
    rec.update(domain=shard.domain, split=shard.split)
    return rec


def drop_near_duplicates(rows: list[dict[str, Any]], max_hamming: int) -> None:
    """Reject samples whose object crop hashes within ``max_hamming`` bits of an earlier one (by key order).

    Done per shard, where all rows are at hand and the order is fixed, so the result is deterministic and a
    shard never depends on another one (it can be rebuilt alone).
    """
    if max_hamming < 0:
        return
    kept: list[tuple[int, str]] = []
    for r in sorted((r for r in rows if r["status"] == "ok" and r["phash"]), key=lambda r: r["key"]):
        h = int(r["phash"], 16)
        twin = next((key for k, key in kept if (h ^ k).bit_count() <= max_hamming), None)
        if twin is None:
            kept.append((h, r["key"]))
        else:
            r.update(status="rejected", reason="near_duplicate", detail=f"near-duplicate of {twin}")


def write_shard(out_dir: Path, shard: ShardPlan, rows: list[dict[str, Any]], dedupe_hamming: int = -1) -> dict[str, Any]:
    """Write one complete shard; returns its stats (also written, last, as the done marker)."""
    drop_near_duplicates(rows, dedupe_hamming)
    ok = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: r["key"])
    keys = [r["key"] for r in ok]
    if len(set(keys)) != len(keys):
        raise RuntimeError(f"{shard.name}: duplicate sample keys {sorted(k for k, n in Counter(keys).items() if n > 1)[:3]}")
    tar_path = out_dir / f"{shard.name}.tar"
    tmp = tar_path.with_name(tar_path.name + TMP_SUFFIX)
    with open(tmp, "wb") as fh, wds.TarWriter(fh, user="unieditkit", group="unieditkit", mode=0o644, encoder=False, mtime=0) as tw:
        for r in ok:
            sample: dict[str, Any] = {"__key__": r["key"], "json": r["meta"].encode("utf-8")}
            sample.update({m: bytes(r[m.replace(".", "_")]) for m in MEMBERS})
            tw.write(sample)
    _publish(tmp, tar_path)
    checkpoint("tar-written")

    metas = [json.loads(r["meta"]) for r in ok]
    records = [index_record(m, shard.name) for m in metas]
    records += sorted((_rejected_record(r, shard) for r in rows if r["status"] != "ok"), key=lambda r: r["key"])
    parquet_path = out_dir / f"{shard.name}.parquet"
    tmp = parquet_path.with_name(parquet_path.name + TMP_SUFFIX)
    pq.write_table(sidecar_table(records), tmp)
    _publish(tmp, parquet_path)
    checkpoint("sidecar-written")

    stats = {
        "shard": shard.name,
        "domain": shard.domain,
        "split": shard.split,
        "units": len(shard.units),
        "samples": len(ok),
        "rejected": dict(sorted(Counter(r["reason"] for r in rows if r["status"] != "ok").items())),
        "label_disagreements": sum(1 for m in metas if m["label_check"] == "disagree"),
        "bytes": tar_path.stat().st_size,
        "files": file_records(out_dir, shard.name),
        "format_version": FORMAT_VERSION,
    }
    write_bytes_atomic(shard.stats_path(out_dir), (json.dumps(stats, indent=1, sort_keys=True) + "\n").encode())
    checkpoint("marker-written")
    return stats


class ShardCollector:
    """Buffers pipeline rows until every unit of a shard has reported, then writes that shard.

    Rows arrive in any order from parallel workers; a unit is complete when as many of its rows arrived as it
    announced (``unit_rows``), a shard when all its units are complete.
    """

    def __init__(
        self, out_dir: Path, shards: list[ShardPlan], on_done: Callable[[dict[str, Any]], None], dedupe_hamming: int = -1
    ) -> None:
        self.out_dir = out_dir
        self.dedupe_hamming = dedupe_hamming
        self.shards = {s.name: s for s in shards}
        self.units_left = {s.name: {u.unit_id for u in s.units} for s in shards}
        self.rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.unit_seen: Counter = Counter()
        self.on_done = on_done

    def add(self, row: dict[str, Any]) -> bool:
        """Take one row; returns True when it completed its unit."""
        name = row["shard"]
        self.rows[name].append(row)
        self.unit_seen[row["unit_id"]] += 1
        if self.unit_seen[row["unit_id"]] < row["unit_rows"]:
            return False
        self.units_left[name].discard(row["unit_id"])
        if not self.units_left[name]:
            self.on_done(write_shard(self.out_dir, self.shards[name], self.rows.pop(name), self.dedupe_hamming))
        return True

    def missing_units(self) -> set[str]:
        """Units that have not (fully) come back, e.g. because their batch was lost to a crashing worker."""
        return {u for left in self.units_left.values() for u in left}

    def reset_unit(self, unit_id: str) -> None:
        """Forget the rows a unit delivered before it is run again, so a partial batch is never duplicated."""
        for name, left in self.units_left.items():
            if unit_id in left:
                self.rows[name] = [r for r in self.rows[name] if r["unit_id"] != unit_id]
        self.unit_seen.pop(unit_id, None)

    @property
    def incomplete(self) -> list[str]:
        return sorted(name for name, left in self.units_left.items() if left)
