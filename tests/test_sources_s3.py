"""Sources on object storage: ``images:``, ``manifest:``, ``multiview:`` and ``tryon:`` read from an S3-compatible
server on 127.0.0.1 (moto's server mode, the fixture of ``test_cluster_s3.py``) give the units, and the shards, of
a build from the same files on local disk, byte for byte; a missing bucket or prefix, and ``video:`` on object
storage, are one-line errors naming the fix."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import skimage.data
from PIL import Image
from buildproc import folder_files, shard_files
from test_cluster_s3 import BUCKET, _cli, _free_port, _fs, s3  # noqa: F401  (s3: the moto server fixture)

from unieditkit.pipelines.sources import WorkUnit, parse_source
from unieditkit.errors import UserError
from unieditkit.uri import split_uri

PREFIX = f"{BUCKET}/sources"


def _photo(path: Path, name: str, size: tuple[int, int] = (128, 96)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = cv2.resize(getattr(skimage.data, name)(), size)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _mask(path: Path, box: tuple[int, int, int, int], size: tuple[int, int] = (128, 96)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((size[1], size[0]), np.uint8)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = 255
    cv2.imwrite(str(path), m)


def _write_inputs(root: Path) -> Path:
    """One small folder per source kind, with the things listings get wrong: subfolders, hidden files, other files."""
    _photo(root / "photos" / "chelsea.jpg", "chelsea")
    _photo(root / "photos" / "sub" / "coffee.png", "coffee")
    _photo(root / "photos" / ".cache" / "hidden.jpg", "coffee")
    (root / "photos" / "notes.txt").write_text("not an image")

    _photo(root / "shop" / "dress.jpg", "astronaut")
    _photo(root / "shop" / "scene.jpg", "chelsea")
    _mask(root / "shop" / "masks" / "dress.png", (30, 20, 90, 80))
    _mask(root / "shop" / "masks" / "scene.png", (20, 10, 100, 70))
    lines = [
        {"image": "dress.jpg", "objects": [{"category": "dress", "mask": "masks/dress.png"}]},
        {"ref": "dress.jpg", "target": "scene.jpg", "mask": "masks/scene.png", "ref_mask": "masks/dress.png", "category": "dress"},
    ]
    (root / "shop" / "garments.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))

    for i, name in enumerate(("chelsea", "coffee", "astronaut")):
        _photo(root / "mv" / "chair" / "obj1" / "images" / f"{i:03d}.jpg", name)
        _photo(root / "mv" / "obj2" / f"v{i}.png", name)
    (root / "mv" / "obj2" / "category.txt").write_text("cup\n")

    labels = np.zeros((96, 128), np.uint8)
    labels[20:80, 30:90] = 5  # upper clothes
    for split, person in (("train", "astronaut"), ("test", "chelsea")):
        _photo(root / "viton" / split / "image" / "p1.jpg", person)
        _photo(root / "viton" / split / "cloth" / "p1.jpg", "coffee")
        _mask(root / "viton" / split / "cloth-mask" / "p1.jpg", (10, 10, 110, 86))
        (root / "viton" / split / "image-parse-v3").mkdir()
        Image.fromarray(labels, mode="L").convert("P").save(root / "viton" / split / "image-parse-v3" / "p1.png")
    return root


@pytest.fixture(scope="module")
def inputs(s3: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same files on local disk and under ``s3://BUCKET/sources/``."""
    root = _write_inputs(tmp_path_factory.mktemp("inputs") / "sources")
    _fs(s3).put(str(root) + "/", f"{PREFIX}/", recursive=True)
    return root


