"""A folder of unannotated photos: one ``self`` unit per image, objects found by the detect/segment stages.

``self`` pairs are the weakest kind (the reference is a strongly augmented crop of the very object in the
target), which is why ``pair_kind`` says so and every image is its own group. Images are not opened here: a
file that turns out unreadable becomes a rejected row with its reason in the build, like any other bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Iterator

from unieditkit.errors import UserError

from .base import WorkUnit
from .config import format_spec

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def list_files(root: Path, extensions: frozenset[str]) -> list[Path]:
    """Files under ``root`` with one of ``extensions`` (any case), recursively, sorted by relative path.

    Hidden files and folders (a leading dot: ``.DS_Store``, ``.cache``) are skipped. Sorting the POSIX relative
    path, not the OS listing, is what makes unit order and ids the same on every machine.
    """
    found = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if p.suffix.lower() in extensions and p.is_file():
            found.append(p)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


class ImagesSource:
    kind = "images"
    OPTIONS: ClassVar[dict[str, type]] = {}

    def __init__(self, path: str) -> None:
        self.root = Path(path)
        if not self.root.is_dir():
            raise UserError(f"images:{path}: not a folder; pass --source images:/path/to/photos/")
        self.files = list_files(self.root, IMAGE_EXTENSIONS)
        if not self.files:
            raise UserError(f"images:{path}: no images found (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, any case, in subfolders too)")

    def describe(self) -> str:
        return format_spec(self.kind, str(self.root), {})

    def units(self) -> Iterator[WorkUnit]:
        for p in self.files:
            unit_id = f"images/{self.root.resolve().name}/{p.relative_to(self.root).as_posix()}"
            yield WorkUnit(
                unit_id=unit_id,
                group_id=unit_id,
                source_kind=self.kind,
                pair_kind="self",
                tgt_uri=str(p),
                needs_detection=True,
                source_root=str(self.root),
            )
