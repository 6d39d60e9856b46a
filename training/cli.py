"""``unieditkit train``: fine-tune the MoT editor on built shards, in this process or on N local processes.

With ``--nproc N > 1`` the command re-launches itself as ``python -m torch.distributed.run --standalone
--nproc-per-node N -m training.train ...`` (what ``torchrun`` does); multi-node jobs call ``torchrun ... -m
training.train`` directly with the same arguments. The config and the data folder are checked here first, so a
mistake is one line before any worker starts. Torch is imported only when the command runs, so registering it
costs other ``unieditkit`` commands nothing.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys

from unieditkit.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train the MoT editor on shards written by `unieditkit build`",
        description="Train the reference-guided MoT editor (flow matching, Anchor-Guided Routing, MATS curriculum) "
        "on a build's shards. Re-run with --resume latest to continue a stopped run exactly.",
    )
    add_arguments(p)
    p.add_argument("--nproc", type=int, default=1, help="local processes (GPUs, or CPU ranks with gloo); default 1")
    p.set_defaults(func=run_command)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options ``unieditkit train`` and ``python -m training.train`` share."""
    parser.add_argument("--config", help="YAML config (default: the built-in small editor; see docs/TRAINING.md)")
    parser.add_argument("--data", help="dataset folder written by `unieditkit build` (overrides data.root)")
    parser.add_argument("--out", help="run folder for checkpoints, logs and previews (overrides train.run_dir)")
    parser.add_argument("--max-steps", type=int, help="total optimizer steps (overrides train.max_steps)")
    parser.add_argument("--resume", help="'latest' (the run folder's newest checkpoint, if any) or a step_*.pt path")


def run_command(args: argparse.Namespace) -> int:
    from training.checkpoint import find_checkpoint
    from training.data import find_shards
    from training.train import resolve_config, run

    if args.nproc < 1:
        raise UserError(f"--nproc {args.nproc}: must be at least 1")
    cfg = resolve_config(args.config, args.data, args.out, args.max_steps, args.resume)
    find_shards(cfg.data.root, cfg.data.split, cfg.data.domains)
    if args.resume:
        find_checkpoint(pathlib.Path(cfg.train.run_dir), args.resume)
    if args.nproc == 1:
        run(cfg, args.resume)
        return 0
    return subprocess.call(torchrun_command(args))


def torchrun_command(args: argparse.Namespace) -> list[str]:
    """The torchrun invocation equivalent to ``args`` (options are forwarded unchanged)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
           "-m", "training.train"]
    for flag, value in (("--config", args.config), ("--data", args.data), ("--out", args.out),
                        ("--max-steps", args.max_steps), ("--resume", args.resume)):
        if value is not None:
            cmd += [flag, str(value)]
    return cmd
