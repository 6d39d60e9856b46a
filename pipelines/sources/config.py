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
from typing import Any, Mapping
from urllib.parse import parse_qsl, urlencode

from unieditkit.errors import UserError

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
