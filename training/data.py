"""Training batches from the build's WebDataset shards (docs/FORMAT.md), deterministic per (seed, rank, step).

Stream design (docs/TRAINING.md has the reasoning):

* Shards are drawn with ``wds.ResampledShards`` (an endless, seeded draw with replacement), then split between
  ranks and between DataLoader workers like ``wds.split_by_node`` / ``wds.split_by_worker`` do, with the rank
  passed explicitly (worker processes do not see the process group). Resampling means every rank always has data,
  whatever the shard and sample counts, so DDP never waits on a rank that ran dry.
* The stream is cut into data epochs of ``epoch_batches`` batches per rank, and epoch ``e`` is seeded by
  ``(seed, e)``. Worker ``w`` of ``W`` makes the batches for steps ``e*E + w, e*E + w + W, ...``; each batch knows
  its global step, so the worker decodes only the mask variant the MATS curriculum wants at that step.
* Resuming at step ``s`` re-creates epoch ``s // E`` and fast-forwards each worker past the samples it had
  pulled before ``s`` without decoding them: every batch carries its worker's count of pulled samples (bad ones
  included), the checkpoint keeps the counts of the last batches it consumed (``BatchSource.position``), and
  each sample's random draws are seeded by its index, so skipping needs no replay of decoding or of a random
  generator. Only the shuffle buffer sees the skipped samples (as raw bytes), which keeps its state exact. A
  checkpoint without counts (or another ``data.num_workers``) falls back to decoding the skipped batches.
* A sample that cannot be read or decoded is skipped and counted (``batch["skipped"]``), never fatal; only a long
  run of consecutive failures stops training, because then the data itself is wrong.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import logging
import pathlib
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import webdataset as wds
from PIL import Image

from unieditkit.training.model.anchors import Anchors
from unieditkit.training.model.curriculum import Curriculum
from unieditkit.training.runtime.seeding import stable_seed
from unieditkit.errors import UserError
from unieditkit.format import (
    DONE_MARKER_SUFFIX, FINE, GREY, MASK_VARIANTS, META_MEMBER, REF_IMAGE, ROUGH, SIDECAR_SUFFIX, TAR_SUFFIX, TARGET_IMAGE,
    describe_splits, find_done_shards, local_split_sizes, mask_member,
)

log = logging.getLogger(__name__)

MAX_BAD_IN_A_ROW = 1000
_WARN_FIRST = 5


def find_shards(root: str | pathlib.Path, split: str, domains: Iterable[str] = ()) -> list[str]:
    """The done ``{domain}-{split}-NNNNNN.tar`` shards in ``root`` (``find_done_shards``), or a one-line error
    naming the splits the folder has."""
    root = pathlib.Path(root)
    if not root.is_dir():
        raise UserError(f"--data {root}: not a folder; pass the output folder of `unieditkit build`")
    wanted = list(domains)
    shards = [str(root / f"{name}{TAR_SUFFIX}") for name in find_done_shards(root, split, wanted)]
    if not shards:
        which = f" for domains {', '.join(wanted)}" if wanted else ""
        present = local_split_sizes(root, wanted)
        if present:
            raise UserError(f"--data {root}: no finished {split} shards{which}; it has {describe_splits(present)}: "
                            "pick one of those")
        raise UserError(
            f"--data {root}: no finished {split} shards{which} ({{domain}}-{split}-NNNNNN{TAR_SUFFIX} with its {DONE_MARKER_SUFFIX}); "
            "run `unieditkit build` into that folder first"
        )
    return shards


#: the run folder's record of what it trained on (``write_trained_on``), read by ``unieditkit edit``
TRAINED_ON = "trained_on.json"


def trained_on(shards: list[str]) -> dict[str, Any]:
    """The domains and subcategories (with sample counts) of ``shards``, from their parquet sidecars.

    Recorded in the run folder because ``data.domains`` is empty when a run took every domain in the folder, so the
    config alone cannot tell ``unieditkit edit`` which anchor a one-domain run's router expects. The sidecars hold
    one row per sample, so this reads a few columns, never the tars.
    """
    import pyarrow.parquet as pq

    counts: dict[tuple[str, str, int], int] = {}
    for tar in shards:
        sidecar = pathlib.Path(tar[: -len(TAR_SUFFIX)] + SIDECAR_SUFFIX)
        if not sidecar.is_file():
            raise UserError(f"{sidecar}: missing (a finished shard has one); re-run `unieditkit build` into that folder")
        table = pq.read_table(sidecar, columns=["status", "domain", "subcategory", "subcategory_id"]).to_pydict()
        for status, domain, sub, sub_id in zip(table["status"], table["domain"], table["subcategory"],
                                                table["subcategory_id"]):
            if status == "ok":
                counts[(domain, sub, int(sub_id))] = counts.get((domain, sub, int(sub_id)), 0) + 1
    return {
        "domains": sorted({d for d, _, _ in counts}),
        "subcategories": [{"domain": d, "key": k, "id": i, "samples": n} for (d, k, i), n in sorted(counts.items())],
    }


def write_trained_on(run_dir: pathlib.Path, shards: list[str]) -> None:
    (run_dir / TRAINED_ON).write_text(json.dumps(trained_on(shards), indent=1) + "\n", encoding="utf-8")


def read_trained_on(run_dir: pathlib.Path) -> dict[str, Any] | None:
    """The run's record, or None for a run trained before runs recorded it."""
    path = run_dir / TRAINED_ON
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def duplicate_skips(root: str | pathlib.Path) -> frozenset[str]:
    """Keys to leave out: all but one member of each near-duplicate cluster in ``duplicates.parquet``.

    ``unieditkit dedupe`` finds clusters across shards (the build only dedupes within a shard) and marks one
    member per cluster ``keep``; training on the others would over-weight those objects. A file computed before
    the folder's shards last changed would skip the wrong samples, so it is refused, not used.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from unieditkit.reader import done_shards
    from unieditkit.format import DUPLICATES_FILE as DUPLICATES, duplicates_coverage as coverage, duplicates_info as read_info

    root = pathlib.Path(root)
    info = read_info(root)
    if info is None:
        return frozenset()
    if info["shards"] != coverage(done_shards(root)):
        raise UserError(f"{root / DUPLICATES}: computed before the shards last changed; re-run `unieditkit dedupe {root}`, "
                        "or set data.skip_duplicates: false to train on every sample")
    table = pq.read_table(root / DUPLICATES, columns=["key", "keep"])
    return frozenset(table.filter(pc.invert(table["keep"]))["key"].to_pylist())


def letterbox(img: Image.Image, size: int, fill: int, resample: int) -> Image.Image:
    """Scale the longest side to ``size`` and pad to a square; nothing is cropped, so the object stays whole."""
    w, h = img.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = Image.new(img.mode, (size, size), fill if img.mode == "L" else (fill,) * 3)
    canvas.paste(img.resize((nw, nh), resample), ((size - nw) // 2, (size - nh) // 2))
    return canvas


def _rgb(data: bytes, size: int) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.draft("RGB", (size, size))  # JPEG: decode at 1/2..1/8 scale when the target is small
    return img.convert("RGB")


@functools.lru_cache(maxsize=64)
def build_mats_params(shard_url: str, domain: str) -> Any:
    """The ``MatsParams`` the shard's build drew its rough masks with (its folder's ``build_config.json``), so a
    re-drawn rough mask looks like the stored ones: ``regenerate`` gives them back bit for bit."""
    from unieditkit.format import recorded_mats_params

    return recorded_mats_params(pathlib.Path(shard_url).parent, domain)


def _mask_image(sample: dict, variant: str, meta: dict, rough_source: str, draw: int) -> Image.Image:
    """The variant's mask; a rough mask may be re-drawn from the fine one (``regenerate``: the stored seed, so
    the same mask; ``resample``: a new seed per draw, so a new rough mask every time the sample comes up), with
    the MATS parameters the build recorded."""
    if MASK_VARIANTS[variant] == ROUGH and rough_source != "stored":
        from unieditkit.mats import rough_mask

        if "__url__" not in sample:
            raise UserError(f"curriculum.rough_source {rough_source}: sample {sample.get('__key__', '?')} was not "
                            "read from a build folder, whose build_config.json holds its MATS parameters")
        params = build_mats_params(str(sample["__url__"]), meta["domain"])
        seed = int(meta["mats"]["seed"])
        if rough_source == "resample":
            seed = stable_seed(seed, draw)
        fine = np.asarray(Image.open(io.BytesIO(sample[mask_member(FINE)])).convert("L")) > 127
        rough, _ = rough_mask(fine, seed=seed, params=params)
        return Image.fromarray(np.where(rough, 255, 0).astype(np.uint8), mode="L")
    return Image.open(io.BytesIO(sample[mask_member(variant)])).convert("L")


def _to_tensor(img: Image.Image) -> torch.Tensor:
    arr = np.asarray(img, dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1) / 127.5 - 1.0


def decode_sample(
    sample: dict, variant: str, size: int, anchors: Anchors, rough_source: str = "stored", draw: int = 0
) -> dict:
    """Decode the members one training sample needs (never the other mask variants) at ``size`` x ``size``.

    Images are in [-1, 1]; the mask is {0, 1} and marks every output pixel the object touches, so no object
    pixel leaks into the condition image.
    """
    meta = json.loads(sample[META_MEMBER])
    domain = anchors.domain_index(meta["domain"])
    subcategory = int(meta["subcategory_id"])
    ref = letterbox(_rgb(sample[REF_IMAGE], size), size, GREY, Image.BICUBIC)
    tgt_img = _rgb(sample[TARGET_IMAGE], size)
    mask_img = _mask_image(sample, variant, meta, rough_source, draw)
    # geometry from the full-resolution mask: the JPEG may have been decoded at reduced scale
    tgt = letterbox(tgt_img.resize(mask_img.size, Image.BICUBIC) if tgt_img.size != mask_img.size else tgt_img,
                    size, GREY, Image.BICUBIC)
    mask = letterbox(mask_img, size, 0, Image.BOX)
    return {
        "ref": _to_tensor(ref),
        "tgt": _to_tensor(tgt),
        "mask": torch.from_numpy((np.asarray(mask) > 0).astype(np.float32))[None],
        "domain": domain,
        "subcategory": subcategory,
        "variant": list(MASK_VARIANTS).index(variant),
        "key": sample["__key__"],
        "caption": caption(meta),
        "name": display_name(meta),
    }


def display_name(meta: dict) -> str:
    """The name a prompt template gets: the subcategory's display name, else its key."""
    return str(meta.get("subcategory_name") or meta.get("subcategory") or "")


