"""A bad ``--out`` or ``--ray-address`` is one line before planning, and leaves nothing behind: no local folder
named after the URL (``./s3:``), no ``build_config.json`` or lock in the bucket. The CLI's ``main`` runs here with
file descriptors 1 and 2 captured (Ray's C++ client writes to them directly), against moto's S3 server (the
fixture of ``test_cluster_s3.py``); one case runs the CLI in its own process, as the user does."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from test_cluster_s3 import BUCKET, _cli, _free_port, _fs, s3  # noqa: F401  (s3: the moto server fixture)

SUPPORTED = "use a local path or s3://BUCKET/PREFIX"


def _one_line_error(done: tuple[int, str, str], *parts: str) -> None:
    status, out, err = done
    assert status == 2, done
    lines = err.splitlines()
    assert len(lines) == 1 and not out, out + err
    for part in parts:
        assert part in lines[0], lines[0]


@pytest.fixture()
def build_cli(capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """``unieditkit build ARGS`` in this process, in ``tmp_path``: (status, stdout, stderr) as a terminal shows them."""
    from unieditkit.cli import main

    monkeypatch.chdir(tmp_path)
    capfd.readouterr()

    def run(*args: str) -> tuple[int, str, str]:
        status = main(_cli(*args)[3:])
        out, err = capfd.readouterr()
        return status, out, err

    return run


@pytest.fixture()
def s3_env(s3: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(key, s3[key])
    return s3


@pytest.mark.parametrize("out, parts", [
    ("s3://", ("--out s3://: names no bucket; write s3://BUCKET or s3://BUCKET/PREFIX",)),
    ("s3:///prefix", ("names no bucket",)),
    ("gs://bucket/out", ("--out gs://bucket/out: gs:// is not supported", SUPPORTED)),
    ("gs://", ("gs:// is not supported", SUPPORTED)),
    ("hdfs://namenode:8020/out", ("hdfs:// is not supported", SUPPORTED)),
])
def test_an_unsupported_or_bucketless_out_url_is_one_line_and_creates_nothing(out: str, parts: tuple[str, ...], build_cli,
                                                                               monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for jvm in ("JAVA_HOME", "HADOOP_HOME", "CLASSPATH"):
        monkeypatch.delenv(jvm, raising=False)
    _one_line_error(build_cli("--out", out), *parts)
    assert not list(tmp_path.iterdir())  # no ./s3: or ./gs: folder


def test_an_unsupported_source_url_is_one_line(build_cli, tmp_path: Path) -> None:
    _one_line_error(build_cli("--source", "images:gs://bucket/photos/", "--out", "out"),
                    "images:gs://bucket/photos/: gs:// is not supported", SUPPORTED)
    assert not list(tmp_path.iterdir())


def test_a_missing_output_bucket_is_one_line_before_planning(s3_env: dict[str, str], build_cli, tmp_path: Path) -> None:
    before = set(_fs(s3_env).ls("", refresh=True))
    _one_line_error(build_cli("--out", "s3://no-such-bucket/out"),
                    "--out s3://no-such-bucket/out: there is no bucket 'no-such-bucket'; create it")
    assert set(_fs(s3_env).ls("", refresh=True)) == before and not list(tmp_path.iterdir())


@pytest.fixture()
def silent_listener() -> Iterator[str]:
    """A port that accepts connections and never answers, as a hung head node or another service would."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        yield f"127.0.0.1:{srv.getsockname()[1]}"


def test_a_refused_ray_address_is_one_line_and_leaves_no_build_config_in_the_bucket(s3: dict[str, str], tmp_path: Path) -> None:
    """As the user runs it: the CLI in its own process, every line it prints seen."""
    address = f"127.0.0.1:{_free_port()}"
    done = subprocess.run(_cli("--source", f"coco:s3://{BUCKET}/sample/instances.json", "--out", f"s3://{BUCKET}/refused",
                               "--ray-address", address), cwd=tmp_path, env=s3, capture_output=True, text=True, timeout=300)
    _one_line_error((done.returncode, done.stdout, done.stderr), f"--ray-address {address}: nothing accepts connections there",
                    "ray start --head")
    assert not _fs(s3).exists(f"{BUCKET}/refused") and not list(tmp_path.iterdir())


def test_a_silent_ray_address_is_one_line_and_creates_nothing(silent_listener: str, build_cli, tmp_path: Path) -> None:
    _one_line_error(build_cli("--out", "out", "--ray-address", silent_listener),
                    f"--ray-address {silent_listener}: no Ray head answers there")
    assert not list(tmp_path.iterdir())
