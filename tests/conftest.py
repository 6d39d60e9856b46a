"""Shared fixtures: one local Ray instance and one build of the bundled sample per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


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
    from pipelines.build import build
    from pipelines.config import BuildConfig, OutputSettings

    out = tmp_path_factory.mktemp("built") / "out"
    build(BuildConfig(domain="garments", out_dir=str(out), settings=OutputSettings(units_per_shard=8), progress=False))
    return out
