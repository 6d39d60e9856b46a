"""The training loop; ``python -m training.train --config CFG.yaml --data OUT --out RUN`` (also under torchrun).

Every step's randomness is a function of (seed, rank, step): the batch (see ``data.py``) and the flow-matching
noise and times (a generator seeded per step). Together with the checkpointed model, optimizer, scheduler and RNG
states this makes ``--resume latest`` continue with exactly the losses an uninterrupted run would have had.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time
from contextlib import nullcontext
from typing import Any

import torch
from tqdm import tqdm

from training.anchors import Anchors
from training.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from training.cli import add_arguments
from training.config import Config, OptimConfig, load_config, save_config
from training.curriculum import Curriculum
from training.data import BatchSource, find_shards
from training.distributed import DistInfo, init_distributed, mean_across_ranks, shutdown, sum_across_ranks, wrap_model
from training.editor import Editor, load_backbone
from training.flow import flow_loss, sample
from training.runlog import RunLog, preview_grid
from training.seeding import stable_seed
from unieditkit.errors import UserError


def lr_schedule(cfg: OptimConfig, max_steps: int):
    """Linear warm-up, then cosine decay to ``min_lr_ratio`` of the peak at ``max_steps``."""

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, max_steps - cfg.warmup_steps))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def resolve_config(
    config: str | None, data: str | None, out: str | None, max_steps: int | None, resume: str | None
) -> Config:
    """Config file (or, when resuming without one, the run's saved ``config.yaml``) plus command-line overrides."""
    overrides: dict[str, Any] = {}
    if data:
        overrides["data.root"] = data
    if out:
        overrides["train.run_dir"] = out
    if max_steps is not None:
        overrides["train.max_steps"] = max_steps
    if config is None and resume and out and (pathlib.Path(out) / "config.yaml").is_file():
        config = str(pathlib.Path(out) / "config.yaml")
    cfg = load_config(config, overrides)
    if not cfg.data.root:
        raise UserError("no data folder: pass --data OUT_DIR (the folder `unieditkit build` wrote) or set data.root")
    if not cfg.train.run_dir:
        raise UserError("no run folder: pass --out RUN_DIR or set train.run_dir")
    return cfg


def run(cfg: Config, resume: str | None = None) -> int:
    """Train per ``cfg`` in this process (one rank of a torchrun job, or alone); returns the last step."""
    info = init_distributed()
    try:
        return _train(cfg, info, resume)
    finally:
        shutdown()


def _build(cfg: Config, info: DistInfo) -> tuple[torch.nn.Module, Editor, torch.optim.Optimizer, Any]:
    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
    editor = Editor(cfg.model, Anchors.from_taxonomy(cfg.model.taxonomy))
    if cfg.model.init_checkpoint:
        load_backbone(editor, cfg.model.init_checkpoint)
    editor.to(info.device)
    model = wrap_model(editor, cfg.train.strategy, info)
    params = [p for p in model.parameters() if p.requires_grad]
    o = cfg.optim
    optimizer = torch.optim.AdamW(params, lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(o, cfg.train.max_steps))
    return model, editor, optimizer, scheduler


def _train(cfg: Config, info: DistInfo, resume: str | None) -> int:
    t = cfg.train
    run_dir = pathlib.Path(t.run_dir)
    shards = find_shards(cfg.data.root, cfg.data.split, cfg.data.domains)
    model, editor, optimizer, scheduler = _build(cfg, info)
    torch.manual_seed(stable_seed(t.seed, info.rank))  # a resumed run restores the saved states instead
    step = 0
    ckpt = find_checkpoint(run_dir, resume) if resume else None
    if ckpt is not None:
        step = load_checkpoint(ckpt, model, optimizer, scheduler, info)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    log = RunLog(run_dir, info.is_main, t.tensorboard, step)
    source = BatchSource(
        shards, editor.anchors, Curriculum(cfg.curriculum, t.max_steps),
        image_size=cfg.model.image_size, batch_size=t.batch_size, seed=t.seed, epoch_batches=cfg.epoch_batches(),
        rank=info.rank, world_size=info.world_size, num_workers=cfg.data.num_workers,
        shuffle_buffer=cfg.data.shuffle_buffer, rough_source=cfg.curriculum.rough_source,
        pin_memory=info.device.type == "cuda",
    )
    stop = min(t.max_steps, step + t.stop_after) if t.stop_after else t.max_steps
    params = [p for p in model.parameters() if p.requires_grad]
    autocast = (
        torch.autocast(info.device.type, dtype=torch.bfloat16) if t.precision == "bf16" else nullcontext()
    )
    bar = tqdm(total=stop, initial=step, disable=not (info.is_main and t.progress), dynamic_ncols=True)
    window = {"loss": 0.0, "flow": 0.0, "balance": 0.0, "n": 0, "skipped": 0, "since": time.perf_counter()}
    batches = source.batches(step)
    try:
        while step < stop:
            batch = next(batches)
            assert batch["step"] == step, (batch["step"], step)
            batch = {k: v.to(info.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
            generator = torch.Generator().manual_seed(stable_seed(t.seed, info.rank, step, 7))
            model.train()
            with autocast:
                parts = flow_loss(model, batch, generator, t.t_sampling, cfg.optim.balance_coef)
            optimizer.zero_grad(set_to_none=True)
            parts.total.backward()
            if cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            window["loss"] += parts.total.item()
            window["flow"] += parts.flow.item()
            window["balance"] += parts.balance.item()
            window["n"] += 1
            window["skipped"] += batch["skipped"]
            if step % t.log_every == 0 or step == stop:
                _log(log, bar, window, step, parts, batch, info, t.batch_size, scheduler.get_last_lr()[0])
            if step % t.preview_every == 0:
                _preview(log, editor, batch, step, cfg, info)
            if step % t.save_every == 0 or step == stop:
                save_checkpoint(run_dir, step, model, optimizer, scheduler, info, t.keep_last)
            bar.update(1)
    finally:
        bar.close()
        log.close()
    return step


def _log(log: RunLog, bar: tqdm, window: dict, step: int, parts, batch: dict, info: DistInfo, bs: int, lr: float) -> None:
    """Collective (all ranks): averages the window's losses over ranks, then rank 0 writes them."""
    n = window["n"]
    means = mean_across_ranks(torch.tensor([window["loss"], window["flow"], window["balance"]], device=info.device) / n)
    skipped = int(sum_across_ranks(torch.tensor([window["skipped"]], device=info.device)).item())
    elapsed = time.perf_counter() - window["since"]
    values = {
        "loss": float(means[0]), "flow_loss": float(means[1]), "balance_loss": float(means[2]), "lr": lr,
        "samples_per_s": n * bs * info.world_size / elapsed, "skipped": skipped,
        "mask_variant_fraction": torch.bincount(batch["variant"].cpu(), minlength=3).div(len(batch["variant"])).tolist(),
    }
    if parts.expert_load is not None:
        values["expert_load"] = [round(x, 4) for x in parts.expert_load.tolist()]
    log.scalars(step, values)
    bar.set_postfix(loss=f"{values['loss']:.4f}", samples_s=f"{values['samples_per_s']:.1f}")
    window.update(loss=0.0, flow=0.0, balance=0.0, n=0, skipped=0, since=time.perf_counter())


def _preview(log: RunLog, editor: Editor, batch: dict, step: int, cfg: Config, info: DistInfo) -> None:
    """Collective (FSDP gathers weights in forward), so every rank samples; rank 0 saves."""
    n = cfg.train.preview_samples
    small = {k: v[:n] if torch.is_tensor(v) else v for k, v in batch.items()}
    generator = torch.Generator().manual_seed(stable_seed(cfg.train.seed, step, 11))
    editor.eval()
    prediction = sample(editor, small, cfg.train.preview_steps, generator)
    editor.train()
    if info.is_main:
        log.image(step, preview_grid(small, prediction, n))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cfg = resolve_config(args.config, args.data, args.out, args.max_steps, args.resume)
        run(cfg, args.resume)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
