"""Remove the top-level ``training`` package that sam2 1.1.0 installs beside ``sam2``.

sam2's wheel carries its own training code as a package named ``training``; in site-packages it shadows this
project's ``training`` package, so the installed ``unieditkit train`` would import sam2's trainer. SAM 2's
predictors, the only part unieditkit uses, never import it. Only the files sam2's RECORD lists are removed
(then the folders they leave empty), so nothing of another package is touched.
"""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path


def main() -> None:
    dist = importlib.metadata.distribution("sam2")
    root = Path(dist.locate_file(""))
    files = [f for f in dist.files or [] if f.parts and f.parts[0] == "training"]
    present = [f for f in files if (root / f).is_file()]
    for f in present:
        (root / f).unlink()
    folders = sorted({(root / f).parent for f in files}, key=lambda p: len(p.parts), reverse=True)
    for folder in folders:
        shutil.rmtree(folder / "__pycache__", ignore_errors=True)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    print(f"removed sam2's top-level 'training' package ({len(present)} files) from {root}")


if __name__ == "__main__":
    main()
