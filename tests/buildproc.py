"""The small COCO source and the build command that the kill, crash and object-storage tests run as real build
processes (``test_promises.py``, ``test_reliability.py``, ``test_cluster_s3.py``). ``conftest.py`` makes the
source and one uninterrupted reference build once per session, so each of those tests pays only for its own runs.

One Ray worker and one unit per batch: shards finish one after another, so a kill at the N-th shard leaves some
shards done and some not.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARD_FILES = (".tar", ".parquet", "_stats.json")


def generate_source(root: Path, per_domain: int = 8) -> Path:
    """``scripts/make_sample_data.py``'s synthetic COCO set: 8 photos per domain, 5 garments shards with ``build_cmd``."""
    spec = importlib.util.spec_from_file_location("make_sample_data", ROOT / "scripts" / "make_sample_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate(root, per_domain, (240, 180))


def build_cmd(source: str | Path, out: str | Path) -> list[str]:
    return [sys.executable, "-m", "unieditkit.cli", "build", "--domain", "garments", "--source", f"coco:{source}",
            "--out", str(out), "--units-per-shard", "2", "--workers", "1", "--batch-size", "1", "--no-progress"]


def shard_files(files: dict[str, bytes]) -> dict[str, bytes]:
    """The shards, their sidecars and done markers, and the folder tables (index, rejected) among ``files``."""
    return {name: data for name, data in files.items() if name.endswith(SHARD_FILES)}


def folder_files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}
