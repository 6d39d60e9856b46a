"""Source kinds selectable with ``--source KIND:PATH``; with no ``--source`` the bundled sample is used."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Callable

from unieditkit.errors import UserError

from .base import AnnotatedObject, Source, WorkUnit
from .coco import CocoSource
from .manifest import ManifestSource

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data" / "instances.json"

SOURCE_KINDS: dict[str, Callable[[str], Source]] = {
    "coco": CocoSource,
    "manifest": ManifestSource,
}


def parse_source(spec: str) -> Source:
    """``KIND:PATH`` → a source; unknown kinds get a suggestion and the list of valid ones."""
    kind, sep, path = spec.partition(":")
    if not sep or not path:
        raise UserError(f"--source {spec!r}: expected KIND:PATH, e.g. coco:data/instances.json; kinds: {', '.join(SOURCE_KINDS)}")
    if kind not in SOURCE_KINDS:
        close = difflib.get_close_matches(kind, SOURCE_KINDS, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UserError(f"--source {spec!r}: unknown kind '{kind}'; {hint}valid kinds: {', '.join(SOURCE_KINDS)}")
    return SOURCE_KINDS[kind](path)


def default_sources() -> list[Source]:
    """The sample bundled with the package, so ``unieditkit build`` works offline with no arguments."""
    return [CocoSource(str(SAMPLE_DATA))]


__all__ = ["AnnotatedObject", "Source", "WorkUnit", "SOURCE_KINDS", "parse_source", "default_sources", "SAMPLE_DATA"]
