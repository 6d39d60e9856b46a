"""``unieditkit preview | gallery | stats | validate``: look at a build folder.

Commands import their module only when run, so ``unieditkit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from unieditkit.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preview", help="contact-sheet PNG: reference | target | fine / rough / box masks, one row per sample",
                       description="Contact sheet of the first N samples by key: reference, target and the fine, rough "
                       "and box masks drawn over the target, with subcategory and captions under each row.")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder written by `unieditkit build`")
    p.add_argument("--domain", default="", help="only this domain")
    p.add_argument("--split", default="", choices=("", "train", "val", "test"), help="only this split")
    p.add_argument("--n", type=int, default=16, help="number of samples (rows), first by key (default: %(default)s)")
    p.add_argument("--out", default="sheet.png", help="PNG to write (default: %(default)s)")
    p.set_defaults(func=run_preview)

    p = sub.add_parser("gallery", help="static HTML gallery with filters (open index.html in a browser, no server)",
                       description="Write a static HTML gallery: thumbnails filterable by domain, subcategory, pair kind "
                       "and split; click a sample for its full-size images, masks and JSON.")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder written by `unieditkit build`")
    p.add_argument("--out", default="", help="gallery folder (default: OUT_DIR/gallery)")
    p.add_argument("--per-subcategory", type=int, default=24, help="first K samples by key of every subcategory (default: %(default)s)")
    p.set_defaults(func=run_gallery)

    p = sub.add_parser("stats", help="counts, rejection reasons, mask-area and rough-vs-fine IoU histograms (table + PNG)",
                       description="Counts per domain/split/pair kind/subcategory, rejections by reason, mask areas and "
                       "rough-vs-fine IoU (= fine area / rough area, as rough contains fine); printed and plotted.")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder written by `unieditkit build`")
    p.add_argument("--out", default="stats.png", help="PNG to write (default: %(default)s)")
    p.add_argument("--json", default="", help="also write the numbers as JSON here")
    p.set_defaults(func=run_stats)

    p = sub.add_parser("validate", help="check every shard against the format (exit 1 listing each problem)",
                       description="Check every shard, sample, mask and table of a build folder against docs/FORMAT.md. "
                       "Prints each problem as `SHARD KEY: problem`; exit status 0 when clean, 1 otherwise.")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder written by `unieditkit build`")
    p.add_argument("--jobs", type=int, default=1, help="shards checked in parallel processes (default: %(default)s)")
    p.set_defaults(func=run_validate)


def run_preview(args: argparse.Namespace) -> int:
    from .preview import write_preview

    samples = write_preview(Path(args.out_dir), Path(args.out), args.domain, args.split, args.n)
    print(f"{args.out}: {len(samples)} samples, {samples[0].key} .. {samples[-1].key}")
    return 0


def run_gallery(args: argparse.Namespace) -> int:
    from .gallery import write_gallery

    out_dir = Path(args.out_dir)
    html = write_gallery(out_dir, Path(args.out) if args.out else out_dir / "gallery", args.per_subcategory)
    print(f"open {html.resolve().as_uri()}")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from .stats import format_tables, write_stats

    st = write_stats(Path(args.out_dir), Path(args.out))
    print(format_tables(st))
    print(f"\nplot: {args.out}")
    if args.json:
        Path(args.json).write_text(json.dumps(st, indent=1) + "\n")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from unieditkit.reader import check_out_dir
    from .validate import validate

    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: must be at least 1")
    problems, counts = validate(check_out_dir(Path(args.out_dir)), args.jobs)
    for p in problems:
        print(p, flush=True)
    summary = f"{counts['shards']} shards, {counts['samples']} samples: "
    if problems:
        print(summary + f"{len(problems)} problem{'s' if len(problems) != 1 else ''}", file=sys.stderr)
        return 1
    print(summary + "valid")
    return 0
