"""A Hugging Face dataset with an image column: one ``self`` unit per row, objects found by detection.

``hf:OWNER/NAME?split=train&image_column=image`` reads a Hub dataset from the local Hugging Face cache (it must
have been downloaded once; offline and not cached is a one-line error saying how); ``hf:/path/to/ds`` reads a
``save_to_disk`` folder or anything ``datasets.load_dataset`` opens from a path (parquet, imagefolder).

Rows are referenced as ``DATASET#split=S&column=C&row=N`` (``unieditkit.imageio.load_uri`` reads them), where
DATASET is ``hf://OWNER/NAME`` or the local path; for a local dataset ``source_root`` is its parent folder so
metadata stores ``NAME#split=...``, not the machine's absolute path. The row number is the unit id, so it is
stable as long as the dataset version is. ``group_column`` (optional) names a column whose equal values must
stay in one split (e.g. a product id), otherwise every row is its own group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Iterator

from unieditkit.errors import UserError
from unieditkit.hfdata import HUB_PREFIX, hub_ref, is_hub, open_dataset
from unieditkit.uri import with_fragment

from .base import WorkUnit
from .config import format_spec


class HFSource:
    kind = "hf"
    OPTIONS: ClassVar[dict[str, type]] = {"split": str, "image_column": str, "group_column": str}

    def __init__(self, path: str, split: str = "train", image_column: str = "image", group_column: str = "") -> None:
        self.name = path
        self.options: dict[str, Any] = {"split": split, "image_column": image_column}
        if group_column:
            self.options["group_column"] = group_column
        self.ref = hub_ref(path)
        self.split, self.image_column, self.group_column = split, image_column, group_column
        self.dataset = open_dataset(self.ref, split, image_column)
        if group_column and group_column not in self.dataset.column_names:
            raise UserError(f"{self.describe()}: no column '{group_column}' for group_column; columns: {', '.join(self.dataset.column_names)}")

    def describe(self) -> str:
        return format_spec(self.kind, self.name, self.options)

    def units(self) -> Iterator[WorkUnit]:
        if is_hub(self.ref):
            label, root = self.ref[len(HUB_PREFIX) :], ""
        else:
            label, root = Path(self.ref).name, str(Path(self.ref).parent)
        groups = list(self.dataset[self.group_column]) if self.group_column else None
        for row in range(len(self.dataset)):
            unit_id = f"hf/{label}/{self.split}/{row}"
            yield WorkUnit(
                unit_id=unit_id,
                group_id=f"hf/{label}/{self.group_column}={groups[row]}" if groups is not None else unit_id,
                source_kind=self.kind,
                pair_kind="self",
                tgt_uri=with_fragment(self.ref, split=self.split, column=self.image_column, row=row),
                needs_detection=True,
                source_root=root,
            )
