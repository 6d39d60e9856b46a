"""Shard writer: turns a finished shard's rows into ``NAME.tar``, ``NAME.parquet`` and ``NAME_stats.json``.

Each file is published whole (``storage.Folder``: renamed from a temporary name on a local disk, uploaded in one
piece to object storage), and the stats file comes last: a shard is complete when its ``_stats.json`` exists
*and* the tar and sidecar still keep what it records (their size, SHA-256 and MD5, ``unieditkit.integrity``: a
deleted, truncated or replaced tar is rebuilt), anything else is left-over work that the next run redoes. Tar
members are sorted by key with fixed owner and mtime, so the same rows always give the same bytes.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from unieditkit.faults import checkpoint
from unieditkit.format import (
    FORMAT_VERSION, MEMBERS, META_MEMBER, SIDECAR_SUFFIX, TAR_SUFFIX, column, index_record, index_schema, marker_name,
    rejected_record,
)
from unieditkit.integrity import RecordingWriter
from unieditkit.storage import Folder, as_folder

from .plan import ShardPlan
from .sources import WorkUnit


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """A local file published whole (temporary name, fsync, rename)."""
    Folder(path.parent).write_bytes(path.name, data)


def sidecar_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=index_schema())


def _rejected_record(row: dict[str, Any], shard: ShardPlan, units: dict[str, WorkUnit]) -> dict[str, Any]:
    """A rejected row names its input as a written sample does (``source.uri``, ``source.group_id``), taken from
    its unit: most rejections happen before a sample's metadata exists."""
    unit = units[row["unit_id"]]
    return {**rejected_record(row["key"], shard.name, shard.domain, shard.split, row["reason"], row["detail"]),
            "source_uri": unit.relative(unit.tgt_uri), "group_id": unit.group_id}


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


def write_sample(stream: tarfile.TarFile, key: str, members: dict[str, bytes]) -> None:
    """One sample's members as ``KEY.MEMBER`` files, in name order, owner ``unieditkit``, mode 644, mtime 0:
    byte for byte what ``webdataset.TarWriter(user=, group=, mode=, mtime=0)`` writes (tested). Written with
    ``tarfile`` because importing webdataset imports torch, 3 CPU s in every Ray worker that writes a shard
    and in the driver of a build that needs no model (``bench/profile_build.py``)."""
    for name in sorted(members):
        info = tarfile.TarInfo(f"{key}.{name}")
        info.size, info.mtime, info.mode = len(members[name]), 0, 0o644
        info.uname = info.gname = "unieditkit"
        stream.addfile(info, io.BytesIO(members[name]))


def write_shard(out: Folder | Path, shard: ShardPlan, rows: list[dict[str, Any]], dedupe_hamming: int = -1) -> dict[str, Any]:
    """Write one complete shard; returns its stats (also written, last, as the done marker)."""
    folder = as_folder(out)
    drop_near_duplicates(rows, dedupe_hamming)
    ok = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: r["key"])
    keys = [r["key"] for r in ok]
    if len(set(keys)) != len(keys):
        raise RuntimeError(f"{shard.name}: duplicate sample keys {sorted(k for k, n in Counter(keys).items() if n > 1)[:3]}")
    with folder.open_write(f"{shard.name}{TAR_SUFFIX}") as fh:
        tar = RecordingWriter(fh)  # a tar stream: only write() is called
        with tarfile.open(fileobj=tar, mode="w|") as stream:
            for r in ok:
                write_sample(stream, r["key"], {META_MEMBER: r["meta"].encode("utf-8"), **{m: bytes(r[column(m)]) for m in MEMBERS}})
    checkpoint("tar-written")

    metas = [json.loads(r["meta"]) for r in ok]
    records = [index_record(m, shard.name) for m in metas]
    units = {u.unit_id: u for u in shard.units}
    records += sorted((_rejected_record(r, shard, units) for r in rows if r["status"] != "ok"), key=lambda r: r["key"])
    sink = pa.BufferOutputStream()
    pq.write_table(sidecar_table(records), sink)
    with folder.open_write(f"{shard.name}{SIDECAR_SUFFIX}") as fh:
        sidecar = RecordingWriter(fh)
        sidecar.write(sink.getvalue().to_pybytes())
    checkpoint("sidecar-written")

    stats = {
        "shard": shard.name,
        "domain": shard.domain,
        "split": shard.split,
        "units": len(shard.units),
        "samples": len(ok),
        "rejected": dict(sorted(Counter(r["reason"] for r in rows if r["status"] != "ok").items())),
        "label_disagreements": sum(1 for m in metas if m["label_check"] == "disagree"),
        "bytes": tar.bytes,
        "files": {"tar": tar.record(), "parquet": sidecar.record()},
        "format_version": FORMAT_VERSION,
    }
    folder.write_bytes(marker_name(shard.name), (json.dumps(stats, indent=1, sort_keys=True) + "\n").encode())
    checkpoint("marker-written")
    return stats