def caption(meta: dict) -> str:
    """The text a prompt-conditioned backbone gets: the reference object's caption (it names what to insert),
    else the target scene's; empty when the build wrote none (the backbone then uses its name template)."""
    captions = meta.get("captions") or {}
    return str(captions.get("ref") or captions.get("tgt") or "")


def collate(items: list[dict]) -> dict:
    return {
        "ref": torch.stack([i["ref"] for i in items]),
        "tgt": torch.stack([i["tgt"] for i in items]),
        "mask": torch.stack([i["mask"] for i in items]),
        "domain": torch.tensor([i["domain"] for i in items], dtype=torch.long),
        "subcategory": torch.tensor([i["subcategory"] for i in items], dtype=torch.long),
        "variant": torch.tensor([i["variant"] for i in items], dtype=torch.long),
        "keys": [i["key"] for i in items],
        "captions": [i["caption"] for i in items],
        "names": [i["name"] for i in items],
    }


def val_shards(root: str | pathlib.Path, domains: Iterable[str]) -> list[str]:
    """The val split's finished shards, which validation (``train.val_every``) needs."""
    try:
        return find_shards(root, "val", domains)
    except UserError:
        raise UserError(f"train.val_every: --data {root} has no finished val shards; build a val split or set "
                        "--val-every 0") from None


