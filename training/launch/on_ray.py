"""``unieditkit train --launcher ray``: the same training loop, one rank per Ray Train worker (``TorchTrainer``).

Ray Train starts the workers, sets the torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ...) and
the process group (gloo on CPUs, NCCL on GPUs) before ``unieditkit.training.train.run`` is called, so everything after that
is the torchrun code path: the same batches, losses, logs and run folder.

Checkpoints: the run folder is Ray Train's experiment folder (``storage_path`` = the parent of ``--out``,
``name`` = its base name), and every ``RUN/checkpoints/step_*.pt`` the loop writes is registered with Ray Train
(``ray.train.report`` with ``CheckpointUploadMode.NO_UPLOAD``: the files are already in storage, nothing is
copied). The registered checkpoint is the ``RUN/checkpoints`` folder, whose ``latest`` names the newest file.
When Ray restarts a failed worker group (``--max-failures``), ``ray.train.get_checkpoint()`` returns it and the
restarted workers continue from ``latest``, exactly as ``--resume latest`` does.

Paths: a worker runs in a folder of Ray's, so every path the config holds (``--data``, ``--out``, ``--pretrained``,
``--cache`` …) is made absolute against the driver's working folder before the config is sent.

The terminal shows what torchrun would show, once: rank 0's own output (notes, progress bar, closing lines) goes
to ``RUN/rank0-stdout.log`` and ``RUN/rank0-stderr.log``, which the driver follows onto its stdout and stderr.
Ray's own lines (token-auth warnings, ``core_worker`` errors, the other ranks' output that Ray forwards to the
driver, with its ANSI-coloured prefixes) go to ``RUN/ray.log``, or to the terminal with ``--verbose``. Printing
rank 0 through Ray's forwarding instead would show each line twice (Ray Train sends every print to its logger
too) under Ray's prefix.
"""

from __future__ import annotations

import logging
import os
import pathlib
import sys
import threading
from contextlib import ExitStack, contextmanager, nullcontext, redirect_stderr, redirect_stdout
from typing import IO, Any, Iterator

from unieditkit.training.config import Config
from unieditkit.errors import UserError
from unieditkit.raycluster import check_head, joining, output_to
from unieditkit.uri import is_url

CHECKPOINT_MANAGER_SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's list of the run's checkpoints
RAY_LOG = "ray.log"  # the driver's terminal while Ray runs, unless --verbose
RANK0_OUTPUT = {"stdout": "rank0-stdout.log", "stderr": "rank0-stderr.log"}  # followed onto the driver's terminal
#: config fields that hold a local path, as (section, key)
PATH_FIELDS = (("data", "root"), ("data", "cache"), ("model", "pretrained"), ("model", "taxonomy"),
               ("model", "init_checkpoint"), ("train", "run_dir"))


def _worker(config: dict[str, Any]) -> None:
    """One rank, inside a Ray Train worker."""
    import ray.train
    from ray.train import Checkpoint, CheckpointUploadMode

    from unieditkit.training.config import load_config
    from unieditkit.training.train import run

    cfg = load_config(None, config["config"])
    cfg.backbone_defaults = tuple(config["backbone_defaults"])  # every key is set in the dict: say which were filled
    resume = config["resume"]
    if resume is None and ray.train.get_checkpoint() is not None:
        resume = "latest"  # Ray restarted the worker group after a failure: continue, never start again

    main = ray.train.get_context().get_world_rank() == 0

    def report(step: int, folder: pathlib.Path) -> None:
        """Collective, like ``ray.train.report``: every worker calls it at every checkpoint."""
        mine = Checkpoint.from_directory(str(folder)) if main else None
        ray.train.report({"step": step}, checkpoint=mine, checkpoint_upload_mode=CheckpointUploadMode.NO_UPLOAD)

    with _rank0_output(pathlib.Path(cfg.train.run_dir)) if main else nullcontext():
        run(cfg, resume, overwrite=config["overwrite"] and resume is None,
            allow_world_size_change=config["allow_world_size_change"], on_checkpoint=report)


@contextmanager
def _rank0_output(run_dir: pathlib.Path) -> Iterator[None]:
    """Rank 0's prints and progress bar into ``RANK0_OUTPUT``, and nothing of Ray's: in a Ray Train worker (Ray
    2.60) every ``print`` is also sent to the root logger (``patch_print.py``), and Ray's console log handlers
    write to whatever ``sys.stderr`` is when a record comes, so both are set aside while the files stand in for
    stdout and stderr. Ray's records still reach its own log files."""
    from ray._private.log import PlainRayHandler
    from ray.train.v2._internal.logging.patch_print import _original_print, print_context_manager

    run_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        streams = {name: stack.enter_context(open(run_dir / file, "a", buffering=1, encoding="utf-8"))
                   for name, file in RANK0_OUTPUT.items()}
        for logger in (logging.getLogger(), logging.getLogger("ray.train")):
            for handler in [h for h in logger.handlers if isinstance(h, PlainRayHandler)]:
                logger.removeHandler(handler)
                stack.callback(logger.addHandler, handler)
        stack.enter_context(print_context_manager(_original_print))
        stack.enter_context(redirect_stdout(streams["stdout"]))
        stack.enter_context(redirect_stderr(streams["stderr"]))
        yield


