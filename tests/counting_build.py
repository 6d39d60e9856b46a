"""Run ``unieditkit build`` on a local Ray whose workers log every image decode and every model construction.

    python tests/counting_build.py LOG build --domain ... (the CLI's arguments)

Ray runs the stages in worker processes, where a test's monkeypatch cannot reach; Ray's own
``worker_process_setup_hook`` wraps the real functions in each worker before it runs anything. Each line of LOG
is ``PID EVENT DETAIL``: ``decode PATH`` (an image file decoded), ``build CLASS`` (a model constructed),
``instantiate STAGE`` (a stage requested by a per-unit re-run). Used by ``tests/test_image_stages.py``.
"""

from __future__ import annotations

import logging
import os
import sys

LOG_ENV = "UNIEDITKIT_TEST_COUNT_LOG"


def _count_in_worker() -> None:
    from unieditkit.pipelines.models import factory
    from unieditkit.pipelines.stages.base import Stage
    from unieditkit import media

    def note(event: str, detail: str) -> None:
        with open(os.environ[LOG_ENV], "a", encoding="utf-8") as fh:  # one short append per line: atomic
            fh.write(f"{os.getpid()} {event} {detail}\n")

    load_rgb = media.load_rgb

    def counted_load_rgb(path, *args, **kwargs):
        note("decode", os.path.basename(str(path)))
        return load_rgb(path, *args, **kwargs)

    media.load_rgb = counted_load_rgb  # load_uri looks it up in its module at each call
    # the factories, not the model classes: importing GroundingDINO takes seconds, and every worker runs this hook
    # (the stage modules bind the factories when they are first imported, which is after this hook)
    for name in ("build_detector", "build_segmenter"):
        def counted_build(*args, _build=getattr(factory, name), **kwargs):
            model = _build(*args, **kwargs)
            note("build", type(model).__name__)
            return model

        setattr(factory, name, counted_build)
    instantiate = Stage.instantiate

    def counted_instantiate(self):
        note("instantiate", self.name)
        return instantiate(self)

    Stage.instantiate = counted_instantiate


if __name__ == "__main__":
    import ray

    os.environ[LOG_ENV] = sys.argv[1]
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": _count_in_worker})
    from unieditkit.cli import main

    sys.exit(main(sys.argv[2:]))
