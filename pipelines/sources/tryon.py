"""Virtual try-on datasets → (in-shop garment, person wearing it) pairs.

The garment photo is the reference and the person photo the target; the garment's region in the target comes
from the dataset's human-parsing map, referenced as ``PARSE.png#labels=...`` (``load_mask_uri`` in
``unieditkit.imageio``) so that no mask file has to be written.

Layouts (the root, or directly one split / one category folder of it)::

    VITON-HD   DIR/{train,test}/image/X.jpg            person
               DIR/{train,test}/cloth/X.jpg            the garment the person wears (same name)
               DIR/{train,test}/cloth-mask/X.jpg       garment mask (optional: else the whole garment image)
               DIR/{train,test}/image-parse-v3/X.png   LIP/CIHP parsing; garment = 5 upper-clothes, 6 dress,
                                                       7 coat (HR-VITON's "upper" group)
    DressCode  DIR/{upper_body,lower_body,dresses}/images/X_0.jpg   person;  X_1.jpg the garment
               DIR/.../label_maps/X_4.png              parsing; garment = 4 upper clothes, 5 skirt, 6 pants,
                                                       7 dress (the DressCode label_map)
               DIR/.../cloth_mask/X_1.png|jpg          garment mask, when present (not part of the release)

Pairs are made by name (the person and the garment share the id), not from ``*_pairs.txt``: VITON-HD's
``test_pairs.txt`` and DressCode's ``*_unpaired.txt`` pair people with garments they are *not* wearing,
whose parse region would be the wrong garment. The datasets' own train/test split is not kept; units are
split by group (the garment) like every other source.

Categories: upper-body garments are ``upper_category`` (default ``shirt``), dresses ``dress``; for DressCode
lower-body items ``lower_category=auto`` reads the label map once to choose ``skirt`` (label 5) or
``trousers`` (label 6), any other value names the category for all of them (labels 5 and 6). A file that is
missing or unreadable is not checked here: the pair stage rejects that unit with the reason.
"""

from __future__ import annotations

import posixpath
from pathlib import PurePosixPath
from typing import Any, ClassVar, Iterator

import numpy as np

from unieditkit.errors import UserError
from unieditkit.imageio import ImageReadError, load_label_map
from unieditkit.uri import with_fragment

from .base import AnnotatedObject, WorkUnit
from .config import format_spec
from .files import Tree, normalize
from .images import IMAGE_EXTENSIONS

VITON_GARMENT_LABELS = (5, 6, 7)
DRESSCODE_CATEGORIES = ("upper_body", "lower_body", "dresses")
DRESSCODE_LABELS = {"upper_body": (4,), "lower_body": (5, 6), "dresses": (7,)}
DRESSCODE_SKIRT, DRESSCODE_PANTS = 5, 6