def absolute_paths(config: dict[str, Any], cwd: pathlib.Path) -> dict[str, Any]:
    """The config with every relative local path in ``PATH_FIELDS`` made absolute against ``cwd``."""
    for section, key in PATH_FIELDS:
        value = config[section][key]
        if value and not is_url(value) and not os.path.isabs(value):
            config[section][key] = str((cwd / value).resolve())
    return config


class _Follow(threading.Thread):
    """Copies what is appended to ``path`` onto ``sink`` until stopped (then the rest)."""

    def __init__(self, path: pathlib.Path, sink: IO[str]) -> None:
        super().__init__(daemon=True)
        self.path, self.sink, self.offset = path, sink, path.stat().st_size
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            self.copy()
        self.copy()

    def copy(self) -> None:
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        if data:
            self.offset += len(data)
            self.sink.write(data.decode("utf-8", "replace"))
            self.sink.flush()


@contextmanager
def _showing_rank0(run_dir: pathlib.Path, fresh: bool, stdout: IO[str], stderr: IO[str]) -> Iterator[None]:
    """Rank 0's output files followed onto the terminal from where they end now (a resumed run's earlier output
    stays in the files, unshown); ``fresh`` (--overwrite) empties them first."""
    followers = []
    for name, sink in (("stdout", stdout), ("stderr", stderr)):
        path = run_dir / RANK0_OUTPUT[name]
        if fresh or not path.exists():
            path.write_bytes(b"")
        followers.append(_Follow(path, sink))
    for f in followers:
        f.start()
    try:
        yield
    finally:
        for f in followers:
            f.done.set()
            f.join()


def launch(cfg: Config, resume: str | None, *, overwrite: bool, allow_world_size_change: bool,
           num_workers: int, gpus_per_worker: float, address: str | None, max_failures: int = 0,
           verbose: bool = False) -> None:
    """Run ``num_workers`` ranks on the Ray cluster at ``address`` (None: this machine's Ray, started if needed).

    The workers get the resolved config itself, not its file name: a file the driver reads may not exist on a
    worker node. ``verbose`` leaves Ray's own lines on the terminal instead of ``RUN/ray.log``."""
    if address:
        check_head(address)  # before the run folder is made: a wrong address leaves nothing behind
    config = absolute_paths(cfg.to_dict(), pathlib.Path.cwd())
    run_dir = pathlib.Path(config["train"]["run_dir"])
    if resume not in (None, "latest") and not os.path.isabs(resume):
        resume = str(pathlib.Path(resume).resolve())
    fresh = overwrite and resume is None
    run_dir.mkdir(parents=True, exist_ok=True)
    if fresh:  # Ray Train would hand the workers the replaced run's checkpoint
        (run_dir / CHECKPOINT_MANAGER_SNAPSHOT).unlink(missing_ok=True)
        (run_dir / RAY_LOG).unlink(missing_ok=True)
    log = None if verbose else run_dir / RAY_LOG
    terminal_out = os.fdopen(os.dup(1), "w", buffering=1)  # output_to moves fd 1 to the log
    try:
        with output_to(log) as terminal_err, _showing_rank0(run_dir, fresh, terminal_out, terminal_err):
            _fit(config, cfg, resume, overwrite, allow_world_size_change, num_workers, gpus_per_worker, address,
                 max_failures)
    except UserError:
        raise
    except BaseException:
        if log is not None:
            print(f"unieditkit train: Ray's own log of this launch: {log}", file=sys.stderr)
        raise
    finally:
        terminal_out.close()


def _fit(config: dict[str, Any], cfg: Config, resume: str | None, overwrite: bool, allow_world_size_change: bool,
         num_workers: int, gpus_per_worker: float, address: str | None, max_failures: int) -> None:
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    run_dir = pathlib.Path(config["train"]["run_dir"])
    started = not ray.is_initialized()
    if started:
        with joining(address, quiet=False) if address else nullcontext():
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
    finally:
        if started:
            ray.shutdown()


def _user_error(err: BaseException) -> UserError | None:
    """A worker's ``UserError`` inside Ray Train's ``WorkerGroupError`` (its ``worker_failures`` holds each failed
    rank's own exception): a mistake to report in one line, not a crash."""
    for failure in getattr(err, "worker_failures", {}).values():
        if isinstance(failure, UserError):
            return failure
    return None
