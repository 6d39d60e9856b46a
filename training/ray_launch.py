"""``unieditkit train --launcher ray``: the same training loop, one rank per Ray Train worker (``TorchTrainer``).

Ray Train starts the workers, sets the torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ...) and
the process group (gloo on CPUs, NCCL on GPUs) before ``training.train.run`` is called, so everything after that
is the torchrun code path: the same batches, losses, logs and run folder.

Checkpoints: the run folder is Ray Train's experiment folder (``storage_path`` = the parent of ``--out``,
``name`` = its base name), and every ``RUN/checkpoints/step_*.pt`` the loop writes is registered with Ray Train
(``ray.train.report`` with ``CheckpointUploadMode.NO_UPLOAD``: the files are already in storage, nothing is
copied). The registered checkpoint is the ``RUN/checkpoints`` folder, whose ``latest`` names the newest file.
When Ray restarts a failed worker group (``--max-failures``), ``ray.train.get_checkpoint()`` returns it and the
restarted workers continue from ``latest``, exactly as ``--resume latest`` does.
"""

from __future__ import annotations

import pathlib
from typing import Any

from training.config import Config
from unieditkit.errors import UserError

CHECKPOINT_MANAGER_SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's list of the run's checkpoints


def _worker(config: dict[str, Any]) -> None:
    """One rank, inside a Ray Train worker."""
    import ray.train
    from ray.train import Checkpoint, CheckpointUploadMode

    from training.config import load_config
    from training.train import run

    cfg = load_config(None, config["config"])
    cfg.backbone_defaults = tuple(config["backbone_defaults"])  # every key is set in the dict: say which were filled
    resume = config["resume"]
    if resume is None and ray.train.get_checkpoint() is not None:
        resume = "latest"  # Ray restarted the worker group after a failure: continue, never start again

    def report(step: int, folder: pathlib.Path) -> None:
        """Collective, like ``ray.train.report``: every worker calls it at every checkpoint."""
        mine = Checkpoint.from_directory(str(folder)) if ray.train.get_context().get_world_rank() == 0 else None
        ray.train.report({"step": step}, checkpoint=mine, checkpoint_upload_mode=CheckpointUploadMode.NO_UPLOAD)

    run(cfg, resume, overwrite=config["overwrite"] and resume is None,
        allow_world_size_change=config["allow_world_size_change"], on_checkpoint=report)


def launch(cfg: Config, resume: str | None, *, overwrite: bool, allow_world_size_change: bool,
           num_workers: int, gpus_per_worker: float, address: str | None, max_failures: int = 0) -> None:
    """Run ``num_workers`` ranks on the Ray cluster at ``address`` (None: this machine's Ray, started if needed).

    The workers get the resolved config itself, not its file name: a file the driver reads may not exist on a
    worker node."""
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    run_dir = pathlib.Path(cfg.train.run_dir).resolve()
    config = cfg.to_dict()
    config["train"]["run_dir"] = str(run_dir)
    if overwrite and resume is None:  # Ray Train would hand the workers the replaced run's checkpoint
        (run_dir / CHECKPOINT_MANAGER_SNAPSHOT).unlink(missing_ok=True)
    if not ray.is_initialized():
        ray.init(address=address)
    resources = {"CPU": 1, **({"GPU": gpus_per_worker} if gpus_per_worker else {})}
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"config": config, "backbone_defaults": list(cfg.backbone_defaults), "resume": resume,
                           "overwrite": overwrite, "allow_world_size_change": allow_world_size_change},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=gpus_per_worker > 0,
                                     resources_per_worker=resources),
        run_config=RunConfig(name=run_dir.name, storage_path=str(run_dir.parent),
                             failure_config=FailureConfig(max_failures=max_failures)),
    )
    try:
        trainer.fit()
    except Exception as err:  # noqa: BLE001 - a worker's UserError comes back wrapped; show it as one line
        mistake = _user_error(err)
        if mistake is None:
            raise
        raise mistake from None


def _user_error(err: BaseException) -> UserError | None:
    """A worker's ``UserError`` inside Ray Train's ``WorkerGroupError`` (its ``worker_failures`` holds each failed
    rank's own exception): a mistake to report in one line, not a crash."""
    for failure in getattr(err, "worker_failures", {}).values():
        if isinstance(failure, UserError):
            return failure
    return None
