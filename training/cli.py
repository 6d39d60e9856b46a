"""``unieditkit train``: fine-tune the MoT editor on built shards, in this process or on N local processes.

With ``--nproc N > 1`` the command re-launches itself as ``python -m torch.distributed.run --standalone
--nproc-per-node N -m unieditkit.training.train ...`` (what ``torchrun`` does); multi-node jobs call ``torchrun ... -m
unieditkit.training.train`` directly with the same arguments. ``--launcher ray`` runs the same ranks as Ray Train workers
(``ray_launch.py``). The config and the data folder are checked here first, so a
mistake is one line before any worker starts. Torch is imported only when the command runs, so registering it
costs other ``unieditkit`` commands nothing.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys

from unieditkit.training.config import OVERRIDES, SWITCHES, add_arguments, overrides_from
from unieditkit.errors import UserError
from unieditkit.extras import require_extra


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train the MoT editor on shards written by `unieditkit build`",
        description="Train the reference-guided MoT editor (flow matching, Anchor-Guided Routing, MATS curriculum) "
        "on a build's shards. Re-run with --resume latest to continue a stopped run exactly.",
    )
    add_arguments(p)
    p.add_argument("--nproc", type=int, default=1, help="local processes (GPUs, or CPU ranks with gloo); default 1")
    p.add_argument("--launcher", choices=("torchrun", "ray"), default="torchrun",
                   help="torchrun (default; --nproc local processes) or ray (Ray Train workers, --num-workers)")
    p.add_argument("--ray-address", help="--launcher ray: the cluster to join ('auto' or HEAD:6379, run from a node "
                   "of it; default: this machine's running Ray, else a new one)")
    p.add_argument("--num-workers", type=int, help="--launcher ray: training workers (ranks), one per GPU")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="--launcher ray: GPUs per worker (0: CPU)")
    p.add_argument("--max-failures", type=int, default=0,
                   help="--launcher ray: restart the workers this many times after a failure (from `latest`)")
    p.add_argument("--verbose", action="store_true",
                   help="--launcher ray: show Ray's own log lines on the terminal (default: in RUN/ray.log)")
    p.add_argument("--memory-plan", action="store_true",
                   help="print the bytes MoT on FLUX.1-Fill holds per GPU for each --backbone-quant (counted from "
                        "the config's shapes) and which 24/40/48/80 GB GPUs that leaves room on, then exit")
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    require_extra("train", "training")
    if args.memory_plan:
        from unieditkit.training.config import load_config
        from unieditkit.training.backbones.flux.memory import plan_lines

        print("\n".join(plan_lines(load_config(args.config, overrides_from(args)))))
        return 0
    from unieditkit.training.runtime.checkpoint import check_world_size, checkpoint_world_size, find_checkpoint, guard_run_dir
    from unieditkit.training.data import find_shards, val_shards
    from unieditkit.training.train import resolve_config, run

    ray = args.launcher == "ray"
    if args.nproc < 1:
        raise UserError(f"--nproc {args.nproc}: must be at least 1")
    if ray and args.nproc != 1:
        raise UserError(f"--nproc {args.nproc} is for --launcher torchrun; with --launcher ray pass --num-workers")
    if not ray and (args.num_workers is not None or args.ray_address or args.gpus_per_worker or args.max_failures
                    or args.verbose):
        raise UserError("--num-workers, --ray-address, --gpus-per-worker, --max-failures and --verbose need --launcher ray")
    processes = (1 if args.num_workers is None else args.num_workers) if ray else args.nproc
    if processes < 1:
        raise UserError(f"--num-workers {processes}: must be at least 1")
    if args.gpus_per_worker < 0:
        raise UserError(f"--gpus-per-worker {args.gpus_per_worker}: must be 0 (CPU workers) or more")
    cfg = resolve_config(args.config, overrides_from(args), args.resume)
    if cfg.model.backbone == "flux-fill":
        require_extra("flux", "model.backbone flux-fill")
    find_shards(cfg.data.root, cfg.data.split, cfg.data.domains)
    if cfg.train.val_every:
        val_shards(cfg.data.root, cfg.data.domains)
    if cfg.model.backbone == "flux-fill":
        import torch

        from unieditkit.training.backbones.flux.adapter import check_snapshot, quantization_config

        check_snapshot(cfg.model.pretrained)
        if not ray:  # Ray workers may have other devices; each checks its own when it loads the backbone
            quantization_config(cfg.model.backbone_quant, "cuda" if torch.cuda.is_available() else "cpu")
    run_dir = pathlib.Path(cfg.train.run_dir)
    guard_run_dir(run_dir, args.resume, args.overwrite)
    if args.resume:
        ckpt = find_checkpoint(run_dir, args.resume)
        saved = checkpoint_world_size(ckpt) if ckpt is not None else None
        if saved is not None:
            check_world_size(ckpt, saved, processes, args.allow_world_size_change)
    if ray:
        from unieditkit.training.launch.on_ray import launch

        launch(cfg, args.resume, overwrite=args.overwrite, allow_world_size_change=args.allow_world_size_change,
               num_workers=processes, gpus_per_worker=args.gpus_per_worker, address=args.ray_address,
               max_failures=args.max_failures, verbose=args.verbose)
        return 0
    if args.nproc == 1:
        run(cfg, args.resume, overwrite=args.overwrite, allow_world_size_change=args.allow_world_size_change)
        return 0
    return subprocess.call(torchrun_command(args))


def torchrun_command(args: argparse.Namespace) -> list[str]:
    """The torchrun invocation equivalent to ``args`` (options are forwarded unchanged)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
           "-m", "unieditkit.training.train"]
    if args.config is not None:
        cmd += ["--config", str(args.config)]
    for flag in OVERRIDES:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            cmd += [flag, str(value)]
    if args.resume is not None:
        cmd += ["--resume", str(args.resume)]
    cmd += [flag for flag in SWITCHES if getattr(args, flag[2:].replace("-", "_"))]
    return cmd
