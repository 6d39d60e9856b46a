"""Render the README's picture: ``python scripts/render_readme_picture.py [--out PNG]``.

The picture promises to be what a newcomer sees after the README's first commands, ``unieditkit build --domain
garments --out out`` and then ``unieditkit preview out --n 3``, so it is made by running exactly those two
commands on the bundled sample (into a temporary folder), never drawn or edited by hand. ``tests/test_docs.py``
renders it again from a fresh build and compares the pixels: a change to the sample, the build or the preview
that alters the picture fails there until this script is run again and the new picture committed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from unieditkit.cli import main as unieditkit

ROOT = Path(__file__).resolve().parent.parent
PICTURE = ROOT / "docs" / "images" / "preview-garments.png"
DOMAIN = "garments"
ROWS = 3


def render(out_dir: Path, picture: Path) -> None:
    """``unieditkit preview OUT_DIR --n 3 --out PICTURE``, as the README shows it."""
    if unieditkit(["preview", str(out_dir), "--n", str(ROWS), "--out", str(picture)]) != 0:
        raise SystemExit(f"unieditkit preview {out_dir} failed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--out", type=Path, default=PICTURE, help="PNG to write (default: %(default)s)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="readme-picture-") as tmp:
        out_dir = Path(tmp) / "out"
        if unieditkit(["build", "--domain", DOMAIN, "--out", str(out_dir), "--no-progress"]) != 0:
            raise SystemExit(f"unieditkit build --domain {DOMAIN} failed")
        render(out_dir, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
