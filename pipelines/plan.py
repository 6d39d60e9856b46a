"""Turn source units into the shard plan: which units go to which split and shard, and which shards are done.

The plan is a pure function of the inputs and the settings: units are mapped onto the taxonomy, assigned a
split by a hash of their group, sorted by id and cut into fixed-size slices. A shard is "done" when its
``_stats.json`` exists (the writer writes it last) and its tar and sidecar still keep what it records
(``unieditkit.integrity``), so re-running the same command only redoes what is missing or was damaged since.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable

from unieditkit.taxonomy import Taxonomy
from unieditkit.errors import UserError
from unieditkit.format import SPLITS, done_shard_names, marker_name, shard_name
from unieditkit.integrity import mismatch, stored_files, vouch
from unieditkit.storage import Folder

from .config import TASK_RETRIES, BuildConfig, OutputSettings
from .sources import Source, WorkUnit


def split_of(group_id: str, ratios: tuple[float, float, float]) -> str:
    """Deterministic split from the group id alone (independent of seed, order and machine)."""
    u = int(hashlib.sha1(group_id.encode("utf-8")).hexdigest()[:15], 16) / 16**15
    edge = 0.0
    for name, ratio in zip(SPLITS, ratios):
        edge += ratio
        if u < edge:
            return name
    return next(name for name, ratio in reversed(list(zip(SPLITS, ratios))) if ratio > 0)


@dataclass
class ShardPlan:
    name: str
    domain: str
    split: str
    units: list[WorkUnit]


@dataclass
class SourceReport:
    """What planning saw and left out; printed in the build summary."""

    units_total: int = 0
    units_planned: int = 0
    objects_planned: int = 0
    units_without_domain_objects: int = 0
    other_domain_objects: Counter = field(default_factory=Counter)
    unmapped_categories: Counter = field(default_factory=Counter)
    skipped_inputs: Counter = field(default_factory=Counter)


def map_units(units: Iterable[WorkUnit], taxonomy: Taxonomy, domain: str, report: SourceReport) -> list[WorkUnit]:
    """Keep the objects of ``domain`` (naming their subcategory); count every other object by why it was left."""
    kept: list[WorkUnit] = []
    seen: set[str] = set()
    for unit in units:
        report.units_total += 1
        if unit.unit_id in seen:
            raise UserError(f"duplicate input '{unit.unit_id}': each image/pair may appear once across all --source inputs")
        seen.add(unit.unit_id)
        objects = []
        for obj in unit.objects:
            sub = taxonomy.lookup(obj.category)
            if sub is None:
                report.unmapped_categories[obj.category] += 1
            elif sub.domain != domain:
                report.other_domain_objects[sub.domain] += 1
            else:
                objects.append(dataclasses.replace(obj, subcategory=sub.key))
        if objects or unit.needs_detection:
            kept.append(dataclasses.replace(unit, objects=tuple(objects)))
            report.objects_planned += len(objects)
        else:
            report.units_without_domain_objects += 1
    report.units_planned = len(kept)
    return kept


def make_plan(
    sources: list[Source], taxonomy: Taxonomy, domain: str, settings: OutputSettings
) -> tuple[list[ShardPlan], SourceReport]:
    report = SourceReport()
    units = map_units((u for s in sources for u in s.units()), taxonomy, domain, report)
    for source in sources:  # inputs a source could not turn into units at all (e.g. a video that won't open)
        report.skipped_inputs.update(getattr(source, "skipped", {}))
    by_split: dict[str, list[WorkUnit]] = {s: [] for s in SPLITS}
    for unit in units:
        by_split[split_of(unit.group_id, settings.split_ratios)].append(unit)
    shards = []
    n = settings.units_per_shard
    for split in SPLITS:
        ordered = sorted(by_split[split], key=lambda u: u.unit_id)
        for i in range(0, len(ordered), n):
            shards.append(ShardPlan(shard_name(domain, split, i // n), domain, split, ordered[i : i + n]))
    return shards, report


def _read_marker(out: Folder, name: str) -> Any:
    """The ``files`` a shard's marker records, or None when the marker is unreadable or from an older unieditkit."""
    try:
        return json.loads(out.read_bytes(marker_name(name)))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pending(shards: list[ShardPlan], out: Folder, config: BuildConfig) -> tuple[list[ShardPlan], dict[str, str]]:
    """Shards to (re)build, and why each shard that has a done marker must be rebuilt; writes nothing.

    What a done shard's files are checked against is ``unieditkit.integrity``'s promise: one listing of the
    folder and each marker (a few hundred bytes) are read here, never a tar. The shards the store cannot vouch
    for are hashed in full, in parallel Ray tasks on the workers.
    """
    stored = stored_files(out)
    done = set(done_shard_names(stored))
    marked = [s for s in shards if s.name in done]
    with ThreadPoolExecutor(max_workers=16) as pool:  # small reads that mostly wait on the store
        recorded = dict(zip((s.name for s in marked), pool.map(lambda s: _read_marker(out, s.name), marked)))
    damage = {name: "its _stats.json is unreadable or from an older unieditkit" if files is None else vouch(stored, name, files)
              for name, files in recorded.items()}
    unsure = [name for name, why in damage.items() if why is None]
    if unsure:
        import ray

        from .cluster import start_ray

        start_ray(config)
        task = ray.remote(mismatch).options(max_retries=TASK_RETRIES)
        damage.update(zip(unsure, ray.get([task.remote(out, name, recorded[name]) for name in unsure])))
    damaged = {name: why for name, why in damage.items() if why}
    return [s for s in shards if s.name not in damage or s.name in damaged], damaged
