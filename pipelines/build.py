"""``unieditkit build``: sources → plan → Ray Data stages → shard writer → index and card.

Follow one sample: a source yields a ``WorkUnit`` (``pipelines/sources``; what a source must decode to make its
units, such as a clip's frame count, is measured first in parallel Ray tasks and kept in the output folder,
``probe.py``), the plan puts it into a split and a shard (``plan.py``), Ray Data runs it through the stages
(``stages/pair.py`` cuts the reference and the fine mask, ``stages/mats.py`` adds the rough and box masks), the
driver collects rows per shard and writes the shard when all its units are in (``writer.py``), and
``catalog.py`` refreshes the index and the card.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from unieditkit.taxonomy import Taxonomy, load_taxonomy
from unieditkit.errors import UserError
from unieditkit.extras import require_extra
from unieditkit.faults import checkpoint
from unieditkit.format import BUILD_CONFIG_FILE, describe_splits, marker_name, split_sizes
from unieditkit.raycluster import joining
from unieditkit.storage import Folder
from unieditkit.uri import file_of, is_url

from .catalog import finalize
from .config import BuildConfig
from .distributor import ShardDistributor
from .lock import build_lock
from .plan import ShardPlan, SourceReport, make_plan, pending
from .probe import Probes, probe_sources
from .cluster import start_ray
from .runner import run_stages
from .sources import Source, default_sources, parse_source
from .sources.files import remote_versions
from .stages.model_stages import MODEL_STAGES

if TYPE_CHECKING:
    from .models.weights import ModelSpec



@dataclass
class BuildSummary:
    domain: str
    out_dir: Folder
    shards_total: int = 0
    shards_written: int = 0
    samples_written: int = 0
    rejected: Counter = field(default_factory=Counter)
    label_disagreements: int = 0
    seconds: float = 0.0
    report: SourceReport = field(default_factory=SourceReport)
    repaired: dict[str, str] = field(default_factory=dict)
    #: fallbacks and warnings about how the samples were made (e.g. GrabCut instead of SAM, random weights)
    notes: list[str] = field(default_factory=list)
    #: what planning measured (clips' frame counts and shots) and what it took from the output folder's cache
    probes: Probes | None = None
    #: samples per split of the domain in the folder after this build (done earlier or now), ``format.split_sizes``
    splits: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        skipped = self.shards_total - self.shards_written
        out = [
            f"{self.domain}: {self.samples_written} samples written in {self.shards_written} shards "
            f"({skipped} of {self.shards_total} shards already done) in {self.seconds:.1f} s → {self.out_dir}"
        ]
        if self.splits:
            out.append(self.splits_line())
        if self.probes is not None and self.probes.probed + self.probes.cached:
            out.append(self.probes.line())
        for name, why in sorted(self.repaired.items()):
            out.append(f"rebuilt {name}: {why}")
        if self.rejected:
            out.append("rejected: " + ", ".join(f"{r} {n}" for r, n in sorted(self.rejected.items())))
        if self.label_disagreements:
            out.append(f"label check: the label of {self.label_disagreements} samples is not in CLIP's top-k "
                       "(flagged 'label_check: disagree' in their JSON; human labels are kept all the same)")
        return out + report_lines(self.report) + [f"note: {n}" for n in self.notes]

    def splits_line(self) -> str:
        """The splits a newcomer can pass to ``edit``/``eval``, which read ``test`` by default: a small build may
        draw none (the bundled ``animals`` sample has 34 train and 2 val samples)."""
        line = f"splits: {describe_splits(self.splits)}"
        if "test" not in self.splits:
            other = "val" if "val" in self.splits else next(iter(self.splits))
            line += (f"; no test split (`unieditkit edit --data` and `eval` read --split test unless told otherwise: "
                     f"pass --split {other})")
        return line


def report_lines(r: SourceReport) -> list[str]:
    """What planning left out and why, for the build summary and the dry run."""
    out = []
    if r.other_domain_objects:
        out.append("objects of other domains (build them with --domain): " + ", ".join(f"{d} {n}" for d, n in sorted(r.other_domain_objects.items())))
    if r.skipped_inputs:
        out.append("inputs skipped by their source: " + ", ".join(f"{k} {n}" for k, n in sorted(r.skipped_inputs.items())))
    if r.unmapped_categories:
        top = ", ".join(f"'{c}' {n}" for c, n in r.unmapped_categories.most_common(10))
        out.append(f"unmapped categories ({sum(r.unmapped_categories.values())} objects; add synonyms to a taxonomy file to use them): {top}")
    return out


def inputs_fingerprint(shards: list[ShardPlan]) -> str:
    """Size and modification time of every input file, so an input edited in place between a killed build and
    its resume is noticed (ids and annotations alone would not change). A stat per file, not a hash: planning
    500K inputs must not read them all; a copy of the inputs with new mtimes therefore counts as other inputs.
    On object storage the version is the ETag (or what the filesystem reports, ``remote_versions``), from one
    listing per folder."""
    uris = [uri for s in shards for u in s.units for uri in (u.tgt_uri, u.ref_uri, u.ref_mask_uri, *(o.mask_uri for o in u.objects))]
    paths = [file_of(uri) for uri in uris]
    remote = remote_versions(path for path in paths if is_url(path))
    h = hashlib.sha256()
    for uri, path in zip(uris, paths):
        if is_url(path):
            size, version = remote.get(path, (-1, "-1"))
            h.update(f"{uri}\0{size}\0{version}\0".encode())
            continue
        st = os.stat(path) if path and os.path.isfile(path) else None
        h.update(f"{uri}\0{st.st_size if st else -1}\0{st.st_mtime_ns if st else -1}\0".encode())
    return h.hexdigest()


def plan_fingerprint(shards: list[ShardPlan]) -> str:
    """Hash of which unit sits in which shard: a resumed build must see exactly the same plan."""
    h = hashlib.sha256()
    for s in shards:
        h.update(s.name.encode())
        for u in s.units:
            h.update(b"\0" + u.unit_id.encode() + b"\0" + u.objects_json().encode())
    return h.hexdigest()


def check_build_config(
    out: Folder, config: BuildConfig, taxonomy: Taxonomy, sources: list[Source], shards: list[ShardPlan], models: ModelSpec | None,
    record: bool = True,
) -> None:
    """Refuse to resume into a folder built from other inputs or settings, which would mix two datasets; a first
    build of the domain is recorded unless ``record`` is false (a dry run)."""
    path = out.path(BUILD_CONFIG_FILE) if out.local else f"{out}/{BUILD_CONFIG_FILE}"
    recorded: dict[str, Any] = json.loads(out.read_bytes(BUILD_CONFIG_FILE)) if out.exists(BUILD_CONFIG_FILE) else {"domains": {}}
    entry = {
        "settings": config.settings.to_json(),
        "models": dataclasses.asdict(models) if models else {},
        "sources": [s.describe() for s in sources],
        "taxonomy": f"{taxonomy.name} {taxonomy.version} {taxonomy.fingerprint()[:16]}",
        "plan": plan_fingerprint(shards),
        "inputs": inputs_fingerprint(shards),
    }
    entry = json.loads(json.dumps(entry))  # as it reads back from the file: tuples become lists
    previous = recorded["domains"].get(config.domain)
    if previous is not None and previous != entry:
        what = [k for k in entry if previous.get(k) != entry[k]]
        raise UserError(
            f"{path}: '{config.domain}' was built here with different {' and '.join(what)}; "
            f"re-run with the same inputs and settings to resume, or choose a new --out"
        )
    if previous is None and record:
        recorded["domains"][config.domain] = entry
        out.write_bytes(BUILD_CONFIG_FILE, (json.dumps(recorded, indent=1, sort_keys=True) + "\n").encode())


def resolve_model_stages(config: BuildConfig, shards: list[ShardPlan]) -> ModelSpec | None:
    """The model stages this build runs: as asked, or ("auto") each stage some unit needs by its declaration's
    ``auto`` rule (``stages/model_stages.py``) — detection and the rest of the mining stages for unannotated input,
    only segmentation for box-only annotations, none otherwise (so an annotated build runs offline without any
    weights)."""
    from .models.weights import ModelSpec

    wanted = config.model_stages.stages
    if wanted == "auto":
        units = [u for s in shards for u in s.units]
        wanted = tuple(name for name, stage in MODEL_STAGES.items() if any(stage.auto(u) for u in units))
    unknown = sorted(set(wanted) - set(MODEL_STAGES))
    if unknown:
        raise UserError(f"--models {','.join(wanted)}: unknown stage(s) {', '.join(unknown)}; choose from {', '.join(MODEL_STAGES)}, 'auto' or 'none'")
    if not wanted:
        return None
    require_extra("models", f"model stages {','.join(s for s in MODEL_STAGES if s in wanted)}")
    spec = dataclasses.replace(config.models or ModelSpec(), stages=tuple(s for s in MODEL_STAGES if s in wanted))
    from .models.weights import require_weights

    require_weights(spec)
    return spec


def model_notes(models: ModelSpec | None, shards: list[ShardPlan]) -> list[str]:
    """What the summary must say about the models that made the samples (and, for mined video, the tracker)."""
    if models is None:
        return []
    from .models.weights import fallback_note, tracker_note

    notes = [fallback_note(models)]
    if any(u.pair_kind == "video" and u.needs_detection for s in shards for u in s.units):
        notes.append(tracker_note(models))
    if models.random_init:
        notes.append("--random-weights: the model stages ran with random weights; every sample is marked random_init: true "
                     "and is noise, not training data")
    return [n for n in notes if n]


def storage_notes(out: Folder) -> list[str]:
    """Object storage has no advisory lock: say so in every summary instead of pretending to hold one."""
    if out.local:
        return []
    return [f"{out}: object storage has no build lock; run one build per output prefix at a time (README 'Scale')"]


def _plan(config: BuildConfig) -> tuple[Taxonomy, list[Source], Folder, Probes, list[ShardPlan], SourceReport]:
    """Everything a build decides before it writes anything."""
    taxonomy = load_taxonomy(config.taxonomy_path or None)
    taxonomy.domain(config.domain)
    sources = [parse_source(s) for s in config.sources] if config.sources else default_sources()
    out = output_folder(config.out_dir)
    if config.ray_address:  # joined before planning: a wrong address or a missing token is one line, nothing written
        with joining(config.ray_address):
            start_ray(config)
    probes = probe_sources(sources, out, config)
    shards, report = make_plan(sources, taxonomy, config.domain, config.settings)
    if not shards:
        raise UserError(f"no input for domain '{config.domain}' in {', '.join(s.describe() for s in sources)} ({report.units_total} units read, none with objects of this domain)")
    return taxonomy, sources, out, probes, shards, report


def dry_run(config: BuildConfig) -> list[str]:
    """``build --dry-run``: the plan and what a build would do with it, checked as the build would (weights, a
    resume's inputs and settings, done shards), with nothing written: not the folder, its lock or the probes."""
    taxonomy, sources, out, probes, shards, report = _plan(config)
    models = resolve_model_stages(config, shards)
    check_build_config(out, config, taxonomy, sources, shards, models, record=False)
    todo, damaged = pending(shards, out, config)
    per_split = Counter(s.split for s in shards)
    lines = [
        f"{config.domain}: dry run, nothing written: {report.units_planned} units ({report.objects_planned} objects) "
        f"in {len(shards)} shards ({', '.join(f'{sp} {n}' for sp, n in per_split.items())}); "
        f"{len(shards) - len(todo)} done, {len(todo)} to build → {out}"
    ]
    if probes.probed + probes.cached:
        lines.append(probes.line())
    lines += [f"would rebuild {name}: {why}" for name, why in sorted(damaged.items())]
    return lines + report_lines(report) + [f"note: {n}" for n in model_notes(models, shards) + storage_notes(out) + probes.notes]


def build(config: BuildConfig) -> BuildSummary:
    t0 = time.perf_counter()
    taxonomy, sources, out, probes, shards, report = _plan(config)
    models = resolve_model_stages(config, shards)  # missing weights are said before the folder or its lock exists
    out.makedirs()
    with build_lock(out.local_path()) if out.local else nullcontext():
        try:
            probes.save()
            summary = _build_locked(config, taxonomy, sources, out, shards, report, models)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            out.remove_partial_files()
            done = len(out.done_shards())
            raise UserError(
                f"disk full while writing into {out} ({exc.filename or 'a shard'}): the {done} complete shards are kept; "
                "free some space and re-run the same command to finish"
            ) from None
    summary.probes = probes
    summary.notes += probes.notes
    summary.seconds = time.perf_counter() - t0
    return summary


def output_folder(out_dir: str) -> Folder:
    """The build folder (a local path or object storage), checked before anything is planned or created, so a bad
    ``--out`` leaves nothing behind."""
    out = Folder(out_dir, where=f"--out {out_dir}")
    if out.local and out.local_path().exists() and not out.local_path().is_dir():
        raise UserError(f"--out {out_dir}: is a file, not a folder; give a folder (new or from an earlier build)")
    out.check_store(f"--out {out_dir}")
    return out


def _build_locked(
    config: BuildConfig, taxonomy: Taxonomy, sources: list[Source], out: Folder, shards: list[ShardPlan], report: SourceReport,
    models: ModelSpec | None,
) -> BuildSummary:
    check_build_config(out, config, taxonomy, sources, shards, models)
    checkpoint("planned")
    summary = BuildSummary(config.domain, out, shards_total=len(shards), report=report, notes=model_notes(models, shards) + storage_notes(out))
    todo, summary.repaired = pending(shards, out, config)
    for name in summary.repaired:  # never count a shard as done on the strength of a marker that describes other bytes
        out.remove(marker_name(name))
    if todo:
        out.remove_partial_files()

        def on_done(stats: dict[str, Any]) -> None:
            summary.shards_written += 1
            summary.samples_written += stats["samples"]
            summary.rejected.update(stats["rejected"])
            summary.label_disagreements += stats["label_disagreements"]

        run_stages(todo, config, ShardDistributor(out, todo, on_done, config.settings.dedupe_hamming), models)
    summary.splits = split_sizes(finalize(out), [config.domain])
    return summary
