"""Checkpoints: everything needed to continue a run exactly, written atomically by rank 0.

A checkpoint holds the trainable parameters (a frozen backbone comes from ``model.init_checkpoint``, not from every
checkpoint), the optimizer and scheduler state, the step, every rank's RNG states and every rank's data position
(``data``: how far each DataLoader worker had read, so a resumed stream skips without decoding) and, with
``train.ema_decay``, the averaged weights (``ema``, same names as ``model``; ``unieditkit edit`` prefers them).
State dicts are taken with ``torch.distributed.checkpoint.state_dict`` as full (unsharded) tensors, so the same
file loads into a single process, DDP or FSDP. Files contain only tensors and plain Python values, so loading uses
``torch.load(weights_only=True)`` and never unpickles code.

Layout: ``RUN/checkpoints/step_00001000.pt`` and ``RUN/checkpoints/latest`` (the name of the newest file).
"""

from __future__ import annotations

import os
import pathlib
import random

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from unieditkit.training.runtime.distributed import DistInfo, barrier
from unieditkit.errors import UserError

FORMAT = 1


def checkpoint_dir(run_dir: pathlib.Path) -> pathlib.Path:
    return run_dir / "checkpoints"


def rng_state() -> dict:
    """This process's RNG states as tensors and plain values (loadable with ``weights_only=True``)."""
    py = random.getstate()
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


def _options(**kw: bool) -> StateDictOptions:
    return StateDictOptions(full_state_dict=True, cpu_offload=True, **kw)


def save_checkpoint(
    run_dir: pathlib.Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    info: DistInfo,
    keep_last: int,
    data: dict | None = None,
    ema: dict | None = None,
) -> pathlib.Path:
    """Collective: every rank must call it. Rank 0 writes ``step_*.pt`` via a temporary file and a rename.
    ``data`` is this rank's ``BatchSource.position()``, ``ema`` the averaged weights (``training/runtime/ema.py``)."""
    model_sd = get_model_state_dict(model, options=_options(ignore_frozen_params=True))
    optim_sd = get_optimizer_state_dict(model, optimizer, options=_options())
    rngs, positions = [rng_state()], [data]
    if dist.is_initialized():
        rngs, positions = [None] * info.world_size, [None] * info.world_size
        dist.all_gather_object(rngs, rng_state())
        dist.all_gather_object(positions, data)
    folder = checkpoint_dir(run_dir)
    path = folder / f"step_{step:08d}.pt"
    if info.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FORMAT,
            "step": step,
            "world_size": info.world_size,
            "model": model_sd,
            "optimizer": optim_sd,
            "scheduler": scheduler.state_dict(),
            "rng": rngs,
            "data": positions,
        }
        if ema is not None:
            payload["ema"] = ema
        _atomic_save(payload, path)
        _atomic_write(folder / "latest", path.name)
        for old in list_checkpoints(run_dir)[:-keep_last]:
            old.unlink()
    barrier()
    return path


def checkpoint_step(path: pathlib.Path) -> int:
    """The step in a ``step_*.pt`` name; -1 for a name that does not parse (never pruned before real ones)."""
    digits = path.name[len("step_"): -len(".pt")]
    return int(digits) if digits.isdigit() else -1


def list_checkpoints(run_dir: pathlib.Path) -> list[pathlib.Path]:
    """The run's checkpoints oldest first, by step number: names of other widths must not sort by text."""
    return sorted(checkpoint_dir(run_dir).glob("step_*.pt"), key=lambda p: (checkpoint_step(p), p.name))


def guard_run_dir(run_dir: pathlib.Path, resume: str | None, overwrite: bool) -> None:
    """A run folder that holds checkpoints is only continued (``--resume``) or, on request, replaced."""
    if resume or overwrite:
        return
    found = list_checkpoints(run_dir)
    if found:
        raise UserError(
            f"--out {run_dir}: already holds {len(found)} checkpoint(s) (newest {found[-1].name}); continue it with "
            "--resume latest, pick a new --out, or pass --overwrite to start it again from step 0"
        )


def clear_run_dir(run_dir: pathlib.Path) -> list[str]:
    """``--overwrite``: remove what an earlier run wrote (checkpoints, log, TensorBoard, previews); returns the
    names removed so the new run can say so."""
    import shutil

    removed = []
    for name in ("checkpoints", "tb", "previews", "log.jsonl"):
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


