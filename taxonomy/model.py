"""The in-memory taxonomy: domains, subcategories and name lookup.

Objects here are built only by ``unieditkit.taxonomy.validate`` from a checked file, so they assume their invariants hold
(unique ids, keys and lookup names) instead of re-checking them.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import pathlib
import re
from dataclasses import dataclass

from unieditkit.errors import TaxonomyError

_SEPARATORS = re.compile(r"[\s_\-]+")


def normalize_name(name: str) -> str:
    """The form under which names are compared: lower-case, with runs of spaces/underscores/hyphens as one space.

    Dataset category names spell the same thing as ``dining_table``, ``Dining Table`` or ``dining-table``; this
    makes them equal without any fuzzy matching (which could silently map a name onto the wrong subcategory).
    """
    return _SEPARATORS.sub(" ", name.strip().lower()).strip()


@dataclass(frozen=True)
class Subcategory:
    """One leaf of the taxonomy; ``id`` is stable across taxonomy versions and is what shards record."""

    id: int
    key: str
    domain: str
    name: str
    prompts: tuple[str, ...]
    synonyms: tuple[str, ...]
    rigid: bool

    def names(self) -> tuple[str, ...]:
        """Every name ``Taxonomy.lookup`` resolves to this subcategory (before normalisation)."""
        return (self.key, self.name, *self.prompts, *self.synonyms)

    def to_dict(self) -> dict:
        """The subcategory as it is written in the taxonomy file (the domain is implied by its position)."""
        return {
            "id": self.id,
            "key": self.key,
            "name": self.name,
            "prompts": list(self.prompts),
            "synonyms": list(self.synonyms),
            "rigid": self.rigid,
        }


@dataclass(frozen=True)
class Domain:
    """A top-level group of subcategories; builds write one dataset config (and shard family) per domain."""

    key: str
    name: str
    description: str
    subcategories: tuple[Subcategory, ...]

    def to_dict(self) -> dict:
        return {
            "key": self.key,
            "name": self.name,
            "description": self.description,
            "subcategories": [s.to_dict() for s in self.subcategories],
        }


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"did you mean '{close[0]}'? " if close else ""


class Taxonomy:
    """A validated taxonomy; obtain one with ``taxonomy.load_taxonomy``."""

    def __init__(self, name: str, version: str, path: pathlib.Path, domains: tuple[Domain, ...]) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.domains: dict[str, Domain] = {d.key: d for d in domains}
        self.subcategories: tuple[Subcategory, ...] = tuple(
            sorted((s for d in domains for s in d.subcategories), key=lambda s: s.id)
        )
        self._by_key = {s.key: s for s in self.subcategories}
        self._by_id = {s.id: s for s in self.subcategories}
        self._by_name = {normalize_name(n): s for s in self.subcategories for n in s.names()}

    def __repr__(self) -> str:
        return (
            f"Taxonomy(name={self.name!r}, version={self.version!r}, "
            f"domains={len(self.domains)}, subcategories={len(self.subcategories)}, path='{self.path}')"
        )

    def domain(self, key: str) -> Domain:
        """The domain ``key``; an unknown key raises ``TaxonomyError`` naming the closest valid one."""
        try:
            return self.domains[key]
        except KeyError:
            valid = list(self.domains)
            raise TaxonomyError(
                f"unknown domain '{key}'; {_suggest(key, valid)}valid: {', '.join(valid)}"
            ) from None

    def by_key(self, key: str) -> Subcategory:
        """The subcategory ``key``; an unknown key raises ``TaxonomyError`` with a suggestion."""
        try:
            return self._by_key[key]
        except KeyError:
            named = self.lookup(key)
            hint = f"did you mean '{named.key}'? " if named else _suggest(key, list(self._by_key))
            raise TaxonomyError(
                f"unknown subcategory '{key}'; {hint}"
                f"valid keys are the {len(self._by_key)} subcategory keys in {self.path.name}"
            ) from None

    def by_id(self, id: int) -> Subcategory:
        """The subcategory with the stable id ``id``."""
        try:
            return self._by_id[id]
        except (KeyError, TypeError):
            raise TaxonomyError(
                f"unknown subcategory id {id!r}; valid ids are {min(self._by_id)}..{max(self._by_id)} "
                f"in {self.path.name}"
            ) from None

    def lookup(self, name: str) -> Subcategory | None:
        """Map a dataset category name onto the taxonomy, or None when it is not one of its names.

        Matches a subcategory's key, display name, synonyms and prompts after ``normalize_name``; never guesses,
        so an unmapped category stays unmapped rather than landing in a wrong subcategory.
        """
        return self._by_name.get(normalize_name(name))

    def to_dict(self) -> dict:
        """JSON-serialisable, with the same structure as the taxonomy file."""
        return {
            "name": self.name,
            "version": self.version,
            "domains": [d.to_dict() for d in self.domains.values()],
        }

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of ``to_dict``: independent of file layout, comments and location,
        so a build can tell that the taxonomy it was made with has changed."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
