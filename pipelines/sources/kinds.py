"""The source kinds by name, and the two ways to name sources: ``--source KIND:PATH[?options]`` (``parse_source``)
and a YAML file of them (``load_sources_yaml``). Kept apart from ``config.py``, whose spec helpers every source
class imports, so that naming the classes here runs one way: kinds → classes → config."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Callable

import yaml

from unieditkit.errors import UserError
from unieditkit.uri import is_url

from .base import Source
from .coco import CocoSource
from .config import coerce_options, format_spec, split_spec
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


def load_sources_yaml(path: str | Path) -> list[str]:
    """Read a sources YAML file into spec strings for :func:`unieditkit.pipelines.sources.parse_source`.

    Checks kinds, option names and types and that local paths exist, naming the file and the field at fault;
    URLs (``s3://…``) are left to the source, which lists them.
    """
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"{file}: cannot read the sources file ({exc.strerror or exc}); check the path") from None
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        first = " ".join(str(exc).split())
        raise UserError(f"{file}: not valid YAML ({first}); fix the syntax") from None
    if not isinstance(data, dict) or not isinstance(data.get("sources"), list) or not data["sources"]:
        raise UserError(f"{file}: expected a mapping with a non-empty 'sources:' list of {{kind, path, options...}}")
    extra = sorted(set(data) - {"sources"})
    if extra:
        raise UserError(f"{file}: unknown top-level key '{extra[0]}'; only 'sources' is allowed")
    specs = []
    for i, entry in enumerate(data["sources"]):
        where = f"{file}: sources[{i}]"
        if not isinstance(entry, dict):
            raise UserError(f"{where}: expected a mapping like {{kind: video, path: clips/}}, got {entry!r}")
        kind = entry.get("kind")
        if kind not in SOURCE_KINDS:
            close = difflib.get_close_matches(str(kind), list(SOURCE_KINDS), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise UserError(f"{where}.kind: unknown kind {kind!r}; {hint}valid kinds: {', '.join(SOURCE_KINDS)}")
        raw_path = entry.get("path")
        if not isinstance(raw_path, str) or not raw_path:
            raise UserError(f"{where}.path: expected a non-empty path string, got {raw_path!r}")
        resolved = Path(raw_path) if Path(raw_path).is_absolute() else file.parent / raw_path
        if is_url(raw_path):
            source_path = raw_path  # object storage, checked when the source lists it
        elif resolved.exists():
            source_path = str(resolved)
        elif kind == "hf":
            source_path = raw_path  # a Hub name, checked when the source opens it
        else:
            raise UserError(f"{where}.path: '{raw_path}' not found (relative paths are resolved against {file.parent})")
        raw = {k: v for k, v in entry.items() if k not in ("kind", "path")}
        allowed = getattr(SOURCE_KINDS[kind], "OPTIONS", {})
        options = coerce_options(f"{where}", kind, raw, allowed)
        specs.append(format_spec(kind, source_path, options))
    return specs
