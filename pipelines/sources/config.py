"""Source specs with options, on the command line and in a YAML file.

A source is one string, ``KIND:PATH`` optionally followed by ``?key=value&key=value`` (the same form as a URL
query), e.g. ``video:clips/?min_gap_frac=0.2&pairs_per_video=4`` or ``hf:user/name?split=train``. Keeping a
source a string means ``--source``, the YAML file and ``build_config.json`` (which records what a build was
made from, to refuse resuming with other inputs) all speak one language.

The YAML form lists the same thing as mappings; relative paths are resolved against the YAML file's folder::

    sources:
      - {kind: video, path: clips/, min_gap_frac: 0.1, pairs_per_video: 2}
      - {kind: tryon, path: /data/VITON-HD}

Each source class declares its options as ``OPTIONS = {name: type}``; :func:`coerce_options` checks names and
converts values, so a typo is a one-line error instead of a silently ignored setting.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import parse_qsl, urlencode

import yaml

from unieditkit.errors import UserError
from unieditkit.uri import is_url

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def split_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """``KIND:PATH?k=v&k=v`` → ``(KIND, PATH, {k: v})``; a ``?`` not followed by ``k=v`` pairs stays in PATH."""
    kind, _, rest = spec.partition(":")
    path, sep, query = rest.rpartition("?")
    if sep and query:
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            return kind, rest, {}
        options: dict[str, str] = {}
        for key, value in pairs:
            if key in options:
                raise UserError(f"--source {spec!r}: option '{key}' given twice; give each option once")
            options[key] = value
        return kind, path, options
    return kind, rest, {}


def _convert(value: Any, typ: type, where: str) -> Any:
    if typ is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise UserError(f"{where}: expected {typ.__name__}, got {value!r}")


def coerce_options(where: str, kind: str, raw: Mapping[str, Any], allowed: Mapping[str, type]) -> dict[str, Any]:
    """Check option names against ``allowed`` and convert their values; ``where`` names the spec or file."""
    options: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in allowed:
            close = [a for a in allowed if a.startswith(key)] or difflib.get_close_matches(key, list(allowed), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            valid = ", ".join(allowed) if allowed else "none"
            raise UserError(f"{where}: unknown option '{key}' for kind '{kind}'; {hint}valid options: {valid}")
        options[key] = _convert(value, allowed[key], f"{where}: option '{key}'")
    return options


def format_spec(kind: str, path: str, options: Mapping[str, Any]) -> str:
    """The canonical spec string (options sorted, booleans as true/false), used by ``describe()`` too."""
    if not options:
        return f"{kind}:{path}"
    text = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in sorted(options.items())}
    return f"{kind}:{path}?{urlencode(text, safe='/,:')}"


def load_sources_yaml(path: str | Path) -> list[str]:
    """Read a sources YAML file into spec strings for :func:`unieditkit.pipelines.sources.parse_source`.

    Checks kinds, option names and types and that local paths exist, naming the file and the field at fault;
    URLs (``s3://…``) are left to the source, which lists them.
    """
    from . import SOURCE_KINDS

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
