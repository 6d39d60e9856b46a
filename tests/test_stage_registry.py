"""A model stage is one module and one declaration: a stage declared here, and nowhere else, is run by a build,
checked for its weights, chosen by ``--models auto`` and given resources by ``--config``.

The stage below is the example of ``docs/STAGES.md``: it writes each sample's brightness, the target image's mean
times a gain read from a "weights" file found in the models folder like any official checkpoint.
"""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pyarrow as pa
import pytest

from unieditkit.cli import main
from unieditkit.errors import UserError
from unieditkit.format import BUILD_CONFIG_FILE, column
from unieditkit.imageio import decode_rgb
from unieditkit.pipelines.config import BuildConfig, ModelStagesConfig, load_config_file
from unieditkit.pipelines.models.weights import ModelSpec, WeightCheck, official_file
from unieditkit.pipelines.stages.model_stages import MODEL_STAGES, ModelStage, StageResources
from unieditkit.pipelines.stages.registry import build_chain, chain_names

GAIN_FILE = "brightness_gain.txt"
GAIN_URL = "https://example.org/unieditkit/brightness_gain.txt"


def gain_file(spec: ModelSpec) -> Path:
    return official_file(spec, "brightness gain", GAIN_FILE, GAIN_URL)


def brightness_weights(spec: ModelSpec) -> list[WeightCheck]:
    return [lambda: gain_file(spec)]


class BrightnessStage:
    """Each kept sample's ``brightness``: the target's mean pixel value times the gain in the weights file."""

    def __init__(self, spec: ModelSpec, device: str = "cpu") -> None:
        self.gain = float(gain_file(spec).read_text())

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        for row in rows:
            if row["status"] == "ok":
                meta = json.loads(row["meta"])
                meta["brightness"] = round(self.gain * float(decode_rgb(row[column("tgt.jpg")]).mean()), 3)
                row["meta"] = json.dumps(meta, sort_keys=True)
        return pa.Table.from_pylist(rows, schema=batch.schema)


BRIGHTNESS = ModelStage("brightness", cls=f"{__name__}:BrightnessStage", reads="samples",
                        auto=lambda unit: unit.pair_kind == "self", weights=f"{__name__}:brightness_weights",
                        resources=StageResources(batch_size=2))


@pytest.fixture
def declared(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelStage]:
    """The stage in the registry for one test; Ray's workers get this module's classes by value, as they cannot
    import a test module by name."""
    import ray.cloudpickle

    monkeypatch.setitem(MODEL_STAGES, BRIGHTNESS.name, BRIGHTNESS)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield BRIGHTNESS
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def photos(folder: Path, n: int) -> Path:
    """``n`` textured photos, each with one annotated dress (a polygon), in a manifest."""
    folder.mkdir()
    lines = []
    for i in range(n):
        rng = np.random.default_rng(i)
        img = cv2.resize(rng.integers(40, 200, (12, 16, 3), dtype=np.uint8), (160, 120), interpolation=cv2.INTER_CUBIC)
        x0, y0 = 30 + 8 * i, 20 + 5 * i
        inside = np.zeros(img.shape[:2], np.uint8)
        cv2.rectangle(inside, (x0, y0), (x0 + 70, y0 + 60), 1, -1)
        img[inside > 0] = rng.integers(0, 256, (int(inside.sum()), 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"p{i}.jpg"), img)
        polygon = [x0, y0, x0 + 70, y0, x0 + 70, y0 + 60, x0, y0 + 60]
        lines.append(json.dumps({"image": f"p{i}.jpg", "objects": [{"category": "dress", "polygon": [polygon]}]}))
    (folder / "m.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "m.jsonl"


def _build_args(tmp_path: Path, *extra: str) -> list[str]:
    manifest = photos(tmp_path / "src", 3)
    return ["build", "--domain", "garments", "--out", str(tmp_path / "out"), "--source", f"manifest:{manifest}",
            "--splits", "1,0,0", "--no-progress", "--models-dir", str(tmp_path / "models"), *extra]


def test_a_declared_stage_is_chosen_by_auto_and_runs_in_the_build(declared, tmp_path: Path, ray_local, capsys) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / GAIN_FILE).write_text("0.5")
    assert main(_build_args(tmp_path)) == 0, capsys.readouterr()
    out = tmp_path / "out"
    recorded = json.loads((out / BUILD_CONFIG_FILE).read_text())["domains"]["garments"]["models"]
    assert recorded["stages"] == ["brightness"], "--models auto ran what the declarations' auto rules asked for"
    samples: dict[str, dict[str, bytes]] = {}
    for tar in out.glob("*.tar"):
        with tarfile.open(tar) as tf:
            for m in tf.getmembers():
                key, _, member = m.name.partition(".")
                samples.setdefault(key, {})[member] = tf.extractfile(m).read()
    assert len(samples) == 3, capsys.readouterr().out
    for sample in samples.values():
        meta = json.loads(sample["json"])
        assert meta["brightness"] == round(0.5 * float(decode_rgb(sample["tgt.jpg"]).mean()), 3)


def test_its_missing_weights_file_is_one_line_before_anything_is_made(declared, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("UNIEDITKIT_MODELS", raising=False)
    (tmp_path / "models").mkdir()
    assert main(_build_args(tmp_path, "--models", "brightness")) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["unieditkit build: error: 1 model file(s) missing, nothing was built:",
                   f"  (1) brightness gain {GAIN_FILE}: not in the models folder {tmp_path / 'models'}; "
                   f"download {GAIN_URL} into it"]
    assert not (tmp_path / "out").exists()


def test_config_gives_it_resources_and_it_sits_in_the_chain_by_what_it_reads(declared, tmp_path: Path) -> None:
    config_file = tmp_path / "stages.yaml"
    config_file.write_text("stages:\n  brightness: {batch_size: 3, concurrency: 2}\n")
    resources = load_config_file(str(config_file)).resources
    assert resources == {"brightness": StageResources(batch_size=3, concurrency=2)}
    models = ModelSpec(stages=("segment", "brightness"))
    assert chain_names() == ("detect", "segment", "embed", "pair", "caption", "categorize", "brightness", "filter", "mats")
    given = build_chain(BuildConfig("garments", "unused", model_stages=ModelStagesConfig(resources=resources)), models)
    default = build_chain(BuildConfig("garments", "unused"), models)
    assert [s.name for s in given] == ["segment", "pair", "brightness", "filter", "mats"]
    assert (given[2].fn, given[2].resources) == (BrightnessStage, StageResources(batch_size=3, concurrency=2))
    assert default[2].resources == StageResources(batch_size=2), "without --config, the declared defaults"
    config_file.write_text("stages:\n  brightnes: {batch_size: 3}\n")
    with pytest.raises(UserError, match=r"stages.brightnes: unknown stage; did you mean 'brightness'\? "
                                        r"use detect, segment, caption, categorize, brightness$"):
        load_config_file(str(config_file))


def test_a_stage_that_reads_images_must_be_an_image_stage(declared, monkeypatch: pytest.MonkeyPatch) -> None:
    misplaced = ModelStage("brightness", cls=BRIGHTNESS.cls, reads="images", auto=BRIGHTNESS.auto)
    monkeypatch.setitem(MODEL_STAGES, misplaced.name, misplaced)
    with pytest.raises(TypeError, match="model stage brightness: reads images, so .*BrightnessStage must be an ImageStage"):
        build_chain(BuildConfig("garments", "unused"), ModelSpec(stages=("brightness",)))
