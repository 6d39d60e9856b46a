"""JSON-lines manifests for users who already have annotations or pairs.

Two line shapes, so one file can mix them:

* ``{"image": "a.jpg", "objects": [{"category": "dress", "bbox": [x0, y0, x1, y1], "mask": "a_mask.png"}]}``
  (or ``"polygon": [[x, y, x, y, ...], ...]`` instead of ``mask``): a ``self`` unit, the reference is cut
  from the image itself.
* ``{"ref": "product.jpg", "target": "scene.jpg", "mask": "scene_mask.png", "category": "handbag"}`` with
  optional ``ref_mask`` and ``bbox``: a ``manifest`` pair from two different photos.

Optional ``"group"`` keeps related lines in one split; ``"id"`` overrides the line's unit id. Relative paths
are resolved against the manifest's folder, on the manifest's filesystem (``manifest:s3://bucket/m.jsonl``
reads ``a.jpg`` from ``s3://bucket/a.jpg``); absolute paths and URLs are taken as they are.
"""

from __future__ import annotations

import json
import posixpath
from pathlib import PurePosixPath
from typing import Any, Iterator

from unieditkit.errors import UserError
from unieditkit.uri import is_url

from .base import AnnotatedObject, WorkUnit
from .files import is_file, join, normalize, open_text, parent


class ManifestSource:
    kind = "manifest"

    def __init__(self, path: str) -> None:
        self.path = normalize(path)
        if not is_file(f"manifest:{path}", self.path):
            raise UserError(f"manifest:{path}: file not found; pass --source manifest:/path/to/file.jsonl (or s3://BUCKET/…)")
        self.folder = parent(self.path)
        self.stem = PurePosixPath(self.path).stem

    def describe(self) -> str:
        return f"manifest:{self.path}"

    def _resolve(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value:
            raise UserError(f"{where}: expected a non-empty path string, got {value!r}")
        return value if is_url(value) or posixpath.isabs(value) else join(self.folder, value)

    def _object(self, obj: Any, where: str, index: int) -> AnnotatedObject:
        if not isinstance(obj, dict) or not isinstance(obj.get("category"), str):
            raise UserError(f"{where}: each object needs a 'category' string (and 'bbox', 'mask' or 'polygon')")
        bbox = obj.get("bbox")
        polygon = obj.get("polygon")
        if bbox is None and polygon is None and "mask" not in obj:
            raise UserError(f"{where}: object '{obj['category']}' has no 'bbox', 'mask' or 'polygon'")
        if bbox is not None and (not isinstance(bbox, list) or len(bbox) != 4):
            raise UserError(f"{where}.bbox: expected [x0, y0, x1, y1], got {bbox!r}")
        if bbox is None and polygon is not None:
            xs = [v for poly in polygon for v in poly[0::2]]
            ys = [v for poly in polygon for v in poly[1::2]]
            bbox = [min(xs), min(ys), max(xs), max(ys)]
        return AnnotatedObject(
            category=obj["category"],
            bbox=tuple(float(v) for v in (bbox or (0, 0, 0, 0))),  # type: ignore[arg-type]
            object_id=str(obj.get("id", index)),
            segmentation=polygon,
            mask_uri=self._resolve(obj["mask"], f"{where}.mask") if "mask" in obj else "",
        )

    def units(self) -> Iterator[WorkUnit]:
        with open_text(self.path) as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                where = f"{self.path}:{lineno}"
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UserError(f"{where}: invalid JSON ({exc.msg}); one JSON object per line") from None
                if not isinstance(rec, dict):
                    raise UserError(f"{where}: expected a JSON object per line")
                yield self._unit(rec, where, lineno)

    def _unit(self, rec: dict[str, Any], where: str, lineno: int) -> WorkUnit:
        if "image" in rec:
            objects = rec.get("objects")
            if not isinstance(objects, list):
                raise UserError(f"{where}: 'objects' must be a list of {{category, bbox|mask|polygon}}")
            unit_id = f"manifest/{self.stem}/{rec.get('id', rec['image'])}"
            return WorkUnit(
                unit_id=unit_id,
                group_id=str(rec.get("group", unit_id)),
                source_kind=self.kind,
                source_root=self.folder,
                pair_kind="self",
                tgt_uri=self._resolve(rec["image"], f"{where}.image"),
                objects=tuple(self._object(o, f"{where}.objects[{i}]", i) for i, o in enumerate(objects)),
            )
        if "ref" in rec and "target" in rec:
            if "mask" not in rec and "bbox" not in rec:
                raise UserError(f"{where}: a ref/target pair needs the target 'mask' (or at least its 'bbox')")
            obj = self._object({**rec, "id": 0}, where, 0)
            pair_id = rec.get("id", f"{rec['ref']}|{rec['target']}")
            unit_id = f"manifest/{self.stem}/{pair_id}"
            return WorkUnit(
                unit_id=unit_id,
                group_id=str(rec.get("group", unit_id)),
                source_kind=self.kind,
                source_root=self.folder,
                pair_kind="manifest",
                tgt_uri=self._resolve(rec["target"], f"{where}.target"),
                ref_uri=self._resolve(rec["ref"], f"{where}.ref"),
                ref_mask_uri=self._resolve(rec["ref_mask"], f"{where}.ref_mask") if "ref_mask" in rec else "",
                objects=(obj,),
            )
        raise UserError(f"{where}: a line needs either 'image' + 'objects' or 'ref' + 'target' (+ 'mask')")
