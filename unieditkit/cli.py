"""The ``unieditkit`` command.

Each command group lives next to the code it drives and registers itself here through a
``register(subparsers)`` function, so a newcomer finds the CLI of the build in ``pipelines/cli.py``, of
training in ``training/cli.py``, and so on. Errors the user can fix are printed as one line (exit 2).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from unieditkit import __version__
from unieditkit.errors import UserError

COMMAND_MODULES = ("pipelines.cli", "pipelines.decontaminate", "pipelines.dedupe", "taxonomy.cli", "training.cli",
                   "training.edit", "unieditkit.evaluate", "unieditkit.inspect.cli")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unieditkit",
        description="Build reference-guided image-editing datasets (UniEdit-style) and train a MoT editor on them.",
    )
    parser.add_argument("--version", action="version", version=f"unieditkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"unieditkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `unieditkit taxonomy | head`: the reader left, which is not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"unieditkit {args.command}: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