def fixed_subset(root: str | pathlib.Path, domains: Iterable[str], count: int, size: int, anchors: Anchors,
                 rough_source: str) -> dict[str, dict]:
    """The first ``count`` readable samples of the val split (shards in name order, samples in stored order),
    decoded once per mask variant: the same inputs at every validation, so the losses are comparable over a run.
    Returns ``{variant: collated batch}``."""
    chosen = []
    for sample in wds.DataPipeline(wds.SimpleShardList(val_shards(root, domains)), wds.tarfile_to_samples()):
        try:
            chosen.append({v: decode_sample(sample, v, size, anchors, rough_source) for v in MASK_VARIANTS})
        except Exception as exn:  # noqa: BLE001 - as in training: an unreadable sample is passed over, and said
            log.warning("validation: skipping bad sample %s: %r", sample.get("__key__", "?"), exn)
        if len(chosen) == count:
            break
    if not chosen:
        raise UserError(f"train.val_every: the val shards in {root} hold no readable sample; rebuild them")
    return {v: collate([c[v] for c in chosen]) for v in MASK_VARIANTS}


def _every(index: int, count: int) -> Callable[[Iterable], Iterator]:
    """``islice(src, index, None, count)``: wds.split_by_node / split_by_worker with an explicit position."""
    return lambda src: itertools.islice(src, index, None, count)