@pytest.fixture()
def s3_env(s3: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """This process pointed at the moto server, as a user's shell would be (AWS_ENDPOINT_URL and keys)."""
    import fsspec

    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(key, s3[key])
    fsspec.filesystem("s3").clear_instance_cache()
    yield s3
    fsspec.filesystem("s3").clear_instance_cache()


def _portable(u: WorkUnit) -> dict[str, object]:
    """What a unit puts into a shard, with its paths relative to the source (as sample metadata stores them)."""
    objects = [{**o.to_json(), "mask_uri": u.relative(o.mask_uri)} for o in u.objects]
    return {"unit_id": u.unit_id, "group_id": u.group_id, "pair_kind": u.pair_kind, "needs_detection": u.needs_detection,
            "category_hint": u.category_hint, "tgt": u.relative(u.tgt_uri), "ref": u.relative(u.ref_uri),
            "ref_mask": u.relative(u.ref_mask_uri), "objects": objects}


def _units_of(specs: list[str]) -> list[WorkUnit]:
    return [u for spec in specs for u in parse_source(spec).units()]


SPECS = ("images:{}/photos", "manifest:{}/shop/garments.jsonl", "multiview:{}/mv?pairs_per_object=2", "tryon:{}/viton")


@pytest.mark.parametrize("spec", SPECS)
def test_a_source_on_s3_lists_the_units_of_its_local_copy(spec: str, inputs: Path, s3_env: dict[str, str]) -> None:
    local = list(parse_source(spec.format(inputs)).units())
    remote = list(parse_source(spec.format(f"s3://{PREFIX}")).units())
    assert local and [_portable(u) for u in remote] == [_portable(u) for u in local]
    uris = [uri for u in remote for uri in (u.tgt_uri, u.ref_uri, u.ref_mask_uri, *(o.mask_uri for o in u.objects)) if uri]
    assert all(uri.startswith(f"s3://{PREFIX}/") for uri in uris)  # the workers read S3, not the local copy


def test_the_listings_skip_hidden_and_other_files_and_read_category_txt(inputs: Path, s3_env: dict[str, str]) -> None:
    images = [u.unit_id for u in parse_source(f"images:s3://{PREFIX}/photos/").units()]
    assert images == ["images/photos/chelsea.jpg", "images/photos/sub/coffee.png"]
    hints = {u.group_id: u.category_hint for u in parse_source(f"multiview:s3://{PREFIX}/mv").units()}
    assert hints == {"multiview/mv/chair/obj1": "chair", "multiview/mv/obj2": "cup"}


def test_a_sources_yaml_file_names_s3_folders_as_they_are(inputs: Path, s3_env: dict[str, str], tmp_path: Path) -> None:
    from unieditkit.pipelines.sources import load_sources_yaml

    yaml_file = tmp_path / "sources.yaml"
    yaml_file.write_text(f"sources:\n  - {{kind: multiview, path: 's3://{PREFIX}/mv/', pairs_per_object: 2}}\n")
    specs = load_sources_yaml(yaml_file)
    assert specs == [f"multiview:s3://{PREFIX}/mv/?pairs_per_object=2"]
    assert [_portable(u) for u in _units_of(specs)] == [_portable(u) for u in _units_of([f"multiview:{inputs}/mv?pairs_per_object=2"])]


@pytest.mark.parametrize(("spec", "message"), ids=("prefix", "bucket", "file", "video"), argvalues=[
    (f"images:s3://{PREFIX}/no-such-prefix", f"images:s3://{PREFIX}/no-such-prefix: not a folder (no such bucket or prefix); pass --source images:"),
    ("multiview:s3://no-such-bucket-unieditkit/mv", "multiview:s3://no-such-bucket-unieditkit/mv: not a folder (no such bucket or prefix); pass --source multiview:"),
    (f"manifest:s3://{PREFIX}/shop/missing.jsonl", f"manifest:s3://{PREFIX}/shop/missing.jsonl: file not found; pass --source manifest:"),
    (f"video:s3://{PREFIX}/clips/", f"video:s3://{PREFIX}/clips/: videos are decoded by OpenCV, which reads local files only; copy the clips"),
])
def test_a_missing_bucket_or_prefix_and_video_on_s3_are_one_line_errors(spec: str, message: str, inputs: Path, s3_env: dict[str, str]) -> None:
    with pytest.raises(UserError) as err:
        parse_source(spec)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


@pytest.mark.parametrize("spec", [f"images:s3://{PREFIX}/photos", f"manifest:s3://{PREFIX}/shop/garments.jsonl"], ids=("folder", "file"))
def test_an_unreachable_endpoint_is_not_called_a_missing_file(spec: str, s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    import fsspec

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    fsspec.filesystem("s3").clear_instance_cache()
    with pytest.raises(UserError) as err:
        parse_source(spec)
    assert str(err.value).startswith(f"{spec}: cannot read it (EndpointConnectionError") and "AWS_ENDPOINT_URL" in str(err.value)


def test_the_inputs_fingerprint_sees_an_object_replaced_in_place(inputs: Path, s3_env: dict[str, str]) -> None:
    """A resumed build must notice an input overwritten on S3, even with the same size (its ETag changes)."""
    import fsspec

    from unieditkit.pipelines.build import inputs_fingerprint
    from unieditkit.pipelines.plan import ShardPlan
    from unieditkit.pipelines.sources.files import remote_versions

    specs = [spec.format(f"s3://{PREFIX}") for spec in SPECS]

    def fingerprint() -> str:  # as a new build process makes it: nothing listed yet
        fsspec.filesystem("s3").clear_instance_cache()
        return inputs_fingerprint([ShardPlan("garments-train-000000", "garments", "train", _units_of(specs))])

    files = {split_uri(uri)[0] for u in _units_of(specs) for uri in (u.tgt_uri, u.ref_uri, u.ref_mask_uri, *(o.mask_uri for o in u.objects)) if uri}
    assert set(remote_versions(files)) == files  # every input found, with its size and version
    before = fingerprint()
    assert fingerprint() == before
    fs = _fs(s3_env)
    target = f"{PREFIX}/shop/masks/scene.png"
    original = fs.cat_file(target)
    fs.pipe_file(target, bytes(reversed(original)))  # same size, other bytes
    try:
        assert fingerprint() != before
    finally:
        fs.pipe_file(target, original)


@pytest.mark.slow
def test_a_build_from_s3_sources_equals_a_build_from_their_local_copy(inputs: Path, s3: dict[str, str], tmp_path: Path) -> None:
    """The annotated kinds (pixels and masks read by the workers from S3), the build's own model choice (none
    needed): the unannotated ``images:`` kind reads its files the same way, and its units are compared above;
    running the mining models here would only make the test slow."""
    specs = [spec for spec in SPECS if spec.startswith(("manifest:", "tryon:"))]
    outs = {}
    for side, root in (("local", str(inputs)), ("s3", f"s3://{PREFIX}")):
        outs[side] = tmp_path / side
        sources = [arg for spec in specs for arg in ("--source", spec.format(root))]
        done = subprocess.run(_cli(*sources, "--units-per-shard", "4", "--out", str(outs[side])), env=s3,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
    local, remote = (shard_files(folder_files(outs[side])) for side in ("local", "s3"))
    assert local and remote == local
    for name in ("index.parquet", "rejected.parquet"):
        assert (outs["s3"] / name).read_bytes() == (outs["local"] / name).read_bytes(), name
    stats = [json.loads(b) for n, b in local.items() if n.endswith("_stats.json")]
    assert sum(s["units"] for s in stats) == len(_units_of([spec.format(inputs) for spec in specs]))
    kinds = {r["pair_kind"] for r in pq.read_table(outs["local"] / "index.parquet").to_pylist()}
    assert {"manifest", "tryon"} <= kinds, kinds
