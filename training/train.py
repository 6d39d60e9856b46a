"""The training loop; ``python -m unieditkit.training.train --config CFG.yaml --data OUT --out RUN`` (also under torchrun).

Every step's randomness is a function of (seed, rank, step): the batch (see ``data.py``) and the flow-matching
noise and times (a generator seeded per step). Together with the checkpointed model, optimizer, scheduler and RNG
states this makes ``--resume latest`` continue with exactly the losses an uninterrupted run would have had.
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
from tqdm import tqdm

from unieditkit.training.backbones.base import Backend, make_backend
from unieditkit.training.runtime.checkpoint import (
    agree_on_resume, checkpoint_dir, clear_run_dir, guard_run_dir, load_checkpoint, save_checkpoint,
)
from unieditkit.training.config import (
    Config, OptimConfig, add_arguments, backbone_trains, config_notes, load_config, overrides_from, save_config,
)
from unieditkit.training.model.curriculum import Curriculum
from unieditkit.training.data import BatchSource, duplicate_skips, find_shards, fixed_subset, write_trained_on
from unieditkit.training.runtime.distributed import (
    DistInfo, barrier, gradient_sync, init_distributed, mean_across_ranks, shutdown, sum_across_ranks, wrap_model,
)
from unieditkit.training.runtime.ema import Ema
from unieditkit.training.runtime.optim import build_optimizer, optimizer_note
from unieditkit.training.model.routing import routing_note
from unieditkit.training.runtime.runlog import RunLog, preview_grid
from unieditkit.training.runtime.seeding import stable_seed
from unieditkit.errors import UserError
from unieditkit.format import MASK_VARIANTS, local_split_sizes


def warmup_steps(cfg: OptimConfig, max_steps: int) -> int:
    """A warm-up as long as the run would never reach the peak rate; it is clipped to a tenth of the run."""
    if cfg.warmup_steps < max_steps:
        return cfg.warmup_steps
    return max(1, max_steps // 10)


def lr_schedule(cfg: OptimConfig, max_steps: int):
    """Linear warm-up, then (``optim.schedule``) cosine decay to ``min_lr_ratio`` of the peak at ``max_steps``, or
    the peak rate to the end (``constant``: a run that may be extended later keeps a rate worth continuing)."""
    warmup = warmup_steps(cfg, max_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def thread_budget(cores: int, local_processes: int, workers: int) -> int:
    """Compute threads per process: the cores this machine gives the job, shared by its local processes, less
    one per data-loader worker. Oversubscribed threads spin against each other (measured on a busy 2-core
    machine: 3.81 s/step with the default against 1.05 s with one thread, same losses)."""
    return max(1, cores // max(1, local_processes) - workers)


def set_threads(workers: int) -> str:
    """Apply the budget unless ``OMP_NUM_THREADS`` is set; returns the note the run log records."""
    if os.environ.get("OMP_NUM_THREADS"):
        return f"threads: {torch.get_num_threads()} per process (OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    threads = thread_budget(cores, local, workers)
    torch.set_num_threads(threads)
    return (f"threads: {threads} per process ({cores} cores, {local} local process(es), {workers} data worker(s) "
            "each); set OMP_NUM_THREADS to choose")


def resolve_config(config: str | None, overrides: dict[str, Any], resume: str | None = None) -> Config:
    """Config file (or, when resuming without one, the run's saved ``config.yaml``) plus command-line overrides
    (dotted keys, e.g. ``{"train.run_dir": "runs/r1"}``)."""
    out = overrides.get("train.run_dir")
    if config is None and resume and out and (pathlib.Path(out) / "config.yaml").is_file():
        config = str(pathlib.Path(out) / "config.yaml")
    cfg = load_config(config, overrides)
    if not cfg.data.root:
        raise UserError("no data folder: pass --data OUT_DIR (the folder `unieditkit build` wrote) or set data.root")
    if not cfg.train.run_dir:
        raise UserError("no run folder: pass --out RUN_DIR or set train.run_dir")
    return cfg


def run(cfg: Config, resume: str | None = None, *, overwrite: bool = False, allow_world_size_change: bool = False,
        on_checkpoint: Callable[[int, pathlib.Path], None] | None = None) -> int:
    """Train per ``cfg`` in this process (one rank of a torchrun job or a Ray Train worker, or alone); returns
    the last step. ``on_checkpoint(step, RUN/checkpoints)`` runs on every rank after each checkpoint (Ray Train
    registers it there). A process group someone else started (Ray Train's) is left to them."""
    owned = not torch.distributed.is_initialized()
    info = init_distributed()
    try:
        step = _train(cfg, info, resume, overwrite, allow_world_size_change, on_checkpoint)
        if owned:
            # ranks tear the process group down together: a gloo rank once aborted ("terminate called without
            # an active exception") while its peer was already leaving after a --stop-after run
            barrier()
        return step
    finally:
        if owned:
            shutdown()


def _build(cfg: Config, info: DistInfo) -> tuple[torch.nn.Module, Backend, torch.optim.Optimizer, Any]:
    backend = make_backend(cfg, info.device)  # seeded: identical initial weights on every rank
    model = wrap_model(backend.module, cfg.train.strategy, info)
    params = [p for p in model.parameters() if p.requires_grad]
    o = cfg.optim
    optimizer = build_optimizer(params, o, cfg.model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(o, cfg.train.max_steps))
    return model, backend, optimizer, scheduler


def _train(cfg: Config, info: DistInfo, resume: str | None, overwrite: bool, allow_world_size_change: bool,
           on_checkpoint: Callable[[int, pathlib.Path], None] | None) -> int:
    t = cfg.train
    run_dir = pathlib.Path(t.run_dir)
    guard_run_dir(run_dir, resume, overwrite)
    shards = find_shards(cfg.data.root, cfg.data.split, cfg.data.domains)
    skip = duplicate_skips(cfg.data.root) if cfg.data.skip_duplicates else frozenset()
    notes = [set_threads(cfg.data.num_workers)]
    notes += [f"data: {len(skip)} near-duplicate samples left out (duplicates.parquet keeps one per cluster)"] if skip else []
    model, backend, optimizer, scheduler = _build(cfg, info)
    torch.manual_seed(stable_seed(t.seed, info.rank))  # a resumed run restores the saved states instead
    step, position = 0, None
    ckpt = agree_on_resume(run_dir, resume, info) if resume else None
    if ckpt is not None:
        step, note, position = load_checkpoint(ckpt, model, optimizer, scheduler, info, allow_world_size_change)
        notes += [note] if note else []
    elif resume:
        notes.append(f"--resume {resume}: {run_dir} has no checkpoint yet; starting at step 0")
    ema = Ema(model, t.ema_decay) if t.ema_decay else None
    if ema is not None and ckpt is not None and not ema.load(ckpt):
        notes.append(f"train.ema_decay: {ckpt.name} has no EMA; the average starts from its weights")
    if info.is_main:
        if overwrite and not resume:
            removed = clear_run_dir(run_dir)
            notes += [f"--overwrite: removed the earlier run's {', '.join(removed)}"] if removed else []
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        write_trained_on(run_dir, shards)
    barrier()  # no rank writes into the folder before rank 0 has cleared it
    if step == 0:
        notes.append(_backbone_note(cfg))
        notes += config_notes(cfg)
        notes += [routing_note(cfg.model)] if cfg.model.num_experts else []
        notes.append(optimizer_note(cfg.optim, cfg.model))
        if cfg.optim.warmup_steps != warmup_steps(cfg.optim, t.max_steps):
            notes.append(f"optim.warmup_steps {cfg.optim.warmup_steps} >= train.max_steps {t.max_steps}: warm-up "
                         f"clipped to {warmup_steps(cfg.optim, t.max_steps)} steps")
    log = RunLog(run_dir, info.is_main, t.tensorboard, step)
    for note in notes:
        log.note(step, note)
    accum = t.grad_accum  # the data stream counts micro-batches: optimizer step s reads s*accum ... s*accum+accum-1
    curriculum = Curriculum(cfg.curriculum, t.max_steps * accum)
    source = BatchSource(
        shards, backend.anchors, curriculum,
        image_size=cfg.model.image_size, batch_size=t.batch_size, seed=t.seed,
        epoch_batches=cfg.epoch_batches() * accum,
        rank=info.rank, world_size=info.world_size, num_workers=cfg.data.num_workers,
        shuffle_buffer=cfg.data.shuffle_buffer, rough_source=cfg.curriculum.rough_source,
        pin_memory=info.device.type == "cuda", skip=skip,
    )
    val = None
    if t.val_every:  # the preview then shows the same fixed samples, in the curriculum stage's mask variant
        subset = fixed_subset(cfg.data.root, cfg.data.domains, cfg.data.val_samples, cfg.model.image_size,
                              backend.anchors, cfg.curriculum.rough_source)
        val = {v: {k: x.to(info.device) if torch.is_tensor(x) else x for k, x in b.items()} for v, b in subset.items()}
    stop = min(t.max_steps, step + t.stop_after) if t.stop_after else t.max_steps
    params = [p for p in model.parameters() if p.requires_grad]
    autocast = (
        torch.autocast(info.device.type, dtype=torch.bfloat16) if t.precision == "bf16" else nullcontext()
    )
    bar = tqdm(total=stop, initial=step, disable=not (info.is_main and t.progress), dynamic_ncols=True)
    window = {"loss": 0.0, "flow": 0.0, "balance": 0.0, "n": 0, "skipped": 0, "since": time.perf_counter()}
    batches = source.batches(step * accum, position)
    try:
        while step < stop:
            model.train()
            optimizer.zero_grad(set_to_none=True)
            for micro in range(step * accum, (step + 1) * accum):
                batch = next(batches)
                assert batch["step"] == micro, (batch["step"], micro)
                batch = {k: v.to(info.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
                generator = torch.Generator().manual_seed(stable_seed(t.seed, info.rank, micro, 7))
                with gradient_sync(model, micro == (step + 1) * accum - 1):
                    with autocast:
                        parts = backend.loss(model, backend.prepare(batch), generator, t.t_sampling,
                                             cfg.optim.balance_coef)
                    (parts.total / accum).backward()
                window["loss"] += parts.total.item() / accum
                window["flow"] += parts.flow.item() / accum
                window["balance"] += parts.balance.item() / accum
                window["skipped"] += batch["skipped"]
            if cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update()
            step += 1
            window["n"] += 1
            if step % t.log_every == 0 or step == stop:
                _log(log, bar, window, step, parts, batch, info, t.batch_size * accum, float(scheduler.get_last_lr()[0]))
            if val is not None and step % t.val_every == 0:
                _validate(log, model, backend, val, step, cfg, autocast)
            if step % t.preview_every == 0 or (step == t.max_steps and t.max_steps < t.preview_every):
                shown = batch if val is None else val[curriculum.stage(step * accum - 1)]
                _preview(log, backend, shown, step, cfg, info)
            if step % t.save_every == 0 or step == stop:
                save_checkpoint(run_dir, step, model, optimizer, scheduler, info, t.keep_last, source.position(),
                                ema.state_dict() if ema is not None else None)
                if on_checkpoint is not None:
                    on_checkpoint(step, checkpoint_dir(run_dir))
            bar.update(1)
    finally:
        bar.close()
        log.close()
    if info.is_main:
        print("\n".join(finished_lines(cfg, step)), flush=True)
    return step


def finished_lines(cfg: Config, step: int) -> list[str]:
    """Where a run's outputs are and what to run next: printed when training stops, since a newcomer otherwise
    has to know the run folder's layout and the edit/eval commands to see what was trained."""
    t = cfg.train
    run_dir = pathlib.Path(t.run_dir)
    if step < t.max_steps:
        head = f"stopped at step {step} of {t.max_steps}; re-run with --resume latest to continue"
    else:
        head = f"finished: {step} steps"
    lines = [f"unieditkit train: {head} -> {run_dir}",
             f"  checkpoints: {checkpoint_dir(run_dir)} (`latest` names the newest)",
             f"  log: {run_dir / 'log.jsonl'}"
             + (f"; TensorBoard: tensorboard --logdir {run_dir / 'tb'}" if t.tensorboard else "")]
    previews = run_dir / "previews"
    if previews.is_dir():
        lines.append(f"  previews: {previews} (reference | masked target | edit | ground truth)")
    sizes = local_split_sizes(cfg.data.root, cfg.data.domains)
    held_out = next((s for s in ("test", "val") if s in sizes), None)
    if held_out is not None:
        pred = run_dir / f"pred-{held_out}"
        lines.append(f"  next: unieditkit edit --checkpoint {run_dir} --data {cfg.data.root} --split {held_out} "
                     f"--out {pred}")
        lines.append(f"        unieditkit eval --pred {pred} --data {cfg.data.root} --split {held_out}")
    else:
        lines.append(f"  next: unieditkit edit --checkpoint {run_dir} --ref REF.jpg --image TARGET.jpg "
                     "--mask MASK.png --out EDITED.png (the data has no test or val split to edit)")
    return lines


def _backbone_note(cfg: Config) -> str:
    trains = backbone_trains(cfg.model)
    why = "" if cfg.model.train_backbone != "auto" else (
        " (auto: frozen, the paper's setting, when the backbone has pretrained weights; the built-in editor from "
        "scratch has none)")
    return f"model.train_backbone: {'trained' if trains else 'frozen'}{why}"


def _log(log: RunLog, bar: tqdm, window: dict, step: int, parts, batch: dict, info: DistInfo, bs: int, lr: float) -> None:
    """Collective (all ranks): averages the window's losses over ranks, then rank 0 writes them."""
    n = window["n"]
    means = mean_across_ranks(torch.tensor([window["loss"], window["flow"], window["balance"]], device=info.device) / n)
    skipped = int(sum_across_ranks(torch.tensor([window["skipped"]], device=info.device)).item())
    elapsed = time.perf_counter() - window["since"]
    values = {
        "loss": float(means[0]), "flow_loss": float(means[1]), "balance_loss": float(means[2]), "lr": lr,
        "samples_per_s": n * bs * info.world_size / elapsed, "skipped": skipped,
        "mask_variant_fraction": torch.bincount(batch["variant"].cpu(), minlength=len(MASK_VARIANTS)).div(len(batch["variant"])).tolist(),
    }
    if parts.expert_load is not None:
        values["expert_load"] = [round(x, 4) for x in parts.expert_load.tolist()]
    log.scalars(step, values)
    bar.set_postfix(loss=f"{values['loss']:.4f}", samples_s=f"{values['samples_per_s']:.1f}")
    window.update(loss=0.0, flow=0.0, balance=0.0, n=0, skipped=0, since=time.perf_counter())


@torch.no_grad()
def _validate(log: RunLog, model: torch.nn.Module, backend: Backend, val: dict[str, dict], step: int, cfg: Config,
              autocast) -> None:
    """Flow loss on the fixed val subset, per mask variant. Every rank computes it (FSDP's forward is collective)
    on the same samples with the same noise and times, so ranks agree and steps compare; rank 0 writes it."""
    model.eval()
    values = {}
    for variant, batch in val.items():
        total, n = 0.0, len(batch["keys"])
        for start in range(0, n, cfg.train.batch_size):
            part = {k: v[start:start + cfg.train.batch_size] if torch.is_tensor(v) or isinstance(v, list) else v
                    for k, v in batch.items()}
            generator = torch.Generator().manual_seed(stable_seed(cfg.train.seed, start, 13))
            with autocast:
                parts = backend.loss(model, backend.prepare(part), generator, cfg.train.t_sampling, 0.0)
            total += parts.flow.item() * len(part["keys"])
        values[f"val_loss_{variant}"] = total / n
    model.train()
    log.scalars(step, values)


def _preview(log: RunLog, backend: Backend, batch: dict, step: int, cfg: Config, info: DistInfo) -> None:
    """Collective (FSDP gathers weights in forward), so every rank samples; rank 0 saves. Known target pixels
    are pasted back, as ``unieditkit edit`` does."""
    n = cfg.train.preview_samples
    small = {k: v[:n] if torch.is_tensor(v) or isinstance(v, list) else v for k, v in batch.items()}
    generator = torch.Generator().manual_seed(stable_seed(cfg.train.seed, step, 11))
    prediction = backend.sample(small, cfg.train.preview_steps, generator)
    if info.is_main:
        log.image(step, preview_grid(small, prediction, n))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unieditkit.training.train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cfg = resolve_config(args.config, overrides_from(args), args.resume)
        run(cfg, args.resume, overwrite=args.overwrite, allow_world_size_change=args.allow_world_size_change)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
