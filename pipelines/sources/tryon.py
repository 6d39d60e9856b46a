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

from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np

from unieditkit.errors import UserError
from unieditkit.imageio import ImageReadError, load_label_map
from unieditkit.uri import with_fragment

from .base import AnnotatedObject, WorkUnit
from .config import format_spec
from .images import IMAGE_EXTENSIONS

VITON_GARMENT_LABELS = (5, 6, 7)
DRESSCODE_CATEGORIES = ("upper_body", "lower_body", "dresses")
DRESSCODE_LABELS = {"upper_body": (4,), "lower_body": (5, 6), "dresses": (7,)}
DRESSCODE_SKIRT, DRESSCODE_PANTS = 5, 6


def _first_existing(folder: Path, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    for suffix in suffixes:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


class TryonSource:
    kind = "tryon"
    OPTIONS: ClassVar[dict[str, type]] = {"upper_category": str, "lower_category": str}

    def __init__(self, path: str, upper_category: str = "shirt", lower_category: str = "auto") -> None:
        self.root = Path(path)
        self.options: dict[str, Any] = {"upper_category": upper_category, "lower_category": lower_category}
        if not upper_category or not lower_category:
            raise UserError(f"{self.describe()}: upper_category and lower_category must be category names (lower_category may be 'auto')")
        self.upper_category, self.lower_category = upper_category, lower_category
        if not self.root.is_dir():
            raise UserError(f"tryon:{path}: not a folder; pass the VITON-HD or DressCode root")
        self.viton = [d for d in (self.root / "train", self.root / "test", self.root) if (d / "image").is_dir() and (d / "cloth").is_dir()]
        candidates = [self.root / c for c in DRESSCODE_CATEGORIES] + [self.root]
        self.dresscode = [d for d in candidates if (d / "images").is_dir() and self._dresscode_category(d)]
        if not self.viton and not self.dresscode:
            raise UserError(
                f"tryon:{path}: neither VITON-HD ({{train,test}}/image + cloth) nor DressCode "
                f"({{upper_body,lower_body,dresses}}/images) layout found; pass the dataset root"
            )

    def describe(self) -> str:
        return format_spec(self.kind, str(self.root), self.options)

    def _dresscode_category(self, folder: Path) -> str:
        return folder.name if folder.name in DRESSCODE_CATEGORIES else ""

    def units(self) -> Iterator[WorkUnit]:
        for split_dir in self.viton:
            yield from self._viton_units(split_dir)
        for cat_dir in self.dresscode:
            yield from self._dresscode_units(cat_dir)

    def _unit(self, person: Path, garment: Path, garment_mask: Path | None, parse: Path, labels: tuple[int, ...], category: str) -> WorkUnit:
        root_name = self.root.resolve().name
        obj = AnnotatedObject(
            category=category,
            bbox=(0.0, 0.0, 0.0, 0.0),
            object_id="garment",
            mask_uri=with_fragment(str(parse), labels=",".join(str(v) for v in labels)),
        )
        return WorkUnit(
            unit_id=f"tryon/{root_name}/{person.relative_to(self.root).as_posix()}",
            group_id=f"tryon/{root_name}/{garment.relative_to(self.root).as_posix()}",
            source_kind=self.kind,
            pair_kind="tryon",
            tgt_uri=str(person),
            ref_uri=str(garment),
            ref_mask_uri=str(garment_mask) if garment_mask else "",
            objects=(obj,),
            source_root=str(self.root),
        )

    def _viton_units(self, split_dir: Path) -> Iterator[WorkUnit]:
        for person in _images(split_dir / "image"):
            stem = person.stem
            garment = _first_existing(split_dir / "cloth", stem, (".jpg", ".png", ".jpeg")) or split_dir / "cloth" / person.name
            mask = _first_existing(split_dir / "cloth-mask", stem, (".jpg", ".png", ".jpeg"))
            parse = _first_existing(split_dir / "image-parse-v3", stem, (".png",)) or _first_existing(split_dir / "image-parse", stem, (".png",))
            yield self._unit(person, garment, mask, parse or split_dir / "image-parse-v3" / f"{stem}.png", VITON_GARMENT_LABELS, self.upper_category)

    def _dresscode_units(self, cat_dir: Path) -> Iterator[WorkUnit]:
        category = self._dresscode_category(cat_dir)
        for person in _images(cat_dir / "images"):
            if not person.stem.endswith("_0"):
                continue
            item = person.stem[:-2]
            garment = _first_existing(cat_dir / "images", f"{item}_1", (".jpg", ".png", ".jpeg")) or cat_dir / "images" / f"{item}_1.jpg"
            mask = _first_existing(cat_dir / "cloth_mask", f"{item}_1", (".png", ".jpg")) or _first_existing(cat_dir / "masks", f"{item}_1", (".png", ".jpg"))
            parse = cat_dir / "label_maps" / f"{item}_4.png"
            labels, name = DRESSCODE_LABELS[category], {"upper_body": self.upper_category, "dresses": "dress"}.get(category, self.lower_category)
            if category == "lower_body" and self.lower_category == "auto":
                labels, name = self._lower_kind(parse)
            yield self._unit(person, garment, mask, parse, labels, name)

    def _lower_kind(self, parse: Path) -> tuple[tuple[int, ...], str]:
        """Skirt or trousers, from which label covers more of the person; both labels when it cannot tell."""
        try:
            counts = np.bincount(load_label_map(parse).ravel().clip(0, 255), minlength=256)
        except ImageReadError:
            return DRESSCODE_LABELS["lower_body"], "trousers"
        if counts[DRESSCODE_SKIRT] == counts[DRESSCODE_PANTS] == 0:
            return DRESSCODE_LABELS["lower_body"], "trousers"
        if counts[DRESSCODE_SKIRT] > counts[DRESSCODE_PANTS]:
            return (DRESSCODE_SKIRT,), "skirt"
        return (DRESSCODE_PANTS,), "trousers"
