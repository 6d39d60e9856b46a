"""Dataset-wide near-duplicates: ``unieditkit dedupe OUT`` writes ``duplicates.parquet``, shards stay untouched.

The build drops near-duplicates within a shard (``writer.drop_near_duplicates``), where it can do so
deterministically without looking at other shards; the same photo arriving through two sources, or a video
yielding near-identical frames in two shards, survives that. This pass looks at every written sample of the
folder at once and groups them into clusters of near-duplicates: the perceptual hash of the target object crop
(the same hash and bound, ``dedupe_hamming``, as the per-shard pass) always, and, when CLIP weights are given,
also neighbours whose image embeddings of that crop have a cosine similarity of at least ``--clip-threshold``.

Shards are never rewritten (their done markers record what they hold); instead ``duplicates.parquet`` lists
each sample that has a near-duplicate: ``key``, ``shard``, ``cluster`` (the smallest key of its cluster, so ids
are stable), ``keep`` (true for exactly that one member) and ``method``. A training loader skips the rows with
``keep == false``. The file records which shards it covered, so the card, ``validate`` and training can tell
when a later build made it stale.

Hash matches are found by multi-index hashing: with ``h`` allowed differing bits, the 64 bits are cut into
``h + 1`` chunks, and two hashes within ``h`` bits agree on at least one chunk (pigeonhole), so only hashes
sharing a chunk value are compared. CLIP neighbours are exact (all pairs, in blocks), which is quadratic: fine
for tens of thousands of samples on a CPU, a GPU job at 500K.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from unieditkit.errors import UserError
from unieditkit.format import DUPLICATES_FILE, TAR_SUFFIX, TARGET_IMAGE, duplicates_coverage, duplicates_metadata

from .config import OutputSettings
from .stages.pair import phash

_BLOCK = 1024


def duplicates_schema() -> pa.Schema:
    return pa.schema([("key", pa.string()), ("shard", pa.string()), ("cluster", pa.string()), ("keep", pa.bool_()),
                      ("method", pa.string())])


@dataclass(frozen=True)
class Item:
    """One written sample: its key, shard and the image the duplicate tests look at (the target object crop)."""

    key: str
    shard: str
    crop: np.ndarray


class _Union:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.how: dict[int, set[str]] = {}

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, i: int, j: int, method: str) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)
            self.how.setdefault(min(a, b), set()).update(self.how.pop(max(a, b), set()))
        self.how.setdefault(self.find(i), set()).add(method)


def hash_pairs(hashes: np.ndarray, max_hamming: int) -> set[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, whose 64-bit hashes differ in at most ``max_hamming`` bits."""
    pairs: set[tuple[int, int]] = set()
    if max_hamming < 0 or len(hashes) < 2:
        return pairs
    chunks = min(max_hamming + 1, 64)
    edges = np.linspace(0, 64, chunks + 1).astype(int)
    for lo, hi in zip(edges[:-1], edges[1:]):
        part = (hashes >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1)
        order = np.argsort(part, kind="stable")
        values = part[order]
        starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
        ends = np.r_[starts[1:], len(values)]
        for s, e in zip(starts, ends):
            if e - s < 2:
                continue
            group = order[s:e]
            for b in range(0, len(group), _BLOCK):
                rows = group[b: b + _BLOCK]
                bits = np.bitwise_count(hashes[rows][:, None] ^ hashes[group][None, :])
                for r, c in zip(*np.nonzero(bits <= max_hamming)):
                    i, j = int(rows[r]), int(group[c])
                    if i < j:
                        pairs.add((i, j))
    return pairs


