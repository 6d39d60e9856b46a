"""Scale-out build: shards are written by Ray tasks (no sample bytes through the driver), the chain comes from the
registry, and the MATS parameters are build settings (fingerprinted, in the card, read back for training)."""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unieditkit.pipelines.build import build
from unieditkit.pipelines.config import BuildConfig, OutputSettings, load_config_file
from unieditkit.pipelines.stages.registry import build_chain, chain_names
from unieditkit.errors import UserError
from unieditkit.format import find_done_shards, mask_member, recorded_mats_params
from unieditkit.mats import MatsParams, rough_mask


def test_driver_writes_no_shard_and_receives_no_sample_bytes(tmp_path: Path, ray_local, monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    import unieditkit.pipelines.distributor as distributor

    def no_write_here(*args: object, **kwargs: object) -> None:
        raise AssertionError("a shard was written in the driver process")

    monkeypatch.setattr(distributor, "write_shard", no_write_here)  # workers import the real one
    received = [0]
    real_get = ray.get

    def counting_get(refs: object, **kwargs: object) -> object:
        value = real_get(refs, **kwargs)
        received[0] += len(pickle.dumps(value))
        return value

    monkeypatch.setattr(ray, "get", counting_get)
    out = tmp_path / "out"
    summary = build(BuildConfig(domain="garments", out_dir=str(out), settings=OutputSettings(units_per_shard=8), progress=False))
    tar_bytes = sum(p.stat().st_size for p in out.glob("*.tar"))
    assert summary.samples_written > 0 and len(find_done_shards(out)) == summary.shards_written
    assert received[0] > 0, "the driver got nothing back at all"
    assert received[0] < tar_bytes / 20, f"driver received {received[0]} bytes for {tar_bytes} bytes of shards"


def test_chain_comes_from_the_registry_in_order() -> None:
    from unieditkit.pipelines.models.weights import ModelSpec

    cfg = BuildConfig(domain="garments", out_dir="unused")
    assert [s.name for s in build_chain(cfg, None)] == ["pair", "filter", "mats"]
    mined = ModelSpec(stages=("detect", "segment", "caption", "categorize"))
    chain = chain_names()
    assert chain == ("detect", "segment", "embed", "pair", "caption", "categorize", "filter", "mats")
    images = "+".join(chain[:3])  # detect, segment and embed share one actor, so each image is decoded once for all
    assert [s.name for s in build_chain(cfg, mined)] == [images, *chain[3:]]
    assert [s.name for s in build_chain(cfg, ModelSpec(stages=("segment",)))] == ["segment", "pair", "filter", "mats"]


def test_fused_image_stages_take_the_largest_resources_and_keep_their_model_batches() -> None:
    from unieditkit.pipelines.config import ModelStagesConfig, StageResources
    from unieditkit.pipelines.models.weights import ModelSpec

    resources = {"detect": StageResources(batch_size=4, concurrency=2, num_gpus=1.0),
                 "segment": StageResources(batch_size=16, concurrency=3, num_gpus=0.5, num_cpus=2.0)}
    cfg = BuildConfig(domain="garments", out_dir="unused", model_stages=ModelStagesConfig(resources=resources))
    fused = build_chain(cfg, ModelSpec(stages=("detect", "segment")))[0]
    assert fused.name == "detect+segment"
    assert fused.resources == StageResources(batch_size=16, concurrency=3, num_gpus=1.0, num_cpus=2.0)
    (detect, detect_kwargs), (segment, segment_kwargs) = fused.kwargs["members"]
    assert (detect.__name__, detect_kwargs["batch_size"], detect_kwargs["device"]) == ("DetectStage", 4, "cuda")
    assert (segment.__name__, segment_kwargs["batch_size"], segment_kwargs["device"]) == ("SegmentStage", 16, "cuda")


def _masks(tar_path: Path) -> list[tuple[dict, np.ndarray, np.ndarray]]:
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(tar_path) as tf:
        for m in tf.getmembers():
            key, _, ext = m.name.partition(".")
            samples.setdefault(key, {})[ext] = tf.extractfile(m).read()
    out = []
    for members in samples.values():
        def mask(variant: str) -> np.ndarray:
            return np.asarray(Image.open(io.BytesIO(members[mask_member(variant)]))) > 127
        out.append((json.loads(members["json"]), mask("fine"), mask("rough")))
    return out


def test_mats_params_are_build_settings(tmp_path: Path, ray_local) -> None:
    config = tmp_path / "build.yaml"
    config.write_text("settings:\n  mats:\n    dilate_frac: [0.3, 0.4]\n    octaves: 1\n")
    params = load_config_file(str(config)).settings["mats"]
    assert params == MatsParams(dilate_frac=(0.3, 0.4), octaves=1)
    settings = OutputSettings(units_per_shard=8, mats=params)
    out = tmp_path / "out"
    build(BuildConfig(domain="garments", out_dir=str(out), settings=settings, progress=False))

    assert recorded_mats_params(out, "garments") == params
    recorded = json.loads((out / "build_config.json").read_text())["domains"]["garments"]["settings"]["mats"]
    assert recorded["dilate_frac"] == [0.3, 0.4] and recorded["octaves"] == 1
    assert '"dilate_frac": [0.3, 0.4]' in (out / "README.md").read_text()
    differs = 0
    for tar in sorted(out.glob("*.tar")):
        for meta, fine, rough in _masks(tar):
            assert (rough == rough_mask(fine, meta["mats"]["seed"], params)[0]).all(), "rough mask not redrawn from the recorded params"
            differs += int((rough != rough_mask(fine, meta["mats"]["seed"])[0]).any())
    assert differs > 0, "the MATS settings did not change any rough mask"

    with pytest.raises(UserError, match="different settings"):
        build(BuildConfig(domain="garments", out_dir=str(out), settings=OutputSettings(units_per_shard=8), progress=False))


@pytest.mark.parametrize(
    "text, message",
    [
        ("settings:\n  mats: 3\n", r"settings.mats: expected a mapping"),
        ("settings:\n  mats: {dilate: [1, 2]}\n", r"settings.mats.dilate: unknown MATS parameter; did you mean 'dilate_frac'\? use "),
        ("settings:\n  mats: {octaves: 2.5}\n", r"settings.mats.octaves: 2.5 is not an integer"),
        ("settings:\n  mats: {aspect: [0.9, 0.5]}\n", r"settings.mats: MatsParams.aspect"),
    ],
)
def test_bad_mats_settings_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as err:
        load_config_file(str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_recorded_mats_params_needs_a_built_domain(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="build_config.json: cannot read"):
        recorded_mats_params(tmp_path, "garments")
    (tmp_path / "build_config.json").write_text(json.dumps({"domains": {"garments": {"settings": {}}}}))
    assert recorded_mats_params(tmp_path, "garments") == MatsParams(work_side=0), "built before MATS settings: defaults, per pixel"
    (tmp_path / "build_config.json").write_text(json.dumps({"domains": {"garments": {"settings": {"mats": {"octaves": 1}}}}}))
    assert recorded_mats_params(tmp_path, "garments") == MatsParams(octaves=1, work_side=0), "built before work_side: per pixel"
    with pytest.raises(UserError, match="no domain 'shoes'"):
        recorded_mats_params(tmp_path, "shoes")
