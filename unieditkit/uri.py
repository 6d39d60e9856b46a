"""Input URIs: a file path, optionally followed by ``#key=value&key=value`` naming a part of that file.

Work units must carry references, never pixels, and some inputs are parts of a file rather than whole files:
a video frame (``clip.mp4#frame=12``), the pixels of some labels in a parsing map (``parse.png#labels=5,6``),
a row of a Hugging Face dataset (``hf://user/name#split=train&column=image&row=3``). Keeping the part in a URL
fragment leaves the path in front untouched, so ``WorkUnit.relative`` still turns it into a relative path.

Only fragments made of known keys count as parts: a file that happens to have ``#`` in its name stays a path.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

FRAGMENT_KEYS = frozenset({"frame", "labels", "split", "column", "row"})


def is_url(path: object) -> bool:
    """A URL (``s3://bucket/key``; ``unieditkit.storage`` says which schemes are read) rather than a local path."""
    return "://" in str(path)


def split_uri(uri: str) -> tuple[str, dict[str, str]]:
    """``PATH#k=v&k=v`` → ``(PATH, {k: v})``; a URI without a recognised fragment → ``(uri, {})``."""
    base, sep, fragment = uri.rpartition("#")
    if not sep or not base or not fragment:
        return uri, {}
    params: dict[str, str] = {}
    for part in fragment.split("&"):
        key, eq, value = part.partition("=")
        if not eq or key not in FRAGMENT_KEYS or key in params:
            return uri, {}
        params[key] = unquote(value)
    return base, params


def file_of(uri: str) -> str:
    """The file a URI reads (``clip.mp4`` of ``clip.mp4#frame=3``), or ``""`` for a row of a Hugging Face dataset,
    which is no single file."""
    base, params = split_uri(uri)
    return "" if "row" in params else base


def with_fragment(base: str, **params: object) -> str:
    """The inverse of :func:`split_uri`; keys keep the order given, so equal inputs give equal strings."""
    unknown = set(params) - FRAGMENT_KEYS
    if unknown:
        raise ValueError(f"unknown URI fragment keys {sorted(unknown)}; known: {sorted(FRAGMENT_KEYS)}")
    return base + "#" + "&".join(f"{k}={quote(str(v), safe=',/:')}" for k, v in params.items())


def int_param(uri: str, params: dict[str, str], key: str) -> int:
    """A non-negative integer fragment value; ``ValueError`` naming the URI otherwise."""
    try:
        value = int(params[key])
    except (KeyError, ValueError):
        raise ValueError(f"{uri}: '{key}' must be a non-negative integer") from None
    if value < 0:
        raise ValueError(f"{uri}: '{key}' must be a non-negative integer")
    return value