def embedding_pairs(embeddings: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, of unit embeddings with cosine similarity at least ``threshold``."""
    pairs: set[tuple[int, int]] = set()
    for b in range(0, len(embeddings), _BLOCK):
        sims = embeddings[b: b + _BLOCK] @ embeddings.T
        for r, c in zip(*np.nonzero(sims >= threshold)):
            i, j = b + int(r), int(c)
            if i < j:
                pairs.add((i, j))
    return pairs


def clusters(keys: Sequence[str], groups: dict[str, set[tuple[int, int]]]) -> list[dict[str, Any]]:
    """Rows of ``duplicates.parquet``: every item joined to another by any method, with its cluster."""
    union = _Union(len(keys))
    for method, pairs in sorted(groups.items()):
        for i, j in sorted(pairs):
            union.join(i, j, method)
    members: dict[int, list[int]] = {}
    for i in range(len(keys)):
        members.setdefault(union.find(i), []).append(i)
    rows = []
    for root, items in members.items():
        if len(items) < 2:
            continue
        cluster = min(keys[i] for i in items)
        method = "+".join(sorted(union.how.get(root, set())))
        rows += [{"key": keys[i], "cluster": cluster, "keep": keys[i] == cluster, "method": method} for i in items]
    return sorted(rows, key=lambda r: (r["cluster"], r["key"]))


def crop_hash(crop: np.ndarray) -> int:
    return phash(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY))


def read_items(out_dir: Path, shards: list[dict[str, Any]]) -> list[Item]:
    """The target object crop of every written sample (``tgt.jpg`` inside the json ``bbox``), sorted by key."""
    from unieditkit.reader import iter_samples

    items = []
    for s in shards:
        for sample in iter_samples(out_dir / f"{s['shard']}{TAR_SUFFIX}"):
            x0, y0, x1, y1 = sample.meta["bbox"]
            tgt = np.asarray(sample.rgb(TARGET_IMAGE))
            items.append(Item(sample.key, s["shard"], np.ascontiguousarray(tgt[y0:y1, x0:x1])))
    return sorted(items, key=lambda it: it.key)


def clip_embeddings(items: list[Item], model_name: str, pretrained: str | None, batch_size: int = 64) -> np.ndarray:
    """Unit CLIP image embeddings of the crops (``pretrained=None``: random weights, plumbing tests only)."""
    import torch

    from .models.openclip import OpenClipModel

    clip = OpenClipModel(model_name, pretrained, "cpu", "--clip-pretrained")
    out = []
    with torch.inference_mode():
        for b in range(0, len(items), batch_size):
            emb = clip.model.encode_image(clip.image_batch([it.crop for it in items[b: b + batch_size]])).float()
            out.append((emb / emb.norm(dim=-1, keepdim=True)).numpy())
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


def dedupe(out_dir: Path, max_hamming: int, clip_model: str = "", clip_pretrained: str | None = None,
           clip_threshold: float = 0.95) -> list[dict[str, Any]]:
    """Find the clusters of the folder's written samples, write ``duplicates.parquet`` and refresh the card."""
    from unieditkit.reader import done_shards

    from .catalog import write_card
    from .writer import write_bytes_atomic

    if not 0 < clip_threshold <= 1:
        raise UserError(f"--clip-threshold {clip_threshold}: a cosine similarity in (0, 1]")
    shards = done_shards(out_dir)
    if not shards:
        raise UserError(f"{out_dir}: no finished shards; run `unieditkit build` into it first")
    items = read_items(out_dir, shards)
    keys = [it.key for it in items]
    groups = {"phash": hash_pairs(np.asarray([crop_hash(it.crop) for it in items], dtype=np.uint64), max_hamming)}
    if clip_model:
        groups["clip"] = embedding_pairs(clip_embeddings(items, clip_model, clip_pretrained), clip_threshold)
    rows = clusters(keys, groups)
    shard_of = {it.key: it.shard for it in items}
    for r in rows:
        r["shard"] = shard_of[r["key"]]
    info = {"shards": duplicates_coverage(shards), "hamming": max_hamming,
            "clip": f"{clip_model} {clip_pretrained or 'random'} >= {clip_threshold}" if clip_model else ""}
    table = pa.Table.from_pylist(rows, schema=duplicates_schema()).replace_schema_metadata(duplicates_metadata(info))
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    write_bytes_atomic(out_dir / DUPLICATES_FILE, sink.getvalue().to_pybytes())
    write_card(out_dir, shards)
    return rows


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dedupe",
        help="find near-duplicate samples across all shards of a build; writes duplicates.parquet",
        description="Cluster the written samples of a build folder by perceptual hash (and CLIP embeddings when "
        "weights are given) and write duplicates.parquet, which training uses to keep one sample per cluster. "
        "Shards are not changed.",
    )
    p.add_argument("out_dir", metavar="OUT", help="a build folder")
    p.add_argument("--hamming", type=int, default=OutputSettings().dedupe_hamming,
                   help="largest Hamming distance (bits of 64) between near-duplicate hashes; -1: no hash clusters (default: %(default)s)")
    p.add_argument("--clip-model", default="", help="also cluster by open_clip embeddings of this model, e.g. ViT-B-32")
    p.add_argument("--clip-pretrained", default=None, help="its pretrained tag or weights file (needed with --clip-model)")
    p.add_argument("--clip-threshold", type=float, default=0.95, help="cosine similarity of CLIP neighbours (default: %(default)s)")
    p.add_argument("--random-weights", action="store_true", help="PLUMBING TEST ONLY: CLIP with random weights")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from unieditkit.extras import require_extra
    from unieditkit.reader import check_out_dir

    if args.clip_model:
        require_extra("models", "dedupe --clip-model")
    out = check_out_dir(Path(args.out_dir))
    if args.clip_model and not (args.clip_pretrained or args.random_weights):
        raise UserError(f"--clip-model {args.clip_model}: pass its weights with --clip-pretrained TAG|FILE")
    pretrained = None if args.random_weights else args.clip_pretrained
    rows = dedupe(out, args.hamming, args.clip_model, pretrained, args.clip_threshold)
    skipped = sum(not r["keep"] for r in rows)
    print(f"{out / DUPLICATES_FILE}: {len(rows)} samples in {len({r['cluster'] for r in rows})} clusters; {skipped} to skip in training (keep: false)")
    return 0
