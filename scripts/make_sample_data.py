"""Generate the sample source bundled with unieditkit (``pipelines/sample_data``).

The sample lets ``unieditkit build`` run offline with no arguments, so it must be small, deterministic and
free of licence questions. It has two kinds of image, told apart by their file names:

* real photographs (``astronaut.jpg``, ``grace_hopper.jpg``, ...), public domain or CC0, copied from the
  scikit-image and matplotlib wheels, with hand-drawn polygons from ``scripts/sample_photos.json``: they are
  what a new user sees first, and they show whether masks follow real objects;
* ``synthetic_<domain>_NNN.jpg``, drawn here (textured blobs on textured backgrounds), a few dozen per
  domain, whose category names exercise the taxonomy mapping (keys, display names, synonyms), plus objects of
  other domains and one unmapped category. Only these are made for the benchmarks' larger inputs.

Run: ``python scripts/make_sample_data.py`` (rewrites the folder; the output is committed).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from unieditkit.taxonomy import load_taxonomy

SIZE = (320, 240)


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    low = rng.integers(40, 215, size=(4, 5, 3)).astype(np.float32)
    img = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    grain = cv2.resize(rng.normal(0, 12, size=(height // 4, width // 4, 3)).astype(np.float32), (width, height))
    horizon = int(rng.integers(height // 2, height - 30))
    img[horizon:] *= 0.75
    return np.clip(img + grain, 0, 255)


def blob(rng: np.random.Generator, cx: float, cy: float, radius: float, width: int, height: int) -> np.ndarray:
    """A smooth star-ish outline: different objects get visibly different shapes."""
    theta = np.linspace(0, 2 * np.pi, 28, endpoint=False)
    r = np.ones_like(theta)
    for k in (2, 3, 5):
        r += rng.uniform(0.0, 0.18) * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
    sx, sy = rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0)
    pts = np.stack([cx + radius * sx * r * np.cos(theta), cy + radius * sy * r * np.sin(theta)], axis=1)
    pts[:, 0] = np.clip(pts[:, 0], 1, width - 2)
    pts[:, 1] = np.clip(pts[:, 1], 1, height - 2)
    return np.round(pts, 1)


def paint(img: np.ndarray, pts: np.ndarray, rng: np.random.Generator) -> None:
    height, width = img.shape[:2]
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    c1, c2 = rng.integers(0, 255, size=3), rng.integers(0, 255, size=3)
    period = rng.uniform(6, 18)
    angle = rng.uniform(0, np.pi)
    stripes = (np.sin((xx * np.cos(angle) + yy * np.sin(angle)) / period * 2 * np.pi) > 0)[..., None]
    texture = np.where(stripes, c1, c2).astype(np.float32)
    shade = 0.75 + 0.25 * (1 - (yy - pts[:, 1].min()) / max(1.0, np.ptp(pts[:, 1])))[..., None]
    img[mask > 0] = (texture * np.clip(shade, 0.5, 1.0))[mask > 0]


def category_names(sub) -> list[str]:
    """Spell categories the way datasets do: keys, display names and synonyms."""
    return [sub.key, sub.name, *sub.synonyms]


PHOTOS = Path(__file__).resolve().parent / "sample_photos.json"
LICENSES = [
    {"id": 1, "name": "CC0-1.0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"},
    {"id": 2, "name": "Public domain", "url": "https://creativecommons.org/publicdomain/mark/1.0/"},
]


def load_photo(loader: str) -> np.ndarray:
    """An RGB photograph shipped inside an installed wheel (``skimage.data.NAME`` or ``matplotlib:FILE``)."""
    if loader.startswith("matplotlib:"):
        from matplotlib import cbook
        from PIL import Image

        with Image.open(cbook.get_sample_data(loader.split(":", 1)[1])) as im:
            return np.asarray(im.convert("RGB"))
    import skimage.data

    img = getattr(skimage.data, loader.rsplit(".", 1)[1])()
    return np.stack([img] * 3, axis=-1) if img.ndim == 2 else img[..., :3]


def polygon_annotation(ann_id: int, image_id: int, category_id: int, flat: list[float]) -> dict:
    pts = np.asarray(flat, np.float32).reshape(-1, 2)
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": [[float(v) for v in pts.reshape(-1)]],
        "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
        "area": float(cv2.contourArea(pts)),
        "iscrowd": 0,
    }


def provenance(photos: list[dict], n_images: int) -> str:
    """The sample's README: which images are real photographs (and their licences) and which are generated."""
    rows = "\n".join(
        f"| `images/{p['file']}` | {p['subject']} | {', '.join(o['category'] for o in p['objects'])} | `{p['loader']}` | {p['licence']} |"
        for p in photos
    )
    return f"""# The bundled sample

`unieditkit build` uses this folder when no `--source` is given (`coco:instances.json`). Written by
`scripts/make_sample_data.py`; do not edit by hand.

## Real photographs ({len(photos)})

| file | subject | annotated objects (category as written) | taken from | licence |
|---|---|---|---|---|
{rows}

Their polygons (`scripts/sample_photos.json`) were drawn by hand around each object, snapped to its edges with
OpenCV GrabCut inside a band of a few pixels, and checked by eye on an overlay.

## Generated images ({n_images - len(photos)})

Every `images/synthetic_<domain>_NNN.jpg` is drawn by the script (textured blobs on textured backgrounds,
CC0-1.0). Their category names exercise the taxonomy mapping: keys, display names, synonyms, objects of other
domains and one unmapped category (`mystery gadget`).
"""


