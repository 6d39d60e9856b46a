"""Source kinds selectable with ``--source KIND:PATH[?option=value&...]``; with no ``--source`` the bundled sample is used.

Options and the YAML form of a source list are described in ``config.py``.
"""

from __future__ import annotations

from .base import AnnotatedObject, Source, WorkUnit
from .kinds import SAMPLE_DATA, SOURCE_KINDS, default_sources, load_sources_yaml, parse_source

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
