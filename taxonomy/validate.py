"""Turn the parsed taxonomy file into a ``Taxonomy``, checking every field on the way.

Every problem raises ``TaxonomyError`` with one line ``FILE: FIELD: problem; fix`` where FIELD is the path inside
the file (``domains[2].subcategories[5].prompts``), because a taxonomy is edited by hand and a build that
silently mis-maps a category is far costlier than a load that refuses.
"""

from __future__ import annotations

import difflib
import pathlib
import re
from typing import Any

from unieditkit.errors import TaxonomyError

from .model import Domain, Subcategory, Taxonomy, normalize_name

#: The bundled taxonomy's domains, in order; checked only in strict mode (see ``load_taxonomy``).
EXPECTED_DOMAINS = (
    "garments",
    "accessories",
    "persons",
    "animals",
    "vehicles",
    "furniture",
    "architecture",
    "products",
)
#: The bundled taxonomy's subcategory count; checked only in strict mode.
EXPECTED_SUBCATEGORIES = 209

MAX_PROMPTS = 3
MAX_SYNONYMS = 5

_SNAKE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
_TOP_FIELDS = ("name", "version", "domains")
_DOMAIN_FIELDS = ("key", "name", "description", "subcategories")
_SUB_FIELDS = ("id", "key", "name", "prompts", "synonyms", "rigid")
_OPTIONAL = {"synonyms"}


