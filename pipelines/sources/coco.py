"""COCO instance annotations (``instances.json`` with images beside it): one ``self`` unit per image.

The file and its images may live on any fsspec filesystem (``coco:s3://bucket/coco/instances.json``): image paths
stay URLs, read by the workers with their own credentials (``unieditkit.imageio.read_bytes``).
"""

from __future__ import annotations

import json
import posixpath
from collections import defaultdict
from pathlib import PurePosixPath
from typing import Any, Iterator

from unieditkit.errors import UserError

from .base import AnnotatedObject, WorkUnit
from .files import filesystem, is_file


def _require(obj: dict[str, Any], field: str, where: str) -> Any:
    if field not in obj:
        raise UserError(f"{where}: missing field '{field}'; COCO instance files need images[], annotations[] and categories[]")
    return obj[field]


class CocoSource:
    """Reads boxes and polygon/RLE masks; crowd annotations are skipped since they are not single instances."""

    kind = "coco"

    def __init__(self, path: str) -> None:
        self.path = path
        self.fs = filesystem(f"coco:{path}", path)[0]
        if not is_file(f"coco:{path}", path):
            raise UserError(f"coco:{path}: file not found; pass --source coco:/path/to/instances.json (or s3://BUCKET/…)")
        try:
            self.data = json.loads(self.fs.cat_file(path).decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"coco:{path}: not a readable JSON file ({exc}); export COCO instances as JSON") from None
        self.image_root = self._image_root()

    def describe(self) -> str:
        return f"coco:{self.path}"

    def _image_root(self) -> str:
        """Images may sit beside the JSON or in an ``images/`` folder next to it (the two common layouts)."""
        images = _require(self.data, "images", self.path)
        parent = posixpath.dirname(self.path)
        for root in (parent, posixpath.join(parent, "images")):
            if images and self.fs.exists(posixpath.join(root, images[0].get("file_name", ""))):
                return root
        return parent

    def units(self) -> Iterator[WorkUnit]:
        where = self.path
        categories = {c["id"]: c["name"] for c in _require(self.data, "categories", where)}
        by_image: dict[Any, list[dict[str, Any]]] = defaultdict(list)
        for i, ann in enumerate(_require(self.data, "annotations", where)):
            for field in ("image_id", "category_id", "bbox"):
                _require(ann, field, f"{where}: annotations[{i}]")
            if not ann.get("iscrowd", 0):
                by_image[ann["image_id"]].append(ann)
        for i, img in enumerate(_require(self.data, "images", where)):
            for field in ("id", "file_name"):
                _require(img, field, f"{where}: images[{i}]")
            size = (int(img.get("width", 0)), int(img.get("height", 0)))
            objects = []
            for ann in by_image.get(img["id"], []):
                x, y, w, h = (float(v) for v in ann["bbox"])
                objects.append(
                    AnnotatedObject(
                        category=categories.get(ann["category_id"], f"category_id={ann['category_id']}"),
                        bbox=(x, y, x + w, y + h),
                        object_id=str(ann.get("id", len(objects))),
                        segmentation=ann.get("segmentation") or None,
                        image_size=size,
                    )
                )
            unit_id = f"coco/{PurePosixPath(self.path).stem}/{img['file_name']}"
            yield WorkUnit(
                unit_id=unit_id,
                group_id=unit_id,
                source_kind=self.kind,
                source_root=posixpath.dirname(self.path),
                pair_kind="self",
                tgt_uri=posixpath.join(self.image_root, img["file_name"]),
                objects=tuple(objects),
            )