@dataclass
class EpochStream(torch.utils.data.IterableDataset):
    """One data epoch of one rank: batches for steps ``[first_step, end_step)`` of epoch ``epoch``."""

    shards: list[str]
    anchors: Anchors
    curriculum: Curriculum
    image_size: int
    batch_size: int
    seed: int
    epoch: int
    epoch_start: int
    first_step: int
    end_step: int
    rank: int
    world_size: int
    shuffle_buffer: int
    rough_source: str
    skip: frozenset[str] = frozenset()
    fast_forward: dict[int, int] | None = None  # worker -> samples pulled before first_step; None: decode to know

    def __post_init__(self) -> None:
        super().__init__()

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        bad = {"count": 0, "in_a_row": 0, "last": ""}

        def on_error(exn: Exception) -> bool:
            self._bad(bad, f"shard read: {exn!r}")
            return True

        epoch_seed = stable_seed(self.seed, self.epoch)
        pipeline = wds.DataPipeline(
            wds.ResampledShards(self.shards, seed=epoch_seed % 2**31, worker_seed=_zero, deterministic=True),
            _every(self.rank, self.world_size),
            _every(worker, workers),
            wds.tarfile_to_samples(handler=on_error),
            wds.select(lambda sample: sample["__key__"] not in self.skip),
            wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer,
                        rng=random.Random(stable_seed(epoch_seed, self.rank, worker, 1))),
        )
        samples = iter(pipeline)
        steps = range(self.epoch_start + worker, self.end_step, workers)
        pulled = 0
        if self.fast_forward is not None:
            pulled = self.fast_forward.get(worker, 0)
            for _ in range(pulled):  # raw bytes through the shuffle buffer, never decoded
                next(samples)
            bad["count"] = 0  # unreadable tar members met on the way were counted in the batches before
            steps = [s for s in steps if s >= self.first_step]
        for step in steps:
            items = []
            while len(items) < self.batch_size:
                sample = next(samples)
                pulled += 1
                rng = random.Random(stable_seed(epoch_seed, self.rank, worker, 2, pulled))
                variant = self.curriculum.variant(step, rng)
                draw = rng.getrandbits(32)
                try:
                    items.append(
                        decode_sample(sample, variant, self.image_size, self.anchors, self.rough_source, draw)
                    )
                    bad["in_a_row"] = 0
                except Exception as exn:  # noqa: BLE001 - any unreadable sample is skipped and counted
                    self._bad(bad, f"{sample.get('__key__', '?')} in {sample.get('__url__', '?')}: {exn!r}")
            if step < self.first_step:
                continue
            batch = collate(items)
            batch["step"] = step
            batch["skipped"] = bad["count"]
            batch["worker"] = worker
            batch["pulled"] = pulled
            bad["count"] = 0
            yield batch

    @staticmethod
    def _bad(bad: dict, what: str) -> None:
        bad["count"] += 1
        bad["in_a_row"] += 1
        if bad["in_a_row"] <= _WARN_FIRST:
            log.warning("skipping bad sample: %s", what)
        if bad["in_a_row"] >= MAX_BAD_IN_A_ROW:
            raise UserError(
                f"data: {MAX_BAD_IN_A_ROW} unreadable samples in a row (last: {what}); check the shards with "
                "`unieditkit validate` or rebuild them"
            )


