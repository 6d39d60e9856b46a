"""Object storage and a real two-node Ray cluster: a build from and to ``s3://`` on an S3-compatible server on
127.0.0.1 (moto's server mode) equals a local build byte for byte, survives SIGKILL of its driver and the loss of
its second node, and is read back by ``datasets``. Every process started here is stopped by its own id, even
when a test fails.

The cluster is started as the README's multi-node recipe says, from a clean environment: no Ray setting this
pytest process holds (a session fixture's ``ray.init()`` sets ``RAY_AUTH_MODE=token`` in it) reaches the nodes or
the driver, and each node has a HOME of its own, so ``~/.ray`` starts empty as on a fresh machine."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq
import pytest

from buildproc import build_cmd, folder_files, shard_files
from unieditkit.faults import kill_at

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "pipelines" / "sample_data"
BUCKET = "unieditkit-test"
#: what Ray reads from the environment to choose a cluster and its token: never inherited from this process
RAY_SETTINGS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without Ray's settings, plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if k not in RAY_SETTINGS}, **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {seconds} s")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group we started (start_new_session), then SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    """A moto S3 server on 127.0.0.1 with the bundled sample uploaded; yields the environment that points at it."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    env = clean_env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="testing",
                    AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                    PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    try:
        def up() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        _wait(up, 60, "moto server")
        import boto3

        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)
        fs = _fs(env)
        fs.put(str(SAMPLE) + "/", f"{BUCKET}/sample/", recursive=True)
        yield env
    finally:
        _stop(proc)


def _fs(env: dict[str, str]):
    import s3fs

    return s3fs.S3FileSystem(key=env["AWS_ACCESS_KEY_ID"], secret=env["AWS_SECRET_ACCESS_KEY"],
                             client_kwargs={"endpoint_url": env["AWS_ENDPOINT_URL"], "region_name": "us-east-1"})


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "unieditkit.cli", "build", "--domain", "garments", "--no-progress", *args]


def _remote_files(env: dict[str, str], prefix: str) -> dict[str, bytes]:
    fs = _fs(env)
    return {p.rsplit("/", 1)[-1]: fs.cat_file(p) for p in fs.ls(f"{BUCKET}/{prefix}", refresh=True)}


