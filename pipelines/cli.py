"""``unieditkit build``: the dataset build command."""

from __future__ import annotations

import argparse

from unieditkit.errors import UserError

from .build import build
from .config import BuildConfig, OutputSettings


def _ratios(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not three comma-separated numbers, e.g. 0.9,0.05,0.05") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"'{text}': need train,val,test ratios, e.g. 0.9,0.05,0.05")
    return values  # type: ignore[return-value]


def register(sub: argparse._SubParsersAction) -> None:
    d = OutputSettings()
    p = sub.add_parser(
        "build",
        help="build WebDataset shards of (reference, target) pairs for one taxonomy domain",
        description="Build shards for one domain. With no --source, the sample bundled with unieditkit is used. "
        "Re-running the same command resumes: done shards are kept, missing ones are (re)built.",
    )
    p.add_argument("--domain", required=True, help="taxonomy domain key, e.g. garments (see `unieditkit taxonomy`)")
    p.add_argument("--out", default="out", help="output folder (default: ./out)")
    p.add_argument("--source", action="append", default=[], metavar="KIND:PATH", help="input, repeatable: coco:INSTANCES.json, manifest:FILE.jsonl")
    p.add_argument("--seed", type=int, default=d.seed, help="seed for augmentations and MATS masks (default: %(default)s)")
    p.add_argument("--splits", type=_ratios, default=d.split_ratios, metavar="TRAIN,VAL,TEST", help="split ratios (default: 0.9,0.05,0.05)")
    p.add_argument("--units-per-shard", type=int, default=d.units_per_shard, help="input units (images/pairs) per shard (default: %(default)s)")
    p.add_argument("--max-side", type=int, default=d.max_side, help="longest side of target images (default: %(default)s)")
    p.add_argument("--ref-size", type=int, default=d.ref_size, help="side of the square reference image (default: %(default)s)")
    p.add_argument("--no-augment", action="store_true", help="do not augment references of self pairs")
    p.add_argument("--taxonomy", default="", help="a taxonomy YAML file instead of the bundled one")
    p.add_argument("--ray-address", default="", help="an existing Ray cluster (default: start a local Ray instance)")
    p.add_argument("--workers", type=int, default=0, help="CPUs for the local Ray instance (default: all)")
    p.add_argument("--batch-size", type=int, default=16, help="units per Ray Data batch (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be at least 1")
    settings = OutputSettings(
        seed=args.seed,
        split_ratios=args.splits,
        units_per_shard=args.units_per_shard,
        max_side=args.max_side,
        ref_size=args.ref_size,
        augment_self_pairs=not args.no_augment,
    )
    config = BuildConfig(
        domain=args.domain,
        out_dir=args.out,
        sources=tuple(args.source),
        settings=settings,
        ray_address=args.ray_address,
        num_workers=args.workers,
        batch_size=args.batch_size,
        taxonomy_path=args.taxonomy,
        progress=not args.no_progress,
    )
    for line in build(config).lines():
        print(line)
    return 0
