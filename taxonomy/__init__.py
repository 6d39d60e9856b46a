"""The unieditkit taxonomy: 8 domains and 209 subcategories, shipped as versioned YAML data.

``load_taxonomy()`` returns the bundled taxonomy (cached); ``load_taxonomy(path)`` loads a user's own file.
The bundled file must have exactly the 8 domains and 209 subcategories (ids 0..208 in file order) because
datasets record those ids; a custom file only has to be structurally sound (unique ids, keys and prompts,
lower-case prompts and synonyms, names that ``Taxonomy.lookup`` resolves unambiguously) and may have any counts.
"""

from __future__ import annotations

import functools
import os
import pathlib
from typing import Any

import yaml

from unieditkit.errors import TaxonomyError

from .model import Domain, Subcategory, Taxonomy, normalize_name
from .validate import EXPECTED_DOMAINS, EXPECTED_SUBCATEGORIES, build_taxonomy

__all__ = [
    "DEFAULT_TAXONOMY_PATH",
    "EXPECTED_DOMAINS",
    "EXPECTED_SUBCATEGORIES",
    "Domain",
    "Subcategory",
    "Taxonomy",
    "load_taxonomy",
    "normalize_name",
]

DEFAULT_TAXONOMY_PATH = pathlib.Path(__file__).resolve().parent / "unieditkit-taxonomy-v1.yaml"


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects repeated mapping keys, which plain YAML silently resolves to the last one
    (a second ``prompts:`` line would otherwise drop the first list without a word)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: pathlib.Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaxonomyError(
            f"{path}: taxonomy file not found; pass an existing YAML file, or no path for the bundled "
            f"{DEFAULT_TAXONOMY_PATH.name}"
        ) from None
    except IsADirectoryError:
        raise TaxonomyError(f"{path}: is a directory; pass the taxonomy YAML file itself") from None
    except UnicodeDecodeError as err:
        raise TaxonomyError(f"{path}: not UTF-8 text (byte {err.start}); save the file as UTF-8") from None
    except OSError as err:
        raise TaxonomyError(f"{path}: cannot read ({err.strerror}); check the path and its permissions") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ":"
        problem = getattr(err, "problem", None) or str(err)
        problem = " ".join(str(problem).split())
        raise TaxonomyError(f"{path}: invalid YAML{where} {problem}; fix the syntax there") from None


def _load(path: pathlib.Path, strict_counts: bool) -> Taxonomy:
    return build_taxonomy(_read_yaml(path), path, strict_counts)


@functools.lru_cache(maxsize=None)
def _load_default() -> Taxonomy:
    return _load(DEFAULT_TAXONOMY_PATH, strict_counts=True)


def load_taxonomy(path: str | os.PathLike | None = None, *, strict_counts: bool | None = None) -> Taxonomy:
    """Load and validate a taxonomy file (the bundled one when ``path`` is None).

    ``strict_counts`` requires the bundled layout (the 8 domains of ``EXPECTED_DOMAINS`` in order, 209
    subcategories, ids 0..208 in file order). It defaults to True for the bundled file and False for any other,
    so a custom taxonomy may have other counts while still passing every structural check. The bundled
    taxonomy is parsed once per process and shared (``Taxonomy`` is not meant to be mutated).
    """
    resolved = DEFAULT_TAXONOMY_PATH if path is None else pathlib.Path(path)
    is_default = path is None or resolved.resolve() == DEFAULT_TAXONOMY_PATH
    strict = is_default if strict_counts is None else strict_counts
    if is_default and strict:
        return _load_default()
    return _load(resolved, strict)
