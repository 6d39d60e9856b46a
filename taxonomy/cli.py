"""``unieditkit taxonomy``: print the taxonomy (or one domain of it), as a table or JSON."""

from __future__ import annotations

import argparse
import json

from . import load_taxonomy


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("taxonomy", help="print the domains and subcategories", description="Print the taxonomy used to map and detect objects.")
    p.add_argument("--domain", default="", help="only this domain")
    p.add_argument("--json", action="store_true", help="machine-readable JSON")
    p.add_argument("--taxonomy", default="", help="a taxonomy YAML file instead of the bundled one")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    tax = load_taxonomy(args.taxonomy or None)
    domains = [tax.domain(args.domain)] if args.domain else list(tax.domains.values())
    if args.json:
        data = tax.to_dict()
        data["domains"] = [d for d in data["domains"] if d["key"] in {x.key for x in domains}]
        print(json.dumps(data, indent=1))
        return 0
    print(f"{tax.name} {tax.version}: {len(tax.domains)} domains, {len(tax.subcategories)} subcategories")
    for d in domains:
        print(f"\n{d.key} ({len(d.subcategories)}): {d.description}")
        for s in d.subcategories:
            kind = "rigid" if s.rigid else "non-rigid"
            extra = f"  synonyms: {', '.join(s.synonyms)}" if s.synonyms else ""
            print(f"  {s.id:3d}  {s.key:<24} {kind:<9}  prompts: {', '.join(s.prompts)}{extra}")
    return 0
