"""The ``unieditkit`` command.

Each command group lives next to the code it drives and registers itself here through a
``register(subparsers)`` function, so a newcomer finds the CLI of the build in ``pipelines/cli.py``, of
training in ``training/cli.py``, and so on. Errors the user can fix are printed as one line (exit 2), but for
the one list among them: missing model files, one per line under one message.

Help is read by people who have not read the code: every parser here (``Parser``, which subcommands inherit)
shows each option's default, renders the docstrings it reuses as descriptions without their reStructuredText
markup, and words a value of the wrong type in English ("'x' is not an integer") rather than argparse's
``invalid int value``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import textwrap
from typing import Any

from unieditkit import __version__
from unieditkit.errors import UserError

COMMAND_MODULES = ("unieditkit.pipelines.cli", "unieditkit.pipelines.decontaminate", "unieditkit.pipelines.dedupe", "unieditkit.taxonomy.cli", "unieditkit.training.cli",
                   "unieditkit.training.edit", "unieditkit.evaluate", "unieditkit.inspect.cli")

#: commands whose re-run continues where an interrupted one stopped (done shards, the latest checkpoint)
RESUMABLE = ("build", "train")

_MARKUP = (
    (re.compile(r":\w+:`([^`]+)`"), r"`\1`"),  # :mod:`x`, :func:`x`
    (re.compile(r"``([^`]+)``"), r"`\1`"),
    (re.compile(r"\*\*([^*]+)\*\*"), r"\1"),
    (re.compile(r"::$", re.M), ":"),
)


def plain(text: str) -> str:
    """reStructuredText markup of a docstring as a terminal shows it: ``x`` and :mod:`x` as `x`, **x** as x."""
    for pattern, repl in _MARKUP:
        text = pattern.sub(repl, text)
    return text


class HelpFormatter(argparse.HelpFormatter):
    """Descriptions keep their paragraphs and bullet items (docstrings serve as descriptions), each re-wrapped to
    the terminal; an option's help gains its default unless it already says one."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        blocks = []
        for paragraph in plain(text).strip().split("\n\n"):
            items = re.split(r"\n(?=[*-] )", paragraph.strip("\n"))
            blocks.append("\n".join(
                textwrap.fill(" ".join(item.split()), width, initial_indent=indent,
                              subsequent_indent=indent + ("  " if item.lstrip()[:2] in ("* ", "- ") else ""))
                for item in items))
        return "\n\n".join(blocks)

    def _split_lines(self, text: str, width: int) -> list[str]:
        return super()._split_lines(plain(text), width)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        unset = default is None or default is False or default == "" or default == [] or default is argparse.SUPPRESS
        if text and not unset and action.option_strings and "default" not in text.lower():
            text += " (default: %(default)s)"
        return text


def _typed(kind: type, noun: str, example: str) -> Any:
    def convert(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {noun}, e.g. {example}") from None

    return convert


class Parser(argparse.ArgumentParser):
    """The ``unieditkit`` parser; ``add_subparsers`` makes every subcommand's parser one too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.register("type", int, _typed(int, "an integer", "3"))
        self.register("type", float, _typed(float, "a number", "0.5"))


def make_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
        resume = "; re-run the same command to resume" if args.command in RESUMABLE else ""
        print(f"unieditkit {args.command}: interrupted{resume}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
