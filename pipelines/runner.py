"""Run the stage chain on Ray and hand its output blocks to the shard distributor, surviving crashing workers.

The chain (built by ``stages/registry.py``), in the order a row flows: [detect → segment → embed] → pair →
[caption → categorize] → filter → mats (model stages in brackets run only when the build needs them). CPU stages
are plain callables, so Ray Data fuses adjacent ones into one task per batch; model stages are actor pools that
load their model once (detect, segment and embed share one pool, ``stages/images.py``).

Failures: a worker that dies (a native crash, OOM kill) is retried by Ray a few times. A batch that still
fails is dropped by Ray Data instead of failing the build (``max_errored_blocks``); afterwards every unit that
did not come back runs again *alone* in its own task, so one poison sample cannot take its batch-mates down,
and a unit that fails even alone is quarantined: recorded as rejected with the error, and its shard is written.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from unieditkit.format import row_schema

from .config import TASK_RETRIES, BuildConfig
from .plan import ShardPlan
from .stages.base import Stage
from .stages.pair import complete_row, rejected, unit_key
from .stages.registry import build_chain
from .cluster import start_ray
from .distributor import ShardDistributor, tag_units, tagged_units

if TYPE_CHECKING:
    from .models.weights import ModelSpec


def unit_rows(shards: list[ShardPlan]) -> list[dict[str, Any]]:
    """Rows fed to Ray: paths and annotation JSON only, never decoded pixels."""
    return [
        {
            "unit_id": u.unit_id,
            "group_id": u.group_id,
            "shard": s.name,
            "split": s.split,
            "source_kind": u.source_kind,
            "pair_kind": u.pair_kind,
            "tgt_uri": u.tgt_uri,
            "ref_uri": u.ref_uri,
            "ref_mask_uri": u.ref_mask_uri,
            "tgt_rel": u.relative(u.tgt_uri),
            "ref_rel": u.relative(u.ref_uri),
            "objects": u.objects_json(),
            "ref_objects": "[]",
            "needs_detection": u.needs_detection,
            "category_hint": u.category_hint,
        }
        for s in shards
        for u in s.units
    ]


def _dataset(rows: list[dict[str, Any]], chain: list[Stage], batch_size: int) -> Any:
    import ray

    # Ray 2.60 warns that retry settings are "ray_remote_args"; there is no other way to bound retries yet
    warnings.filterwarnings("ignore", message=".*ray_remote_args.*is deprecated")
    models = sum(1 for st in chain if st.resources is not None)
    # Ray Data reserves part of the cluster for each operator so that no stage starves another. A model-free chain
    # fuses into one operator with nothing to protect, yet the reservation holds it to one task until the first
    # has finished, and leaves ~0.15 s between tasks: at 2 workers, ~12% of the build (bench/bench_build.py, P5).
    ray.data.DataContext.get_current().op_resource_reservation_enabled = models > 0
    fair_cpus = max(0.25, min(1.0, ray.cluster_resources().get("CPU", 1.0) / (models + 1)))
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows) // batch_size, 1000)))
    for st in chain:
        if st.resources is None:
            ds = ds.map_batches(st.fn, batch_size=batch_size, batch_format="pyarrow", max_retries=TASK_RETRIES)
        else:
            res = st.resources
            ds = ds.map_batches(
                st.fn,
                fn_constructor_kwargs=st.kwargs,
                batch_size=res.batch_size,
                batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=res.concurrency),
                num_gpus=res.num_gpus or None,
                num_cpus=res.num_cpus or fair_cpus,
                max_task_retries=TASK_RETRIES,
            )
    return ds.map_batches(tag_units, batch_size=None, batch_format="pyarrow", max_retries=TASK_RETRIES)


def _run_alone(row: dict[str, Any], chain: list[Stage]) -> pa.Table:
    table = pa.Table.from_pylist([row])
    for st in chain:
        table = st.instantiate()(table)
    return table


def _quarantine(row: dict[str, Any], domain: str, error: BaseException) -> pa.Table:
    detail = f"{type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error).strip() else ''}"[:500]
    return pa.Table.from_pylist([complete_row(row, rejected(unit_key(domain, row["unit_id"]), "quarantined", detail), 1)], schema=row_schema())


def rerun_missing(rows: list[dict[str, Any]], chain: list[Stage], config: BuildConfig, distributor: ShardDistributor) -> None:
    """Each unit in its own task; what still fails is quarantined, so every shard gets written. The re-run's
    output stays in the object store like any other block; only a quarantine row (no pixels) is made here.
    A worker process builds each model once for all the units it re-runs (``Stage.instantiate``)."""
    import ray

    gpus = max((st.resources.num_gpus for st in chain if st.resources is not None), default=0.0)
    task = ray.remote(_run_alone).options(max_retries=TASK_RETRIES, retry_exceptions=False, num_gpus=gpus or None)
    futures = [(row, task.remote(row, chain)) for row in rows]
    for row, future in futures:
        try:
            distributor.reset_unit(row["unit_id"])
            distributor.add_block(future)
        except Exception as exc:  # a crashed worker or an error inside a stage: both end in quarantine
            distributor.reset_unit(row["unit_id"])
            distributor.add_block(ray.put(_quarantine(row, config.domain, exc)))
        distributor.poll()


def run_stages(todo: list[ShardPlan], config: BuildConfig, distributor: ShardDistributor, models: ModelSpec | None) -> None:
    from tqdm import tqdm

    start_ray(config)
    rows = unit_rows(todo)
    chain = build_chain(config, models)
    try:
        with tqdm(total=len(rows), unit="unit", desc=f"build {config.domain}", disable=not config.progress) as bar:
            for bundle in _dataset(rows, chain, config.batch_size).iter_internal_ref_bundles():
                for entry in bundle.blocks:
                    units = tagged_units(bundle.schema, entry.metadata.num_rows) if len(bundle.blocks) == 1 else None
                    bar.update(distributor.add_block(entry.ref, units))
                distributor.poll()
            missing = distributor.missing_units()
            if missing:
                rerun_missing([r for r in rows if r["unit_id"] in missing], chain, config, distributor)
                bar.update(len(missing))
            distributor.finish()
    except BaseException:
        distributor.drain()
        raise
    if distributor.incomplete:
        raise RuntimeError(f"pipeline ended with incomplete shards: {distributor.incomplete[:5]}")
