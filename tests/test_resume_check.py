"""Resuming checks done shards by what the store knows, not by reading them (``unieditkit.integrity``); ``validate``
still reads every byte; ``build --dry-run`` plans and writes nothing.

The object-storage test serves S3 from moto inside this process, behind a WSGI layer that counts the bytes of
every GET response by object: what the build processes read from the store, measured where it leaves the server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import cv2
import numpy as np
import pytest

from unieditkit.cli import main
from unieditkit.format import SIDECAR_SUFFIX, TAR_SUFFIX, marker_name

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "resume"
MB = 1 << 20


class CountingApp:
    """WSGI middleware: bytes sent in answer to GET requests, by request path (``/bucket/key``)."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.sent: Counter = Counter()
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        body = self.app(environ, start_response)
        path = environ.get("PATH_INFO", "")
        try:
            for chunk in body:
                if environ["REQUEST_METHOD"] == "GET":
                    with self.lock:
                        self.sent[path] += len(chunk)
                yield chunk
        finally:
            if hasattr(body, "close"):
                body.close()

    def shard_bytes(self) -> int:
        with self.lock:
            return sum(n for path, n in self.sent.items() if path.endswith((TAR_SUFFIX, SIDECAR_SUFFIX)))


@pytest.fixture(scope="module")
def counted_s3() -> Iterator[tuple[dict[str, str], CountingApp]]:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    app = CountingApp(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{server.server_address[1]}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    try:
        import boto3

        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)
        yield env, app
    finally:
        server.shutdown()
        thread.join()


def _fs(env: dict[str, str]) -> Any:
    import s3fs

    return s3fs.S3FileSystem(key=env["AWS_ACCESS_KEY_ID"], secret=env["AWS_SECRET_ACCESS_KEY"], skip_instance_cache=True,
                             client_kwargs={"endpoint_url": env["AWS_ENDPOINT_URL"], "region_name": "us-east-1"})


def noise_manifest(root: Path, n: int, size: tuple[int, int] = (1024, 768)) -> Path:
    """``n`` photos of noise (JPEG cannot compress it: half a megabyte a sample) with a mask each."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    w, h = size
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 255
    cv2.imwrite(str(root / "mask.png"), mask)
    lines = []
    for i in range(n):
        cv2.imwrite(str(root / f"n{i}.jpg"), rng.integers(0, 256, (h, w, 3), np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])
        lines.append(json.dumps({"image": f"n{i}.jpg", "objects": [{"category": "dress", "mask": "mask.png"}]}))
    (root / "m.jsonl").write_text("\n".join(lines) + "\n")
    return root / "m.jsonl"


def _build(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "unieditkit.cli", "build", "--domain", "garments", "--no-progress", *args],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_a_noop_rerun_on_s3_reads_no_shard_and_a_replaced_object_is_still_rebuilt(
    counted_s3: tuple[dict[str, str], CountingApp], tmp_path: Path
) -> None:
    env, server = counted_s3
    out = f"s3://{BUCKET}/out"
    args = ("--source", f"manifest:{noise_manifest(tmp_path / 'in', 4)}", "--units-per-shard", "2", "--out", out)
    _build(env, *args)
    fs = _fs(env)
    listing = {e["name"].rsplit("/", 1)[-1]: e for e in fs.ls(f"{BUCKET}/out", detail=True, refresh=True)}
    shards = sorted(n[: -len(TAR_SUFFIX)] for n in listing if n.endswith(TAR_SUFFIX))
    on_store = sum(e["size"] for n, e in listing.items() if n.endswith((TAR_SUFFIX, SIDECAR_SUFFIX)))
    assert len(shards) >= 2 and on_store > 2 * MB, (shards, on_store)  # reading them all would fail the bound below
    marker = json.loads(fs.cat_file(f"{BUCKET}/out/{marker_name(shards[0])}"))
    assert listing[f"{shards[0]}{TAR_SUFFIX}"]["ETag"].strip('"') == marker["files"]["tar"]["md5"]  # the store's own check

    server.sent.clear()
    again = _build(env, *args)
    assert f"0 samples written in 0 shards ({len(shards)} of {len(shards)} shards already done)" in again.stdout
    assert server.shard_bytes() <= MB, dict(server.sent)

    victim = f"{BUCKET}/out/{shards[0]}{TAR_SUFFIX}"
    original = fs.cat_file(victim)
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF  # same size: only the content can tell
    fs.pipe_file(victim, bytes(damaged))
    repaired = _build(env, *args)
    assert f"rebuilt {shards[0]}: " in repaired.stdout and "1 shards" in repaired.stdout, repaired.stdout
    assert fs.cat_file(victim) == original


def test_validate_finds_a_same_size_change_that_a_resume_trusts(built_dataset: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str], ray_local) -> None:
    """The promise of ``unieditkit.integrity``: a resume believes the store's size and times, ``validate`` reads."""
    out = tmp_path / "copy"
    shutil.copytree(built_dataset, out)
    victim = sorted(out.glob(f"*{TAR_SUFFIX}"))[0]
    times = victim.stat()
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(times.st_atime_ns, times.st_mtime_ns))  # its old time put back, as a restored backup has

    assert main(["build", "--domain", "garments", "--out", str(out), "--units-per-shard", "8", "--dry-run"]) == 0
    assert ", 0 to build" in capsys.readouterr().out
    assert main(["validate", str(out)]) == 1
    assert f"{victim.stem} -: {victim.name} differs from the SHA-256 in its marker" in capsys.readouterr().out


def test_dry_run_plans_and_writes_nothing(built_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fresh = tmp_path / "new"
    assert main(["build", "--domain", "garments", "--out", str(fresh), "--units-per-shard", "8", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    shards = len(list(built_dataset.glob(f"*{TAR_SUFFIX}")))
    units = sum(json.loads(p.read_text())["units"] for p in built_dataset.glob("*_stats.json"))
    assert lines[0].startswith(f"garments: dry run, nothing written: {units} units (")
    assert f" in {shards} shards (" in lines[0] and f"0 done, {shards} to build" in lines[0], lines
    assert not fresh.exists()

    out = tmp_path / "copy"
    shutil.copytree(built_dataset, out)
    victim = sorted(out.glob(f"*{TAR_SUFFIX}"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()}
    assert main(["build", "--domain", "garments", "--out", str(out), "--units-per-shard", "8", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"{shards - 1} done, 1 to build" in lines[0], lines
    assert f"would rebuild {victim.stem}: {victim.name} has 100 bytes, its marker says" in "\n".join(lines)
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()} == before
