"""``unieditkit train``: fine-tune the MoT editor on built shards, in this process or on N local processes.

With ``--nproc N > 1`` the command re-launches itself as ``python -m torch.distributed.run --standalone
--nproc-per-node N -m training.train ...`` (what ``torchrun`` does); multi-node jobs call ``torchrun ... -m
training.train`` directly with the same arguments. The config and the data folder are checked here first, so a
mistake is one line before any worker starts.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from training.data import find_shards
from training.train import add_arguments, resolve_config, run
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


def run_command(args: argparse.Namespace) -> int:
    if args.nproc < 1:
        raise UserError(f"--nproc {args.nproc}: must be at least 1")
    cfg = resolve_config(args.config, args.data, args.out, args.max_steps, args.resume)
    find_shards(cfg.data.root, cfg.data.split, cfg.data.domains)
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
