"""Keep evaluation images out of the training data: ``--against DIR`` at build time, ``unieditkit decontaminate``
to audit a finished build.

A model trained on a benchmark's own test images scores well on that benchmark for the wrong reason, and at
500K pairs mined from web photos and video some test images (VITON-HD test people, DreamBench objects, COCO
val photos reused by a benchmark) are bound to be among the inputs. So every accepted sample's target and
reference are compared with every image of the given folders by a 64-bit DCT perceptual hash (the same one
the per-shard dedupe uses), which survives resizing, re-encoding and small colour changes; a sample within
``eval_overlap_hamming`` bits of an evaluation image is rejected as ``eval_overlap``.

Each image is hashed in two views: the whole image, and its content box (the image without a uniform border:
a product shot on white, or a reference object on the build's grey), so a reference cut from an evaluation
product photo is caught as well as a reused target photo. Not caught: crops of an evaluation photo that are
much smaller than it, and the reference *frame* of a two-image pair, which is not stored in the sample (only
the object cut from it is).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from unieditkit.errors import UserError
from unieditkit.format import REF_IMAGE, TAR_SUFFIX, TARGET_IMAGE
from unieditkit.imageio import ImageReadError, load_rgb

from .config import OutputSettings, image_files
from .stages.pair import phash

#: a border pixel differs from the border's median colour by more than this (0..255, max over RGB) to be content
BORDER_TOLERANCE = 12
#: the content box is hashed as its own view only when it is clearly smaller than the image
MIN_TRIM = 0.9


def content_box(image: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` of the pixels that differ from the border's median colour, or ``None`` when the
    whole image is uniform."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]).astype(np.int16)
    colour = np.median(border, axis=0)
    differs = (np.abs(image.astype(np.int16) - colour).max(axis=2) > BORDER_TOLERANCE)
    ys = np.flatnonzero(differs.any(axis=1))
    xs = np.flatnonzero(differs.any(axis=0))
    if not len(xs):
        return None
    return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1


def view_hashes(image: np.ndarray) -> list[int]:
    """Perceptual hashes of the whole RGB image and, when it has a uniform border, of its content box."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    hashes = [phash(grey)]
    box = content_box(image)
    if box is not None:
        x0, y0, x1, y1 = box
        h, w = grey.shape
        if (x1 - x0) * (y1 - y0) < MIN_TRIM * w * h and min(x1 - x0, y1 - y0) >= 8:
            hashes.append(phash(grey[y0:y1, x0:x1]))
    return hashes


@dataclass(frozen=True)
class Overlap:
    """A sample image (``target`` or ``reference``) within ``bits`` of the evaluation image ``eval_image``."""

    which: str
    eval_image: str
    bits: int

    def __str__(self) -> str:
        return f"{self.which} is a near-duplicate of {self.eval_image} ({self.bits} bits apart)"


class EvalSet:
    """The view hashes of every image under some folders; small (8 bytes a view), so it travels with the
    filter stage to every worker instead of each worker re-reading the folders."""

    def __init__(self, folders: Sequence[str], max_hamming: int) -> None:
        self.max_hamming = max_hamming
        hashes: list[int] = []
        owners: list[int] = []
        self.names: list[str] = []
        for folder in folders:
            files = image_files(folder)
            if not files:
                raise UserError(f"--against {folder}: no images found (looked for .jpg, .png, .webp, .bmp, .tif under it)")
            for path in files:
                try:
                    image = load_rgb(str(path))
                except ImageReadError as exc:
                    raise UserError(f"--against {path}: unreadable evaluation image ({exc.reason}: {exc.detail}); fix or remove it") from None
                for h in view_hashes(image):
                    hashes.append(h)
                    owners.append(len(self.names))
                self.names.append(str(path))
        self.hashes = np.asarray(hashes, dtype=np.uint64)
        self.owners = np.asarray(owners, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.names)

    def nearest(self, hashes: Sequence[int]) -> tuple[int, str]:
        """Smallest Hamming distance of any of ``hashes`` to any evaluation view, and that image's path."""
        best, owner = 65, -1
        for h in hashes:
            bits = np.bitwise_count(self.hashes ^ np.uint64(h))
            i = int(bits.argmin())
            if int(bits[i]) < best:
                best, owner = int(bits[i]), int(self.owners[i])
        return best, self.names[owner] if owner >= 0 else ""

    def overlap(self, target: np.ndarray, reference: np.ndarray) -> Overlap | None:
        """The first of target, reference that is a near-duplicate of an evaluation image, or ``None``."""
        if self.max_hamming < 0 or not len(self.hashes):
            return None
        for which, image in (("target", target), ("reference", reference)):
            bits, name = self.nearest(view_hashes(image))
            if bits <= self.max_hamming:
                return Overlap(which, name, bits)
        return None


# ---- `unieditkit decontaminate OUT --against DIR`: audit a finished build ---------------------------------------


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "decontaminate",
        help="list samples of a build whose target or reference is a near-duplicate of an evaluation image",
        description="Audit a finished build against evaluation folders (exit 1 listing each overlap). Shards are "
        "not changed: to drop the overlaps, build with --against DIR (reason eval_overlap).",
    )
    p.add_argument("out_dir", metavar="OUT", help="a build folder")
    p.add_argument("--against", action="append", required=True, metavar="DIR", help="folder of evaluation images (repeatable)")
    p.add_argument("--hamming", type=int, default=OutputSettings().eval_overlap_hamming,
                   help="largest Hamming distance (bits of 64) that counts as a near-duplicate (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from unieditkit.reader import check_out_dir, done_shards, iter_samples

    out = check_out_dir(Path(args.out_dir))
    settings = OutputSettings(against=tuple(args.against), eval_overlap_hamming=args.hamming)
    eval_set = EvalSet(settings.against, settings.eval_overlap_hamming)
    found = checked = 0
    for shard in done_shards(out):
        for sample in iter_samples(out / f"{shard['shard']}{TAR_SUFFIX}"):
            checked += 1
            hit = eval_set.overlap(np.asarray(sample.rgb(TARGET_IMAGE)), np.asarray(sample.rgb(REF_IMAGE)))
            if hit is not None:
                found += 1
                print(f"{shard['shard']} {sample.key}: {hit}")
    summary = f"{checked} samples checked against {len(eval_set)} evaluation images: {found} overlap"
    if found:
        print(summary + "; rebuild with --against to reject them as eval_overlap", file=sys.stderr)
        return 1
    print(summary)
    return 0