def generate(out: Path, images_per_domain: int = 24, size: tuple[int, int] = SIZE, photos: bool = False) -> Path:
    """Write images + ``instances.json`` into ``out``; also used by the benchmarks for larger (synthetic) inputs."""
    width, height = size
    shutil.rmtree(out, ignore_errors=True)
    (out / "images").mkdir(parents=True)
    tax = load_taxonomy()
    domains = list(tax.domains.values())
    rng = np.random.default_rng(20261128)
    categories: dict[str, int] = {}
    images, annotations = [], []

    def cat_id(name: str) -> int:
        return categories.setdefault(name, len(categories) + 1)

    for d_index, domain in enumerate(domains):
        subs = domain.subcategories
        for i in range(images_per_domain):
            img = background(rng, width, height)
            objects = [subs[(i * 2 + j) % len(subs)] for j in range(1 + (i % 3 == 0))]
            names = []
            for j, sub in enumerate(objects):
                options = category_names(sub)
                names.append(options[(i + j) % len(options)])
            if i % 6 == 5:
                names.append(category_names(domains[(d_index + 1) % len(domains)].subcategories[i % 5])[0])
            if i == 7:
                names.append("mystery gadget")
            slots = len(names)
            for j, name in enumerate(names):
                cx = width * (j + 0.5) / slots + rng.uniform(-15, 15)
                cy = height * rng.uniform(0.4, 0.6)
                radius = min(width / slots, height) * rng.uniform(0.28, 0.42)
                pts = blob(rng, cx, cy, radius, width, height)
                paint(img, pts, rng)
                annotations.append(polygon_annotation(len(annotations) + 1, len(images) + 1, cat_id(name), pts.reshape(-1)))
            file_name = f"synthetic_{domain.key}_{i:03d}.jpg"
            cv2.imwrite(str(out / "images" / file_name), cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
            images.append({"id": len(images) + 1, "file_name": file_name, "width": width, "height": height, "license": 1})
    for photo in json.loads(PHOTOS.read_text())["photos"] if photos else []:
        img = load_photo(photo["loader"])
        cv2.imwrite(str(out / "images" / photo["file"]), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        licence = 1 if photo["licence"].startswith("CC0") else 2
        images.append({"id": len(images) + 1, "file_name": photo["file"], "width": img.shape[1], "height": img.shape[0],
                       "license": licence, "source": photo["loader"], "credit": photo["licence"]})
        for obj in photo["objects"]:
            annotations.append(polygon_annotation(len(annotations) + 1, len(images), cat_id(obj["category"]), obj["polygon"]))
    coco = {
        "info": {"description": "unieditkit bundled sample: real photographs (public domain / CC0, see README.md) "
                 "and generated synthetic_* images (CC0-1.0)", "version": "2"},
        "licenses": LICENSES,
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n, "supercategory": ""} for n, i in categories.items()],
    }
    path = out / "instances.json"
    path.write_text(json.dumps(coco, indent=None, separators=(",", ":")) + "\n")
    if photos:
        (out / "README.md").write_text(provenance(json.loads(PHOTOS.read_text())["photos"], len(images)))
    print(f"{len(images)} images, {len(annotations)} objects, {len(categories)} category names → {out}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "pipelines" / "sample_data"))
    parser.add_argument("--images-per-domain", type=int, default=24)
    parser.add_argument("--size", type=int, nargs=2, default=SIZE, metavar=("W", "H"))
    args = parser.parse_args()
    generate(Path(args.out), args.images_per_domain, tuple(args.size), photos=True)


if __name__ == "__main__":
    main()