def _mentioning(text: str) -> list[int]:
    """Processes whose command line contains ``text`` (a zombie's is empty)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (Ray's workers run in process groups of their own, under the raylet)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo.extend(children.get(found[-1], []))
    return found


class Cluster:
    """A head node and a second node on this machine, one CPU each, each with its own temp dir and HOME, both with
    the S3 environment, started as the README's recipe says: the head makes the cluster's token
    (``ray get-auth-token --generate``) and starts with ``RAY_AUTH_MODE=token``; the second node gets the token as
    ``RAY_AUTH_TOKEN``. ``driver_env`` is the head's shell, where the recipe runs ``unieditkit build``.

    Each node's Ray processes carry ``UNIEDITKIT_HOLD_AT=tar-written:RELEASE`` with a release file of
    its own (workers inherit the environment of ``ray start``; the driver's does not reach them). While the files
    exist that costs nothing; ``hold_writers()`` removes them, so each node's shard writer stops after uploading
    its tar, until ``release_writers()``.
    """

    def __init__(self, env: dict[str, str]) -> None:
        self.temp = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # Ray's socket paths must stay short
        homes = {name: self.temp / f"home-{name}" for name in ("head", "second")}
        for home in homes.values():
            home.mkdir()
        self.ray = str(Path(sys.executable).parent / "ray")
        self.driver_env = {**env, "HOME": str(homes["head"]), "RAY_AUTH_MODE": "token"}
        token = subprocess.run([self.ray, "get-auth-token", "--generate"], env=self.driver_env, capture_output=True,
                               text=True, timeout=120, check=True).stdout.strip()
        self.node_env = {"head": self.driver_env,
                         "second": {**env, "HOME": str(homes["second"]), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}}
        self.releases = {"head": self.temp / "release-head", "second": self.temp / "release-second"}
        self.release_writers()
        self.address = f"127.0.0.1:{_free_port()}"
        self.head: subprocess.Popen | None = None
        self.second: subprocess.Popen | None = None
        self.second_dir = self.temp
        self.starts = 0

    def start(self) -> None:
        self.head = self._start("--head", "--port", self.address.rsplit(":", 1)[1], "--include-dashboard=false", "--temp-dir", str(self.temp / "head"),
                                env={**self.node_env["head"], "UNIEDITKIT_HOLD_AT": f"tar-written:{self.releases['head']}"})
        _wait(lambda: self.nodes_alive() == 1, 120, "Ray head node")
        self.two_nodes()

    def _start(self, *args: str, env: dict[str, str]) -> subprocess.Popen:
        return subprocess.Popen([self.ray, "start", *args, "--num-cpus", "1", "--block", "--disable-usage-stats"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def nodes_alive(self) -> int:
        probe = [sys.executable, "-c", f"import ray; ray.init(address={self.address!r}, logging_level='ERROR'); "
                 "print(sum(n['Alive'] for n in ray.nodes()))"]
        done = subprocess.run(probe, env=self.driver_env, capture_output=True, text=True, timeout=60)
        return int(done.stdout.split()[-1]) if done.returncode == 0 and done.stdout.split() else -1

    def two_nodes(self) -> str:
        """The cluster's address, with a second node (started again if a test has killed it)."""
        if self.second is None or self.second.poll() is not None:
            if self.second is not None:  # a killed node counts as alive until Ray notices; do not count it twice
                _wait(lambda: self.nodes_alive() == 1, 120, "Ray to notice the lost node")
            self.starts += 1
            self.second_dir = self.temp / f"node{self.starts + 1}"
            self.second = self._start("--address", self.address, "--temp-dir", str(self.second_dir),
                                      env={**self.node_env["second"], "UNIEDITKIT_HOLD_AT": f"tar-written:{self.releases['second']}"})
            _wait(lambda: self.nodes_alive() == 2, 120, "second Ray node")
        return self.address

    def hold_writers(self) -> Path:
        """Arm both nodes' holds; returns the file the second node's writer creates when it is held. It gets there:
        while the head's writer is held, the head has no CPU left and the rest of the build runs on the second node."""
        for release in self.releases.values():
            release.unlink(missing_ok=True)
            Path(f"{release}.reached").unlink(missing_ok=True)
        return Path(f"{self.releases['second']}.reached")

    def release_writers(self) -> None:
        for release in self.releases.values():
            release.touch()

    def kill_second_node(self) -> int:
        """SIGKILL every Ray process of the second node at once, as a lost machine would end them; how many there were."""
        assert self.second is not None
        pids = _kill_tree(self.second)
        _wait(lambda: not _mentioning(str(self.second_dir)), 30, "the end of the second node's processes")
        return len(pids)

    def stop(self) -> None:
        """Both nodes at once, as ``kill_second_node``: a head node asked to stop (SIGTERM) takes 20 s after a build."""
        for proc in (self.second, self.head):
            if proc is not None and proc.poll() is None:
                _kill_tree(proc)


def _kill_tree(proc: subprocess.Popen) -> list[int]:
    pids = _descendants(proc.pid)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    return pids


@pytest.fixture(scope="module")
def cluster(s3: dict[str, str]) -> Iterator[Cluster]:
    nodes = Cluster(s3)
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()


@pytest.mark.slow
def test_two_node_build_from_and_to_s3_equals_a_local_build(s3: dict[str, str], cluster: Cluster, built_dataset: Path, tmp_path: Path) -> None:
    done = subprocess.run(_cli("--source", f"coco:s3://{BUCKET}/sample/instances.json", "--out", f"s3://{BUCKET}/cluster",
                               "--units-per-shard", "8", "--ray-address", cluster.two_nodes()),
                          env=cluster.driver_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "object storage has no build lock" in done.stdout
    remote = _remote_files(s3, "cluster")
    local = folder_files(built_dataset)
    assert shard_files(remote) and shard_files(remote) == shard_files(local)
    for name in ("index.parquet", "rejected.parquet"):
        assert remote[name] == local[name], name

    def card_header(card: bytes) -> bytes:  # configs, features, splits and the shard fingerprint
        return card.split(b"\n---\n", 1)[0]

    assert card_header(remote["README.md"]) == card_header(local["README.md"])  # the body names the local sample
    assert not any(n.endswith(".tmp") for n in remote)

    rerun = subprocess.run(_cli("--source", f"coco:s3://{BUCKET}/sample/instances.json", "--out", f"s3://{BUCKET}/cluster",
                                "--units-per-shard", "8", "--ray-address", cluster.two_nodes()),
                           env=cluster.driver_env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0 and "0 samples written in 0 shards" in rerun.stdout, rerun.stdout + rerun.stderr[-2000:]
    assert _remote_files(s3, "cluster") == remote


@pytest.mark.slow
def test_a_driver_without_the_clusters_token_is_one_line_and_writes_nothing(s3: dict[str, str], cluster: Cluster, tmp_path: Path) -> None:
    """A shell without the recipe's token settings: a fresh HOME and no RAY_AUTH_MODE."""
    done = subprocess.run(_cli("--out", f"s3://{BUCKET}/no-token", "--ray-address", cluster.two_nodes()),
                          env={**s3, "HOME": str(tmp_path)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and not done.stdout and done.stderr.count("\n") == 1, done.stdout + done.stderr[-3000:]
    assert "the cluster requires token authentication" in done.stderr and "RAY_AUTH_MODE=token" in done.stderr, done.stderr
    assert not _fs(s3).exists(f"{BUCKET}/no-token")


@pytest.mark.slow
def test_losing_the_second_node_mid_build_finishes_on_the_head_and_equals_an_uninterrupted_build(
    s3: dict[str, str], cluster: Cluster, built_dataset: Path, tmp_path: Path
) -> None:
    address = cluster.two_nodes()
    reached = cluster.hold_writers()
    proc = subprocess.Popen(_cli("--source", f"coco:s3://{BUCKET}/sample/instances.json", "--out", f"s3://{BUCKET}/lost-node",
                                 "--units-per-shard", "8", "--ray-address", address),
                            env=cluster.driver_env, stdout=subprocess.DEVNULL, stderr=(tmp_path / "stderr").open("w"), start_new_session=True)
    try:
        _wait(lambda: reached.exists() or proc.poll() is not None, 400, "a shard writer on the second node")
        assert reached.exists(), f"the build ended before the second node wrote a shard: {(tmp_path / 'stderr').read_text()[-2000:]}"
        assert cluster.kill_second_node() >= 3  # ray start, the raylet and at least the held worker
        cluster.release_writers()
        proc.wait(timeout=600)
    finally:
        cluster.release_writers()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, (tmp_path / "stderr").read_text()[-3000:]
    remote = _remote_files(s3, "lost-node")
    local = folder_files(built_dataset)
    assert shard_files(remote) and shard_files(remote) == shard_files(local)
    for name in ("index.parquet", "rejected.parquet"):
        assert remote[name] == local[name], name


@pytest.mark.slow
def test_sigkill_of_the_driver_on_s3_then_rerun_equals_an_uninterrupted_build(s3: dict[str, str], coco_source: Path, coco_reference: Path,
                                                                              tmp_path: Path) -> None:
    expected = shard_files(folder_files(coco_reference))
    markers = sum(n.endswith("_stats.json") for n in expected)
    out = f"s3://{BUCKET}/killed"
    killed = subprocess.run(build_cmd(coco_source, out), env={**s3, **kill_at("marker-written:2", tmp_path / "kill-counts")},
                            capture_output=True, timeout=600, start_new_session=True)
    assert killed.returncode == -9, f"the build was not killed (exit {killed.returncode}): {killed.stderr[-2000:]!r}"
    partial = _remote_files(s3, "killed")
    done = [n[: -len("_stats.json")] for n in partial if n.endswith("_stats.json")]
    assert 2 <= len(done) < markers, f"kill landed outside the build ({len(done)} of {markers} shards done)"
    for name in done:  # a marked shard is complete, byte for byte
        assert partial[f"{name}.tar"] == expected[f"{name}.tar"]

    subprocess.run(build_cmd(coco_source, out), env=s3, check=True, capture_output=True, timeout=600)
    assert shard_files(_remote_files(s3, "killed")) == expected


@pytest.mark.slow
def test_load_dataset_reads_the_s3_build_with_storage_options(s3: dict[str, str], built_dataset: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    done = subprocess.run(_cli("--source", f"coco:s3://{BUCKET}/sample/instances.json", "--out", f"s3://{BUCKET}/hf", "--units-per-shard", "8"),
                          env=s3, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    import datasets.config
    from datasets import load_dataset

    from unieditkit.format import hf_features

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)  # offline mode refuses every remote URL, s3 too
    storage_options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": s3["AWS_ENDPOINT_URL"], "region_name": "us-east-1"}}
    ds = load_dataset("webdataset", data_files={"train": f"s3://{BUCKET}/hf/garments-train-*.tar"}, split="train",
                      features=hf_features(), storage_options=storage_options, cache_dir=str(tmp_path / "cache"))
    train = {r["key"] for r in pq.read_table(built_dataset / "index.parquet").to_pylist() if r["split"] == "train"}
    assert set(ds["__key__"]) == train
    row = ds[0]
    assert row["mask_fine.png"].mode == "L" and row["json"]["domain"] == "garments"
