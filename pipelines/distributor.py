"""Hand finished shards to Ray tasks that write them, so sample bytes never travel through the driver.

The stage chain's output blocks stay in Ray's object store. For each block the driver learns only which units
(and how many of each unit's rows) it holds: the chain's last step (``tag_units``, fused into the same Ray task)
writes that list into the block's Arrow schema metadata, which Ray Data hands to the driver with the block's
reference anyway. A block whose list does not account for its rows exactly (Ray Data may split or merge its output)
and a re-run's block are asked by a tiny task that runs next to the block instead. Both ways are cheap in bytes;
the task, though, runs beside the CPU-bound ones, so Ray starts extra worker processes for it: the largest
overhead the profile found (``bench/profile_build.py``). When every unit of a shard is in, the driver starts a
write task with the refs of the blocks that hold the shard's rows; that task fetches them on its own node, keeps
the shard's rows and writes the shard (``writer.write_shard``), and sends back only the shard's stats. A unit
that is run again (after its batch was lost) gets its rows from its own new block; the rows it may have left in
older blocks are excluded by unit id, so a partial batch is never duplicated.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import pyarrow as pa
import pyarrow.compute as pc

from .config import TASK_RETRIES
from .plan import ShardPlan
from .writer import write_shard

if TYPE_CHECKING:
    from unieditkit.storage import Folder

#: concurrently running write tasks; more only queue blocks in the object store
MAX_WRITES_IN_FLIGHT = 8
#: the schema metadata key of a block's unit list (``tag_units``)
UNITS_KEY = b"unieditkit_units"

Summary = list[tuple[str, str, int]]


def block_units(block: pa.Table) -> Summary:
    """``(shard, unit_id, unit_rows)`` of every row of a block: all the driver needs to know about it."""
    return list(zip(block["shard"].to_pylist(), block["unit_id"].to_pylist(), block["unit_rows"].to_pylist()))


def tag_units(block: pa.Table) -> pa.Table:
    """The chain's last step, in the worker: the block's ``block_units`` as JSON in its schema metadata."""
    return block.replace_schema_metadata({UNITS_KEY: json.dumps(block_units(block)).encode()})


def tagged_units(schema: Any, num_rows: int | None) -> Summary | None:
    """The unit list ``tag_units`` put into a block's schema, if it accounts for exactly the block's rows."""
    meta = getattr(schema, "metadata", None) or {}
    if UNITS_KEY not in meta:
        return None
    units = [(shard, unit, int(rows)) for shard, unit, rows in json.loads(meta[UNITS_KEY])]
    return units if len(units) == num_rows else None


def write_from_blocks(
    out: Folder, shard: ShardPlan, dedupe_hamming: int, excluded: list[list[str]], *blocks: pa.Table
) -> dict[str, Any]:
    """Runs in a Ray task: gather one shard's rows from the blocks (``excluded[i]``: unit ids whose rows in
    ``blocks[i]`` are stale) and write the shard."""
    parts = []
    for block, skip in zip(blocks, excluded):
        keep = pc.equal(block["shard"], shard.name)
        if skip:
            keep = pc.and_(keep, pc.invert(pc.is_in(block["unit_id"], pa.array(skip, pa.string()))))
        parts.append(block.filter(keep))
    rows = pa.concat_tables(parts).to_pylist() if parts else []
    return write_shard(out, shard, rows, dedupe_hamming)


@dataclass
class _Shard:
    plan: ShardPlan
    units_left: set[str]
    blocks: list[tuple[Any, set[str]]] = field(default_factory=list)  # (block ref, stale unit ids in it)


class ShardDistributor:
    """Tracks which units came back in which blocks and starts one write task per complete shard.

    ``on_done`` gets each written shard's stats, in completion order. Call ``add_block`` for every output
    block, ``reset_unit`` before a unit's rows are replaced by a re-run, and ``finish`` at the end.
    """

    def __init__(self, out: Folder, shards: list[ShardPlan], on_done: Callable[[dict[str, Any]], None], dedupe_hamming: int = -1) -> None:
        import ray

        self.out = out
        self.dedupe_hamming = dedupe_hamming
        self.on_done = on_done
        self.shards = {s.name: _Shard(s, {u.unit_id for u in s.units}) for s in shards}
        self.unit_shard = {u.unit_id: s.name for s in shards for u in s.units}
        self.unit_seen: Counter = Counter()
        self._summarize = ray.remote(block_units).options(num_cpus=0)
        self._write = ray.remote(write_from_blocks).options(max_retries=TASK_RETRIES, retry_exceptions=False)
        self.writing: list[Any] = []

    def add_block(self, ref: Any, units: Summary | None = None) -> int:
        """Take one output block (an object ref) and, where known, its ``block_units`` (else a task next to the
        block reads them); returns how many units it completed."""
        import ray

        completed = 0
        touched: set[str] = set()
        for shard, unit_id, unit_rows in units if units is not None else ray.get(self._summarize.remote(ref)):
            state = self.shards[shard]
            if shard not in touched:
                state.blocks.append((ref, set()))
                touched.add(shard)
            self.unit_seen[unit_id] += 1
            if self.unit_seen[unit_id] == unit_rows and unit_id in state.units_left:
                state.units_left.discard(unit_id)
                completed += 1
        for shard in touched:
            if not self.shards[shard].units_left:
                self._start_write(self.shards.pop(shard))
        return completed

    def reset_unit(self, unit_id: str) -> None:
        """Forget what a unit delivered so far: its rows in earlier blocks become stale."""
        state = self.shards.get(self.unit_shard[unit_id])
        if state is not None:
            for _, stale in state.blocks:
                stale.add(unit_id)
        self.unit_seen.pop(unit_id, None)

    def missing_units(self) -> set[str]:
        """Units that have not (fully) come back, e.g. because their batch was lost to a crashing worker."""
        return {u for s in self.shards.values() for u in s.units_left}

    @property
    def incomplete(self) -> list[str]:
        return sorted(self.shards)

    def _start_write(self, state: _Shard) -> None:
        import ray

        refs = [ref for ref, _ in state.blocks]
        excluded = [sorted(stale) for _, stale in state.blocks]
        self.writing.append(self._write.remote(self.out, state.plan, self.dedupe_hamming, excluded, *refs))
        while len(self.writing) > MAX_WRITES_IN_FLIGHT:
            self._collect(ray.wait(self.writing, num_returns=1)[0])

    def poll(self) -> None:
        """Report the shards whose write has finished, without waiting."""
        import ray

        if self.writing:
            self._collect(ray.wait(self.writing, num_returns=len(self.writing), timeout=0)[0])

    def finish(self) -> None:
        """Wait for every write; the first failure is raised as its original exception after all writes ended,
        so no write task is still producing files while the caller cleans up."""
        import ray

        first: BaseException | None = None
        while self.writing:
            try:
                self._collect(ray.wait(self.writing, num_returns=1)[0])
            except BaseException as exc:  # keep waiting for the others before raising
                first = first or exc
        if first is not None:
            raise first

    def drain(self) -> None:
        """After a failure elsewhere: let the writes in flight end (each publishes whole files or none)."""
        import ray

        if self.writing:
            ray.wait(self.writing, num_returns=len(self.writing))
            self.writing.clear()

    def _collect(self, ready: list[Any]) -> None:
        import ray

        for ref in ready:
            self.writing.remove(ref)
            try:
                stats = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                raise exc.cause if isinstance(exc.cause, BaseException) else exc from None
            self.on_done(stats)
