"""Multi-view captures of single objects (MVImgNet style) → pairs of two views of one object.

Two views far apart in a capture sequence show the same object from another side, the strongest signal for
the viewpoint changes rigid objects need. The object is not annotated, so units need detection; the folder's
category name, when there is one, travels as ``category_hint`` (a detector prompt, not a label).

Layouts (both may be mixed under one root; view files sorted by name are the capture order)::

    DIR/<category>/<object_id>/images/*.jpg     MVImgNet
    DIR/<object_id>/*.jpg                       flat; optional DIR/<object_id>/category.txt (one line: the name)

A ``category.txt`` in the object folder wins; otherwise the parent folder name is the hint unless it is all
digits (MVImgNet's numeric category ids are not names) or the root itself.

Pairs: the first view is the reference; targets are ``pairs_per_object`` views spread evenly from
``min_gap_frac`` of the sequence to its last view (with one pair: the view ``min_gap_frac`` along, by default
half-way, i.e. the far side of an orbit). All pairs of an object share one group. Objects with fewer than two
views are skipped and counted in ``skipped``.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np

from unieditkit.errors import UserError

from .base import WorkUnit
from .config import format_spec
from .images import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)


def _views(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def target_views(n: int, min_gap_frac: float, count: int) -> list[int]:
    """Indices of the target views paired with view 0: evenly spaced over ``[gap, n - 1]``, distinct."""
    if n < 2:
        return []
    gap = min(n - 1, max(1, math.ceil(min_gap_frac * (n - 1))))
    return sorted({int(round(v)) for v in np.linspace(gap, n - 1, count)})


class MultiviewSource:
    kind = "multiview"
    OPTIONS: ClassVar[dict[str, type]] = {"min_gap_frac": float, "pairs_per_object": int}

    def __init__(self, path: str, min_gap_frac: float = 0.5, pairs_per_object: int = 1) -> None:
        self.root = Path(path)
        self.options: dict[str, Any] = {"min_gap_frac": min_gap_frac, "pairs_per_object": pairs_per_object}
        if not 0.0 < min_gap_frac <= 1.0:
            raise UserError(f"{self.describe()}: min_gap_frac must be in (0, 1], e.g. 0.5 (half-way through the capture)")
        if pairs_per_object < 1:
            raise UserError(f"{self.describe()}: pairs_per_object must be at least 1")
        if not self.root.is_dir():
            raise UserError(f"multiview:{path}: not a folder; pass --source multiview:/path/to/MVImgNet/")
        self.min_gap_frac, self.pairs_per_object = min_gap_frac, pairs_per_object
        self.objects = self._find_objects()
        if not self.objects:
            raise UserError(f"multiview:{path}: no object folders found (expected <category>/<object>/images/*.jpg or <object>/*.jpg)")
        self.skipped: Counter[str] = Counter()

    def describe(self) -> str:
        return format_spec(self.kind, str(self.root), self.options)

    def _find_objects(self) -> list[tuple[Path, list[Path]]]:
        """(object folder, its views) for every folder holding views directly or in ``images/``; sorted."""
        found = []
        for folder in [self.root, *sorted(p for p in self.root.rglob("*") if p.is_dir())]:
            rel = folder.relative_to(self.root)
            if any(part.startswith(".") for part in rel.parts) or folder.name == "images":
                continue
            views = _views(folder / "images") if (folder / "images").is_dir() else _views(folder)
            if views and folder != self.root:
                found.append((folder, views))
        return sorted(found, key=lambda fv: fv[0].relative_to(self.root).as_posix())

    def _hint(self, folder: Path) -> str:
        txt = folder / "category.txt"
        if txt.is_file():
            try:
                lines = txt.read_text(encoding="utf-8").strip().splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise UserError(f"{txt}: cannot read ({exc}); write the category name as one UTF-8 line") from None
            return lines[0].strip() if lines else ""
        parent = folder.parent
        if parent == self.root or parent.name.isdigit():
            return ""
        return parent.name

    def units(self) -> Iterator[WorkUnit]:
        self.skipped = Counter()
        root_name = self.root.resolve().name
        for folder, views in self.objects:
            targets = target_views(len(views), self.min_gap_frac, self.pairs_per_object)
            if not targets:
                self.skipped["single_view"] += 1
                continue
            group = f"multiview/{root_name}/{folder.relative_to(self.root).as_posix()}"
            hint = self._hint(folder)
            for t in targets:
                yield WorkUnit(
                    unit_id=f"{group}#views={views[0].stem}-{views[t].stem}",
                    group_id=group,
                    source_kind=self.kind,
                    pair_kind="multiview",
                    tgt_uri=str(views[t]),
                    ref_uri=str(views[0]),
                    needs_detection=True,
                    source_root=str(self.root),
                    category_hint=hint,
                )
        if self.skipped:
            log.warning("%s: skipped %d of %d objects with fewer than two views", self.describe(), sum(self.skipped.values()), len(self.objects))