class TryonSource:
    """Works on paths relative to the dataset root (``train/image/X.jpg``), answered from one listing."""

    kind = "tryon"
    OPTIONS: ClassVar[dict[str, type]] = {"upper_category": str, "lower_category": str}

    def __init__(self, path: str, upper_category: str = "shirt", lower_category: str = "auto") -> None:
        self.path = normalize(path)
        self.options: dict[str, Any] = {"upper_category": upper_category, "lower_category": lower_category}
        if not upper_category or not lower_category:
            raise UserError(f"{self.describe()}: upper_category and lower_category must be category names (lower_category may be 'auto')")
        self.upper_category, self.lower_category = upper_category, lower_category
        self.tree = Tree(f"tryon:{path}", path, "pass the VITON-HD or DressCode root")
        has = self.tree.is_dir
        self.viton = [d for d in ("train", "test", "") if has(posixpath.join(d, "image")) and has(posixpath.join(d, "cloth"))]
        candidates = [*DRESSCODE_CATEGORIES, ""]
        self.dresscode = [d for d in candidates if has(posixpath.join(d, "images")) and self._dresscode_category(d)]
        if not self.viton and not self.dresscode:
            raise UserError(
                f"tryon:{path}: neither VITON-HD ({{train,test}}/image + cloth) nor DressCode "
                f"({{upper_body,lower_body,dresses}}/images) layout found; pass the dataset root"
            )

    def describe(self) -> str:
        return format_spec(self.kind, self.path, self.options)

    def _dresscode_category(self, folder: str) -> str:
        name = posixpath.basename(folder) if folder else self.tree.name
        return name if name in DRESSCODE_CATEGORIES else ""

    def _first_existing(self, folder: str, stem: str, suffixes: tuple[str, ...]) -> str | None:
        for suffix in suffixes:
            if self.tree.is_file(posixpath.join(folder, f"{stem}{suffix}")):
                return posixpath.join(folder, f"{stem}{suffix}")
        return None

    def units(self) -> Iterator[WorkUnit]:
        for split_dir in self.viton:
            yield from self._viton_units(split_dir)
        for cat_dir in self.dresscode:
            yield from self._dresscode_units(cat_dir)

    def _unit(self, person: str, garment: str, garment_mask: str | None, parse: str, labels: tuple[int, ...], category: str) -> WorkUnit:
        uri = self.tree.uri
        obj = AnnotatedObject(
            category=category,
            bbox=(0.0, 0.0, 0.0, 0.0),
            object_id="garment",
            mask_uri=with_fragment(uri(parse), labels=",".join(str(v) for v in labels)),
        )
        return WorkUnit(
            unit_id=f"tryon/{self.tree.name}/{person}",
            group_id=f"tryon/{self.tree.name}/{garment}",
            source_kind=self.kind,
            pair_kind="tryon",
            tgt_uri=uri(person),
            ref_uri=uri(garment),
            ref_mask_uri=uri(garment_mask) if garment_mask else "",
            objects=(obj,),
            source_root=self.tree.url,
        )

    def _viton_units(self, split_dir: str) -> Iterator[WorkUnit]:
        image, cloth, cloth_mask, parse_v3, parse_v1 = (
            posixpath.join(split_dir, name) for name in ("image", "cloth", "cloth-mask", "image-parse-v3", "image-parse")
        )
        for person in self.tree.children(image, IMAGE_EXTENSIONS):
            stem = PurePosixPath(person).stem
            garment = self._first_existing(cloth, stem, (".jpg", ".png", ".jpeg")) or posixpath.join(cloth, posixpath.basename(person))
            mask = self._first_existing(cloth_mask, stem, (".jpg", ".png", ".jpeg"))
            parse = self._first_existing(parse_v3, stem, (".png",)) or self._first_existing(parse_v1, stem, (".png",))
            yield self._unit(person, garment, mask, parse or posixpath.join(parse_v3, f"{stem}.png"), VITON_GARMENT_LABELS, self.upper_category)

    def _dresscode_units(self, cat_dir: str) -> Iterator[WorkUnit]:
        category = self._dresscode_category(cat_dir)
        images, cloth_mask, masks, label_maps = (posixpath.join(cat_dir, name) for name in ("images", "cloth_mask", "masks", "label_maps"))
        for person in self.tree.children(images, IMAGE_EXTENSIONS):
            if not PurePosixPath(person).stem.endswith("_0"):
                continue
            item = PurePosixPath(person).stem[:-2]
            garment = self._first_existing(images, f"{item}_1", (".jpg", ".png", ".jpeg")) or posixpath.join(images, f"{item}_1.jpg")
            mask = self._first_existing(cloth_mask, f"{item}_1", (".png", ".jpg")) or self._first_existing(masks, f"{item}_1", (".png", ".jpg"))
            parse = posixpath.join(label_maps, f"{item}_4.png")
            labels, name = DRESSCODE_LABELS[category], {"upper_body": self.upper_category, "dresses": "dress"}.get(category, self.lower_category)
            if category == "lower_body" and self.lower_category == "auto":
                labels, name = self._lower_kind(parse)
            yield self._unit(person, garment, mask, parse, labels, name)

    def _lower_kind(self, parse: str) -> tuple[tuple[int, ...], str]:
        """Skirt or trousers, from which label covers more of the person; both labels when it cannot tell."""
        try:
            counts = np.bincount(load_label_map(self.tree.uri(parse)).ravel().clip(0, 255), minlength=256)
        except ImageReadError:
            return DRESSCODE_LABELS["lower_body"], "trousers"
        if counts[DRESSCODE_SKIRT] == counts[DRESSCODE_PANTS] == 0:
            return DRESSCODE_LABELS["lower_body"], "trousers"
        if counts[DRESSCODE_SKIRT] > counts[DRESSCODE_PANTS]:
            return (DRESSCODE_SKIRT,), "skirt"
        return (DRESSCODE_PANTS,), "trousers"