def _zero() -> int:
    """Same shard draw for every worker and rank; the draw is then split between them."""
    return 0


class BatchSource:
    """Endless batches for one rank from ``start_step`` on, in step order, across data epochs."""

    def __init__(
        self,
        shards: list[str],
        anchors: Anchors,
        curriculum: Curriculum,
        *,
        image_size: int,
        batch_size: int,
        seed: int,
        epoch_batches: int,
        rank: int,
        world_size: int,
        num_workers: int,
        shuffle_buffer: int,
        rough_source: str,
        pin_memory: bool = False,
        skip: frozenset[str] = frozenset(),
    ) -> None:
        if rough_source != "stored":
            try:
                import unieditkit.mats  # noqa: F401
            except ImportError as err:
                raise UserError(
                    f"curriculum.rough_source: {rough_source} needs unieditkit.mats ({err}); use rough_source: stored"
                ) from None
        self.kw = dict(shards=shards, anchors=anchors, curriculum=curriculum, image_size=image_size,
                       batch_size=batch_size, seed=seed, rank=rank, world_size=world_size,
                       shuffle_buffer=shuffle_buffer, rough_source=rough_source, skip=skip)
        self.epoch_batches = epoch_batches
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.pulled: dict[int, int] = {}
        self.current_epoch = -1

    @property
    def workers(self) -> int:
        return max(1, self.num_workers)

    def position(self) -> dict:
        """Where the batches handed out so far leave this rank's stream, for the checkpoint: the data epoch and
        how many samples each worker pulled in it (plain values, loadable with ``weights_only=True``)."""
        return {"epoch": self.current_epoch, "workers": self.workers, "pulled": dict(self.pulled)}

    def skip_counts(self, epoch: int, first_step: int, position: dict | None) -> dict[int, int] | None:
        """Samples each worker must pass over to start at ``first_step``; None when only decoding can tell."""
        if first_step == epoch * self.epoch_batches:
            return {}
        if (position and position["epoch"] == epoch and position["workers"] == self.workers
                and min(position["pulled"].values(), default=0) >= 0):
            return {int(w): int(n) for w, n in position["pulled"].items()}
        return None

    def epoch(self, epoch: int, first_step: int, position: dict | None = None) -> EpochStream:
        start = epoch * self.epoch_batches
        first = max(first_step, start)
        return EpochStream(epoch=epoch, epoch_start=start, first_step=first, end_step=start + self.epoch_batches,
                           fast_forward=self.skip_counts(epoch, first, position), **self.kw)

    def batches(self, start_step: int, position: dict | None = None) -> Iterator[dict]:
        """Batches from ``start_step`` on; ``position`` (from ``position()`` at that step) lets a resumed stream
        skip the samples before it without decoding them."""
        epoch = start_step // self.epoch_batches
        while True:
            stream = self.epoch(epoch, start_step, position)
            loader = torch.utils.data.DataLoader(
                stream, batch_size=None, num_workers=self.num_workers, pin_memory=self.pin_memory,
                persistent_workers=False,
            )
            self.current_epoch = epoch
            # a worker that skipped by decoding reports its count with its next batch; until then it is unknown
            self.pulled = dict(stream.fast_forward) if stream.fast_forward is not None else {
                w: -1 for w in range(self.workers) if stream.epoch_start + w < stream.first_step}
            for batch in _in_step_order(loader, stream.first_step):
                self.pulled[batch["worker"]] = batch["pulled"]
                yield batch
            epoch += 1


def _in_step_order(batches: Iterable[dict], first: int) -> Iterator[dict]:
    """Workers interleave round-robin, which after a mid-epoch resume is off by up to one batch per worker."""
    pending: dict[int, dict] = {}
    expected = first
    for batch in batches:
        pending[batch["step"]] = batch
        while expected in pending:
            yield pending.pop(expected)
            expected += 1
    if pending:
        raise RuntimeError(f"data stream ended with steps {sorted(pending)} missing step {expected}")
