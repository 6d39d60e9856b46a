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
import posixpath
from collections import Counter
from pathlib import PurePosixPath
from typing import Any, ClassVar, Iterator

import numpy as np

from unieditkit.errors import UserError

from .base import WorkUnit
from .config import format_spec
from .files import Tree, hidden, normalize, read_text
from .images import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)


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
        self.path = normalize(path)
        self.options: dict[str, Any] = {"min_gap_frac": min_gap_frac, "pairs_per_object": pairs_per_object}
        if not 0.0 < min_gap_frac <= 1.0:
            raise UserError(f"{self.describe()}: min_gap_frac must be in (0, 1], e.g. 0.5 (half-way through the capture)")
        if pairs_per_object < 1:
            raise UserError(f"{self.describe()}: pairs_per_object must be at least 1")
        self.tree = Tree(f"multiview:{path}", path, "pass --source multiview:/path/to/MVImgNet/ (or s3://bucket/MVImgNet/)")
        self.min_gap_frac, self.pairs_per_object = min_gap_frac, pairs_per_object
        self.objects = self._find_objects()
        if not self.objects:
            raise UserError(f"multiview:{path}: no object folders found (expected <category>/<object>/images/*.jpg or <object>/*.jpg)")
        self.skipped: Counter[str] = Counter()

    def describe(self) -> str:
        return format_spec(self.kind, self.path, self.options)

    def _find_objects(self) -> list[tuple[str, list[str]]]:
        """(object folder, its views) for every folder holding views directly or in ``images/``, as paths relative
        to the root; sorted."""
        found = []
        for folder in sorted(self.tree.folders):
            if hidden(folder) or posixpath.basename(folder) == "images":
                continue
            images = f"{folder}/images"
            views = self.tree.children(images if self.tree.is_dir(images) else folder, IMAGE_EXTENSIONS)
            if views:
                found.append((folder, views))
        return found

    def _hint(self, folder: str) -> str:
        txt = f"{folder}/category.txt"
        if self.tree.is_file(txt):
            lines = read_text(self.tree.uri(txt), "write the category name as one UTF-8 line").strip().splitlines()
            return lines[0].strip() if lines else ""
        parent = posixpath.dirname(folder)
        if not parent or posixpath.basename(parent).isdigit():
            return ""
        return posixpath.basename(parent)

    def units(self) -> Iterator[WorkUnit]:
        self.skipped = Counter()
        for folder, views in self.objects:
            targets = target_views(len(views), self.min_gap_frac, self.pairs_per_object)
            if not targets:
                self.skipped["single_view"] += 1
                continue
            group = f"multiview/{self.tree.name}/{folder}"
            hint = self._hint(folder)
            stem = [PurePosixPath(v).stem for v in views]
            for t in targets:
                yield WorkUnit(
                    unit_id=f"{group}#views={stem[0]}-{stem[t]}",
                    group_id=group,
                    source_kind=self.kind,
                    pair_kind="multiview",
                    tgt_uri=self.tree.uri(views[t]),
                    ref_uri=self.tree.uri(views[0]),
                    needs_detection=True,
                    source_root=self.tree.url,
                    category_hint=hint,
                )
        if self.skipped:
            log.warning("%s: skipped %d of %d objects with fewer than two views", self.describe(), sum(self.skipped.values()), len(self.objects))
