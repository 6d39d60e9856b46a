"""Object storage and a real two-node Ray cluster: a build from and to ``s3://`` on an S3-compatible server on
127.0.0.1 (moto's server mode) equals a local build byte for byte, survives SIGKILL of its driver, and is read
back by ``datasets``. Every process started here is stopped by its own id, even when a test fails."""

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

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "pipelines" / "sample_data"
SHARD_FILES = (".tar", ".parquet", "_stats.json")
BUCKET = "unieditkit-test"


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


def _stop(proc: subprocess.Popen, grace: float = 20) -> None:
    """SIGTERM the process group we started (start_new_session), then SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
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
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
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
        _stop(proc, grace=5)


def _fs(env: dict[str, str]):
    import s3fs

    return s3fs.S3FileSystem(key=env["AWS_ACCESS_KEY_ID"], secret=env["AWS_SECRET_ACCESS_KEY"],
                             client_kwargs={"endpoint_url": env["AWS_ENDPOINT_URL"], "region_name": "us-east-1"})


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "unieditkit.cli", "build", "--domain", "garments", "--no-progress", *args]


def _remote_files(env: dict[str, str], prefix: str) -> dict[str, bytes]:
    fs = _fs(env)
    return {p.rsplit("/", 1)[-1]: fs.cat_file(p) for p in fs.ls(f"{BUCKET}/{prefix}", refresh=True)}


def _shard_files(files: dict[str, bytes]) -> dict[str, bytes]:
    return {n: b for n, b in files.items() if n.endswith(SHARD_FILES)}


@pytest.fixture(scope="module")
def cluster(s3: dict[str, str]) -> Iterator[str]:
    """A head node and a second node (its own temp dir), one CPU each, both with the S3 environment."""
    port = _free_port()
    temp = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # Ray's socket paths must stay short
    common = ["--num-cpus", "1", "--block", "--disable-usage-stats"]
    ray = str(Path(sys.executable).parent / "ray")
    nodes = [subprocess.Popen([ray, "start", "--head", "--port", str(port), "--include-dashboard=false", "--temp-dir", str(temp / "head"), *common],
                              env=s3, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    address = f"127.0.0.1:{port}"
    try:
        alive = [sys.executable, "-c", f"import ray; ray.init(address={address!r}, logging_level='ERROR'); "
                 "print(sum(n['Alive'] for n in ray.nodes()))"]

        def nodes_alive(n: int) -> bool:
            done = subprocess.run(alive, env=s3, capture_output=True, text=True, timeout=60)
            return done.returncode == 0 and done.stdout.strip().endswith(str(n))

        _wait(lambda: nodes_alive(1), 120, "Ray head node")
        nodes.append(subprocess.Popen([ray, "start", "--address", address, "--temp-dir", str(temp / "node2"), *common],
                                      env=s3, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        _wait(lambda: nodes_alive(2), 120, "second Ray node")
        yield address
    finally:
        for proc in reversed(nodes):
            _stop(proc)


@pytest.mark.slow
def test_two_node_build_from_and_to_s3_equals_a_local_build(s3: dict[str, str], cluster: str, built_dataset: Path, tmp_path: Path) -> None:
    done = subprocess.run(_cli("--source", f"coco:s3://{BUCKET}/sample/instances.json", "--out", f"s3://{BUCKET}/cluster",
                               "--units-per-shard", "8", "--ray-address", cluster),
                          env=s3, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "object storage has no build lock" in done.stdout
    remote = _remote_files(s3, "cluster")
    local = {p.name: p.read_bytes() for p in built_dataset.iterdir() if p.is_file()}
    assert _shard_files(remote) and _shard_files(remote) == _shard_files(local)
    for name in ("index.parquet", "rejected.parquet"):
        assert remote[name] == local[name], name

    def card_header(card: bytes) -> bytes:  # configs, features, splits and the shard fingerprint
        return card.split(b"\n---\n", 1)[0]

    assert card_header(remote["README.md"]) == card_header(local["README.md"])  # the body names the local sample
    assert not any(n.endswith(".tmp") for n in remote)

    rerun = subprocess.run(_cli("--source", f"coco:s3://{BUCKET}/sample/instances.json", "--out", f"s3://{BUCKET}/cluster",
                                "--units-per-shard", "8", "--ray-address", cluster),
                           env=s3, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0 and "0 samples written in 0 shards" in rerun.stdout, rerun.stdout + rerun.stderr[-2000:]
    assert _remote_files(s3, "cluster") == remote


def _generate_source(root: Path, per_domain: int) -> Path:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_sample_data", ROOT / "scripts" / "make_sample_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate(root, per_domain, (480, 360))


@pytest.mark.slow
def test_sigkill_of_the_driver_on_s3_then_rerun_equals_an_uninterrupted_build(s3: dict[str, str], tmp_path: Path) -> None:
    source = _generate_source(tmp_path / "src", 20)
    args = ("--source", f"coco:{source}", "--units-per-shard", "3", "--workers", "1", "--batch-size", "1")
    reference = tmp_path / "reference"
    subprocess.run(_cli(*args, "--out", str(reference)), env=s3, check=True, capture_output=True, timeout=600)
    expected = {p.name: p.read_bytes() for p in reference.iterdir() if p.name.endswith(SHARD_FILES)}
    markers = sum(n.endswith("_stats.json") for n in expected)
    assert markers >= 6

    fs = _fs(s3)
    proc = subprocess.Popen(_cli(*args, "--out", f"s3://{BUCKET}/killed"), env=s3, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)

    def done_markers() -> int:
        try:
            return sum(p.endswith("_stats.json") for p in fs.ls(f"{BUCKET}/killed", refresh=True))
        except FileNotFoundError:
            return 0

    try:
        _wait(lambda: done_markers() >= 2, 400, "two done shards")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
        proc.wait()
    partial = _remote_files(s3, "killed")
    done = [n[: -len("_stats.json")] for n in partial if n.endswith("_stats.json")]
    assert 2 <= len(done) < markers, f"kill landed outside the build ({len(done)} of {markers} shards done)"
    for name in done:  # a marked shard is complete, byte for byte
        assert partial[f"{name}.tar"] == expected[f"{name}.tar"]

    subprocess.run(_cli(*args, "--out", f"s3://{BUCKET}/killed"), env=s3, check=True, capture_output=True, timeout=600)
    assert _shard_files(_remote_files(s3, "killed")) == expected


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
