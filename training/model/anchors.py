"""Anchors: the taxonomy facts routing needs (domain order, subcategory ids and their domains).

Domain indices follow the taxonomy file's domain order and subcategory ids are the taxonomy's stable ids, so a
checkpoint's routing means the same thing on any dataset built with the same taxonomy.
"""

from __future__ import annotations

from dataclasses import dataclass

from unieditkit.errors import UserError


@dataclass(frozen=True)
class Anchors:
    """``domains[i]`` is domain index ``i``; ``subcategory_domains[s]`` is the domain index of subcategory id
    ``s`` (-1 for an unused id)."""

    domains: tuple[str, ...]
    subcategory_domains: tuple[int, ...]

    @property
    def num_domains(self) -> int:
        return len(self.domains)

    @property
    def num_subcategories(self) -> int:
        return len(self.subcategory_domains)

    def domain_index(self, key: str) -> int:
        try:
            return self.domains.index(key)
        except ValueError:
            raise UserError(f"domain '{key}' is not in the taxonomy (valid: {', '.join(self.domains)})") from None

    @classmethod
    def from_taxonomy(cls, path: str = "") -> Anchors:
        """The anchors of the bundled taxonomy, or of the taxonomy file ``path`` (``model.taxonomy``)."""
        from unieditkit.taxonomy import load_taxonomy

        tax = load_taxonomy(path or None)
        domains = tuple(tax.domains)
        subs = tax.subcategories
        table = [-1] * (max(s.id for s in subs) + 1)
        for s in subs:
            table[s.id] = domains.index(s.domain)
        return cls(domains, tuple(table))
