"""A folder of unannotated photos: one ``self`` unit per image, objects found by the detect/segment stages.

``self`` pairs are the weakest kind (the reference is a strongly augmented crop of the very object in the
target), which is why ``pair_kind`` says so and every image is its own group. Images are not opened here: a
file that turns out unreadable becomes a rejected row with its reason in the build, like any other bad input.
"""

from __future__ import annotations

from typing import ClassVar, Iterator

from unieditkit.errors import UserError

from .base import WorkUnit
from .config import format_spec
from .files import Tree

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


class ImagesSource:
    """Hidden files and folders (a leading dot: ``.DS_Store``, ``.cache``) are skipped. Files are taken in the
    order of their POSIX relative paths, not the OS listing, which is what makes unit order and ids the same on
    every machine and every filesystem."""

    kind = "images"
    OPTIONS: ClassVar[dict[str, type]] = {}

    def __init__(self, path: str) -> None:
        self.tree = Tree(f"images:{path}", path, "pass --source images:/path/to/photos/ (or s3://bucket/photos/)")
        self.files = self.tree.find(IMAGE_EXTENSIONS)
        if not self.files:
            raise UserError(f"images:{path}: no images found (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, any case, in subfolders too)")

    def describe(self) -> str:
        return format_spec(self.kind, self.tree.url, {})

    def units(self) -> Iterator[WorkUnit]:
        for rel in self.files:
            unit_id = f"images/{self.tree.name}/{rel}"
            yield WorkUnit(
                unit_id=unit_id,
                group_id=unit_id,
                source_kind=self.kind,
                pair_kind="self",
                tgt_uri=self.tree.uri(rel),
                needs_detection=True,
                source_root=self.tree.url,
            )