class _Checker:
    """Carries the file name so each check can build a complete one-line message."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def fail(self, field: str, problem: str) -> TaxonomyError:
        where = f"{self.path}: {field}: " if field else f"{self.path}: "
        return TaxonomyError(where + problem)

    def mapping(self, value: Any, field: str, allowed: tuple[str, ...]) -> dict:
        if not isinstance(value, dict):
            raise self.fail(field, f"expected a mapping with {', '.join(allowed)}, got {_describe(value)}")
        for name in value:
            if name not in allowed:
                close = difflib.get_close_matches(str(name), allowed, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise self.fail(_join(field, str(name)), f"unknown field; {hint}allowed: {', '.join(allowed)}")
        for name in allowed:
            if name not in value and name not in _OPTIONAL:
                raise self.fail(_join(field, name), "missing; every entry needs " + ", ".join(allowed))
        return value

    def text(self, value: Any, field: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(field, f"expected a non-empty string, got {_describe(value)}; quote it in the YAML")
        if value != value.strip():
            raise self.fail(field, f"'{value}' has leading/trailing whitespace; remove it")
        return value

    def key(self, value: Any, field: str) -> str:
        value = self.text(value, field)
        if not _SNAKE.match(value):
            suggestion = re.sub(r"[^a-z0-9]+", "_", value.lower()).strip("_")
            raise self.fail(field, f"'{value}' is not snake_case; use lower-case letters, digits and _ "
                                   f"(e.g. '{suggestion}')")
        return value

    def phrases(self, value: Any, field: str, lo: int, hi: int) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.fail(field, f"expected a list of {lo} to {hi} strings, got {_describe(value)}")
        if not lo <= len(value) <= hi:
            raise self.fail(field, f"has {len(value)} entries; give {lo} to {hi}")
        out = []
        for i, item in enumerate(value):
            item = self.text(item, f"{field}[{i}]")
            if item != item.lower():
                raise self.fail(f"{field}[{i}]", f"'{item}' is not lower-case; write '{item.lower()}'")
            out.append(item)
        return tuple(out)

    def flag(self, value: Any, field: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(field, f"expected true or false, got {_describe(value)}")
        return value

    def ident(self, value: Any, field: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(field, f"expected a non-negative integer, got {_describe(value)}")
        return value


def _describe(value: Any) -> str:
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{shown} ({type(value).__name__})"


def _join(field: str, name: str) -> str:
    return f"{field}.{name}" if field else name


def build_taxonomy(data: Any, path: pathlib.Path, strict_counts: bool) -> Taxonomy:
    """Validate the parsed YAML ``data`` read from ``path`` and build the ``Taxonomy``.

    ``strict_counts`` additionally requires the bundled layout: the 8 domains of ``EXPECTED_DOMAINS`` in order,
    209 subcategories and ids 0..208 in file order.
    """
    check = _Checker(path)
    top = check.mapping(data, "", _TOP_FIELDS)
    name = check.text(top["name"], "name")
    version = check.text(top["version"], "version")
    raw_domains = top["domains"]
    if not isinstance(raw_domains, list) or not raw_domains:
        raise check.fail("domains", f"expected a non-empty list of domains, got {_describe(raw_domains)}")

    seen_domains: set[str] = set()
    seen_ids: dict[int, str] = {}
    seen_keys: set[str] = set()
    seen_prompts: dict[str, str] = {}
    seen_names: dict[str, tuple[str, str]] = {}
    domains = []
    for d, raw in enumerate(raw_domains):
        dfield = f"domains[{d}]"
        check.mapping(raw, dfield, _DOMAIN_FIELDS)
        dkey = check.key(raw["key"], f"{dfield}.key")
        if dkey in seen_domains:
            raise check.fail(f"{dfield}.key", f"duplicate domain key '{dkey}'; domain keys must be unique")
        seen_domains.add(dkey)
        dname = check.text(raw["name"], f"{dfield}.name")
        description = check.text(raw["description"], f"{dfield}.description")
        raw_subs = raw["subcategories"]
        if not isinstance(raw_subs, list) or not raw_subs:
            raise check.fail(f"{dfield}.subcategories",
                             f"expected a non-empty list of subcategories, got {_describe(raw_subs)}")
        subs = []
        for s, sraw in enumerate(raw_subs):
            field = f"{dfield}.subcategories[{s}]"
            check.mapping(sraw, field, _SUB_FIELDS)
            sub = Subcategory(
                id=check.ident(sraw["id"], f"{field}.id"),
                key=check.key(sraw["key"], f"{field}.key"),
                domain=dkey,
                name=check.text(sraw["name"], f"{field}.name"),
                prompts=check.phrases(sraw["prompts"], f"{field}.prompts", 1, MAX_PROMPTS),
                synonyms=check.phrases(sraw.get("synonyms", []), f"{field}.synonyms", 0, MAX_SYNONYMS),
                rigid=check.flag(sraw["rigid"], f"{field}.rigid"),
            )
            if sub.id in seen_ids:
                raise check.fail(f"{field}.id", f"id {sub.id} is already used by '{seen_ids[sub.id]}'; "
                                                f"ids must be unique (next free: {max(seen_ids) + 1})")
            seen_ids[sub.id] = sub.key
            if sub.key in seen_keys:
                raise check.fail(f"{field}.key", f"duplicate subcategory key '{sub.key}'; keys must be unique")
            seen_keys.add(sub.key)
            for prompt in sub.prompts:
                if prompt in seen_prompts:
                    raise check.fail(f"{field}.prompts", f"duplicate prompt '{prompt}' (also in "
                                                         f"{seen_prompts[prompt]}); prompts must be unique")
                seen_prompts[prompt] = sub.key
            _check_names(check, sub, field, seen_names)
            subs.append(sub)
        domains.append(Domain(key=dkey, name=dname, description=description, subcategories=tuple(subs)))
    if strict_counts:
        _check_counts(check, domains)
    return Taxonomy(name=name, version=version, path=path, domains=tuple(domains))


def _check_names(check: _Checker, sub: Subcategory, field: str, seen: dict[str, tuple[str, str]]) -> None:
    """Reject a name that ``Taxonomy.lookup`` would resolve to two subcategories."""
    labelled = [("key", sub.key), ("name", sub.name)]
    labelled += [(f"prompts[{i}]", p) for i, p in enumerate(sub.prompts)]
    labelled += [(f"synonyms[{i}]", s) for i, s in enumerate(sub.synonyms)]
    for label, name in labelled:
        norm = normalize_name(name)
        if not norm:
            raise check.fail(f"{field}.{label}", f"'{name}' has no letters or digits; give a real name")
        owner, owner_label = seen.setdefault(norm, (sub.key, label))
        if owner != sub.key:
            raise check.fail(f"{field}.{label}", f"'{name}' also names subcategory '{owner}' (its {owner_label}); "
                                                 "lookup must be unambiguous, so keep it in one subcategory only")


def _check_counts(check: _Checker, domains: list[Domain]) -> None:
    keys = tuple(d.key for d in domains)
    if keys != EXPECTED_DOMAINS:
        raise check.fail("domains", f"expected the {len(EXPECTED_DOMAINS)} domains {', '.join(EXPECTED_DOMAINS)} "
                                    f"in this order, got {', '.join(keys)}; "
                                    "load a custom taxonomy with strict_counts=False")
    ids = [s.id for d in domains for s in d.subcategories]
    if len(ids) != EXPECTED_SUBCATEGORIES:
        raise check.fail("domains", f"has {len(ids)} subcategories, expected {EXPECTED_SUBCATEGORIES}; "
                                    "load a custom taxonomy with strict_counts=False")
    if ids != list(range(EXPECTED_SUBCATEGORIES)):
        bad = next(i for i, sid in enumerate(ids) if sid != i)
        raise check.fail("domains", f"subcategory #{bad} in file order has id {ids[bad]}, expected {bad}; "
                                    f"ids must run 0..{EXPECTED_SUBCATEGORIES - 1} in file order")
