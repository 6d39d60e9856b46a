"""Shared fixtures: one local Ray instance, one build of the bundled sample, and one small COCO source with its
uninterrupted subprocess build (``buildproc.py``) per test session."""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from buildproc import build_cmd, generate_source

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files with the most slow tests first. Under ``--dist loadfile --no-loadscope-reorder`` a file is one unit of
    work, handed to the test processes in this order, so the long files start early and the short ones fill the
    gaps at the end; xdist's own order (most tests first) left the longest files, which hold few tests, to the end."""
    slow = Counter(item.path for item in items if item.get_closest_marker("slow"))
    first_seen = {path: i for i, path in enumerate(dict.fromkeys(item.path for item in items))}
    items.sort(key=lambda item: (-slow[item.path], first_seen[item.path]))


@pytest.fixture(scope="session")
def ray_local():
    """Ray takes seconds to start: share one local instance (2 CPUs, like the CI machine) across tests."""
    import logging

    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def built_dataset(tmp_path_factory: pytest.TempPathFactory, ray_local) -> Path:
    """The bundled sample built for garments (the README's main command), shared read-only by tests."""
    from unieditkit.pipelines.build import build
    from unieditkit.pipelines.config import BuildConfig, OutputSettings

    out = tmp_path_factory.mktemp("built") / "out"
    build(BuildConfig(domain="garments", out_dir=str(out), settings=OutputSettings(units_per_shard=8), progress=False))
    return out


@pytest.fixture(scope="session")
def coco_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The COCO annotation file of ``buildproc.generate_source``; read-only (copy it to edit an image)."""
    return generate_source(tmp_path_factory.mktemp("coco"))


@pytest.fixture(scope="session")
def coco_reference(coco_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The out folder of an uninterrupted ``buildproc.build_cmd`` run: what every killed, crashed or remote run
    of the same command must end up equal to."""
    out = tmp_path_factory.mktemp("coco-reference") / "out"
    subprocess.run(build_cmd(coco_source, out), check=True, capture_output=True, timeout=300)
    assert len(list(out.glob("*.tar"))) >= 4
    return out