def checkpoint_world_size(path: pathlib.Path) -> int | None:
    """The world size a checkpoint was written with (memory-mapped: no tensor is read); None if unreadable."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - load_checkpoint reports unreadable files with their own message
        return None
    return ck.get("world_size") if isinstance(ck, dict) else None


def check_world_size(path: pathlib.Path, saved: int, world_size: int, allow_change: bool) -> str | None:
    """Refuse a world-size change (the per-rank data streams and RNG states no longer line up, so the run could
    not continue bit-exactly), or, with ``--allow-world-size-change``, return the note the run records."""
    if saved == world_size:
        return None
    if not allow_change:
        raise UserError(
            f"{path}: written by {saved} process(es), this run has {world_size}; bit-exact resume needs the same "
            f"number: use --nproc {saved} (or torchrun with {saved} processes in all), or pass "
            "--allow-world-size-change to continue approximately"
        )
    return (
        f"resumed from {path.name} (written by {saved} processes) on {world_size}: continuing approximately "
        "(new per-rank data streams and RNG states; not bit-exact)"
    )


def find_checkpoint(run_dir: pathlib.Path, resume: str) -> pathlib.Path | None:
    """``latest`` → the newest checkpoint of ``run_dir`` (None for a run that has none yet); else a file path."""
    if resume == "latest":
        marker = checkpoint_dir(run_dir) / "latest"
        if not marker.is_file():
            return None
        path = marker.parent / marker.read_text(encoding="utf-8").strip()
        if not path.is_file():
            raise UserError(f"{marker} names {path.name}, which is missing; pass --resume with an existing .pt file")
        return path
    path = pathlib.Path(resume)
    if not path.is_file():
        raise UserError(f"--resume {resume}: no such checkpoint; use 'latest' or a path to a step_*.pt file")
    return path


def _read(path: pathlib.Path) -> dict:
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file: say which and what to do
        raise UserError(f"{path}: not a readable checkpoint ({type(err).__name__}); resume from an older step_*.pt") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise UserError(f"{path}: not a unieditkit training checkpoint (format {FORMAT}); pass a step_*.pt of a run")
    return ck


def _set_weights(path: pathlib.Path, model: nn.Module, weights: dict) -> None:
    expected = set(get_model_state_dict(model, options=_options(ignore_frozen_params=True)))
    missing = sorted(expected - set(weights))
    if missing and "router.norm.weight" in weights:  # the router before issue 18 normed a mean-pooled reference
        raise UserError(f"{path}: written by an earlier unieditkit whose router read the reference's mean; this "
                        "version's router (attention pooling, anchor floor) cannot load it: train the run again")
    if missing:
        raise UserError(
            f"{path}: has no '{missing[0]}' ({len(missing)} trainable tensors missing); use the config the "
            "run was started with (RUN/config.yaml)"
        )
    set_model_state_dict(model, weights, options=_options(strict=False))


def load_checkpoint(
    path: pathlib.Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    info: DistInfo,
    allow_world_size_change: bool = False,
) -> tuple[int, str | None, dict | None]:
    """Restore everything ``save_checkpoint`` wrote; returns the step to continue from, the note to record after
    an allowed world-size change, and this rank's data position (None when unknown: the stream then decodes to
    find its place)."""
    ck = _read(path)
    note = check_world_size(path, int(ck["world_size"]), info.world_size, allow_world_size_change)
    try:
        _set_weights(path, model, ck["model"])
        set_optimizer_state_dict(model, optimizer, ck["optimizer"], options=_options())
    except (RuntimeError, KeyError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: does not fit this model ({first}); resume with the run's own config.yaml") from None
    scheduler.load_state_dict(ck["scheduler"])
    if note is not None:
        return int(ck["step"]), note, None
    set_rng_state(ck["rng"][info.rank])
    return int(ck["step"]), None, ck.get("data", [None] * info.world_size)[info.rank]


def agree_on_resume(run_dir: pathlib.Path, resume: str, info: DistInfo) -> pathlib.Path | None:
    """Collective: every rank looks for the checkpoint itself, then all compare. A node that does not see the
    run folder (not on shared storage) would otherwise start at step 0 while the others resume."""
    try:
        found, error = find_checkpoint(run_dir, resume), None
    except UserError as err:
        found, error = None, str(err)
    mine = (found.name if found is not None else None, error, str(checkpoint_dir(run_dir)))
    views = [mine]
    if dist.is_initialized():
        views = [None] * info.world_size
        dist.all_gather_object(views, mine)
    first_name, first_error, _ = views[0]
    for rank, (name, error, folder) in enumerate(views):
        if error is not None:
            raise UserError(f"rank {rank}: {error}")
        if name != first_name:
            saw = f"found {name}" if name else "could not read a checkpoint"
            raise UserError(
                f"rank {rank} {saw} in {folder} but rank 0 resumes from {first_name or 'step 0'}: put --out on "
                "storage every node sees at the same path (docs/TRAINING.md, multi-node)"
            )
    return found


def load_weights(path: pathlib.Path, model: nn.Module) -> int:
    """The trained tensors of a checkpoint into an unwrapped model (``unieditkit edit``): the EMA weights when
    the run kept them (``train.ema_decay``), else the last step's; returns the step."""
    ck = _read(path)
    try:
        _set_weights(path, model, ck.get("ema") or ck["model"])
    except (RuntimeError, KeyError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: does not fit the run's model ({first}); pass the run folder it belongs to") from None
    return int(ck["step"])


def _atomic_save(payload: dict, path: pathlib.Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_write(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
