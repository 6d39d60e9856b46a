"""Starting Ray for a build, or joining the cluster ``--ray-address`` names: one place for the settings every
build step that runs on Ray shares (planning's marker checks, probing videos, the stage chain)."""

from __future__ import annotations

import logging
from typing import Any

from unieditkit.faults import share_with_workers
from unieditkit.raycluster import package_for_workers

from .config import BuildConfig


def start_ray(config: BuildConfig) -> None:
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.max_errored_blocks = -1
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    if ray.is_initialized():
        return
    share_with_workers()
    # One OpenCV thread per worker, as Ray gives each task one OMP thread per CPU: OpenCV's own pool would
    # otherwise start a thread per core in every worker, and N workers on N cores contend for them.
    runtime_env: dict[str, Any] = {"env_vars": {"OPENCV_FOR_THREADS_NUM": "1"}}
    kwargs: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
                                  runtime_env=runtime_env)
    if config.ray_address:
        runtime_env["py_modules"] = [package_for_workers()]
        kwargs["address"] = config.ray_address
    elif config.num_workers:
        kwargs["num_cpus"] = config.num_workers
    ray.init(**kwargs)
