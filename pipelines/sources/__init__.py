"""Source kinds selectable with ``--source KIND:PATH[?option=value&...]``; with no ``--source`` the bundled sample is used.

Options and the YAML form of a source list are described in ``config.py``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Callable

from unieditkit.errors import UserError

from .base import AnnotatedObject, Source, WorkUnit
from .coco import CocoSource
from .config import coerce_options, load_sources_yaml, split_spec
from .hf import HFSource
from .images import ImagesSource
from .manifest import ManifestSource
from .multiview import MultiviewSource
from .tryon import TryonSource
from .video import VideoSource

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data" / "instances.json"

SOURCE_KINDS: dict[str, Callable[..., Source]] = {
    "coco": CocoSource,
    "manifest": ManifestSource,
    "images": ImagesSource,
    "video": VideoSource,
    "multiview": MultiviewSource,
    "tryon": TryonSource,
    "hf": HFSource,
}


def parse_source(spec: str) -> Source:
    """``KIND:PATH[?k=v&...]`` → a source; unknown kinds get a suggestion and the list of valid ones."""
    kind, path, raw = split_spec(spec)
    if ":" not in spec or not path:
        raise UserError(f"--source {spec!r}: expected KIND:PATH, e.g. coco:data/instances.json; kinds: {', '.join(SOURCE_KINDS)}")
    if kind not in SOURCE_KINDS:
        close = difflib.get_close_matches(kind, SOURCE_KINDS, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UserError(f"--source {spec!r}: unknown kind '{kind}'; {hint}valid kinds: {', '.join(SOURCE_KINDS)}")
    cls = SOURCE_KINDS[kind]
    options = coerce_options(f"--source {spec!r}", kind, raw, getattr(cls, "OPTIONS", {}))
    return cls(path, **options)


def default_sources() -> list[Source]:
    """The sample bundled with the package, so ``unieditkit build`` works offline with no arguments."""
    return [CocoSource(str(SAMPLE_DATA))]


__all__ = [
    "AnnotatedObject",
    "Source",
    "WorkUnit",
    "SOURCE_KINDS",
    "parse_source",
    "load_sources_yaml",
    "default_sources",
    "SAMPLE_DATA",
]
