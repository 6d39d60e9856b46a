"""`unieditkit edit`: single and batch forms on a trained built-in run; the batch form writes what eval reads."""

from __future__ import annotations

import argparse
import io
import json

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from unieditkit.training.edit import compose, register, unletterbox
from unieditkit.errors import UserError
from unieditkit.evaluate import evaluate


def _cli(command, argv):
    from unieditkit.training.cli import register as register_train

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    register(sub)
    register_train(sub)
    args = parser.parse_args([command, *argv])
    return args.func(args)


@pytest.fixture(scope="module")
def data_and_run(tmp_path_factory):
    from conftest import TINY_CONFIG, write_shards

    root = tmp_path_factory.mktemp("edit")
    data = root / "out"
    write_shards(data, {"garments": [6]}, {"garments": 0}, size=40)
    write_shards(data, {"garments": [3]}, {"garments": 0}, split="test", size=40, seed=3)
    config = root / "tiny.yaml"
    config.write_text(TINY_CONFIG.replace("data: {", "data: {domains: [garments], "))
    run = root / "run"
    assert _cli("train", ["--config", str(config), "--data", str(data), "--out", str(run), "--max-steps", "2"]) == 0
    return data, run


def _test_samples(data):
    return sorted(wds.WebDataset(sorted(str(p) for p in data.glob("*-test-*.tar")), shardshuffle=False,
                                 empty_check=False), key=lambda s: s["__key__"])


def test_batch_form_writes_every_prediction_eval_reads_with_known_pixels_kept(data_and_run, tmp_path):
    data, run = data_and_run
    pred = tmp_path / "pred"
    assert _cli("edit", ["--checkpoint", str(run), "--data", str(data), "--out", str(pred), "--steps", "2",
                         "--batch-size", "2"]) == 0
    samples = _test_samples(data)
    assert len(list(pred.iterdir())) == 3 * len(samples)
    for s in samples:
        meta = json.loads(s["json"])
        for variant in ("fine", "rough", "box"):
            out = np.asarray(Image.open(pred / f"{s['__key__']}.{variant}.png"))
            tgt = np.asarray(Image.open(io.BytesIO(s["tgt.jpg"])).convert("RGB"))
            keep = np.asarray(Image.open(io.BytesIO(s[f"mask_{variant}.png"]))) <= 127
            assert out.shape[:2] == (meta["tgt_size"][1], meta["tgt_size"][0])
            assert np.array_equal(out[keep], tgt[keep])  # every known pixel is the input's
    result = evaluate(pred, data, "test", "", {})
    assert result["evaluated"] == {"fine": 3, "rough": 3, "box": 3}

    again = tmp_path / "again"
    _cli("edit", ["--checkpoint", str(run), "--data", str(data), "--out", str(again), "--steps", "2",
                  "--batch-size", "1", "--variants", "box"])
    assert sorted(p.name for p in again.iterdir()) == sorted(p.name for p in pred.glob("*.box.png"))
    for p in again.iterdir():  # per-output noise: the batch an output was made in does not matter
        assert np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(pred / p.name)))


def test_single_form_edits_inside_the_mask_only(data_and_run, tmp_path):
    data, run = data_and_run
    rng = np.random.default_rng(0)
    target = rng.integers(0, 256, size=(30, 50, 3), dtype=np.uint8)
    mask = np.zeros((30, 50), dtype=np.uint8)
    mask[5:20, 10:30] = 255
    Image.fromarray(target).save(tmp_path / "tgt.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    Image.fromarray(target[5:20, 10:30]).save(tmp_path / "ref.png")
    out = tmp_path / "out.png"
    argv = ["--checkpoint", str(run), "--ref", str(tmp_path / "ref.png"), "--image", str(tmp_path / "tgt.png"),
            "--mask", str(tmp_path / "mask.png"), "--out", str(out), "--steps", "2"]
    assert _cli("edit", [*argv, "--category", "t-shirt"]) == 0
    edited = np.asarray(Image.open(out))
    assert edited.shape == target.shape and np.array_equal(edited[mask == 0], target[mask == 0])
    assert not np.array_equal(edited[mask > 0], target[mask > 0])
    assert _cli("edit", argv) == 0  # the run trained on one domain: no --category needed
    Image.fromarray(mask[:10]).save(tmp_path / "small.png")
    with pytest.raises(UserError, match="--mask .*small.png: 50x10 but --image is 50x30"):
        _cli("edit", [*argv[:6], "--mask", str(tmp_path / "small.png"), "--out", str(out)])
    with pytest.raises(UserError, match="--category no-such-thing: not in the taxonomy"):
        _cli("edit", [*argv, "--category", "no-such-thing"])
    with pytest.raises(UserError, match="--step 99: .*not found"):
        _cli("edit", [*argv, "--step", "99"])


def test_unletterbox_inverts_the_training_letterbox():
    from unieditkit.training.data import letterbox

    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, size=(40, 64, 3), dtype=np.uint8))
    boxed = np.asarray(letterbox(img, 64, 127, Image.BICUBIC))
    assert unletterbox(boxed, img.size).size == img.size
    assert np.abs(np.asarray(unletterbox(boxed, img.size)).astype(int) - np.asarray(img)).mean() < 1
    keep = Image.fromarray(np.zeros((40, 64), dtype=np.uint8))
    assert np.array_equal(np.asarray(compose(boxed, img, keep)), np.asarray(img))


def test_a_run_on_one_domain_without_data_domains_edits_without_category(tmp_path, tiny_config, capsys):
    """``data.domains`` empty means "every domain in the folder": the run folder's record, not the config, tells
    edit that there was only one, and which subcategories."""
    from conftest import write_shards

    from unieditkit.training.data import read_trained_on

    data = tmp_path / "out"
    write_shards(data, {"vehicles": [4]}, {"vehicles": 130}, size=40)
    run = tmp_path / "run"
    assert _cli("train", ["--config", str(tiny_config), "--data", str(data), "--out", str(run), "--max-steps", "1"]) == 0
    record = read_trained_on(run)
    assert record["domains"] == ["vehicles"]
    assert [(s["id"], s["samples"]) for s in record["subcategories"]] == [(130, 2), (131, 2)]
    target = np.zeros((30, 50, 3), dtype=np.uint8)
    mask = np.zeros((30, 50), dtype=np.uint8)
    mask[5:20, 10:30] = 255
    for name, arr in (("tgt", target), ("mask", mask), ("ref", target[5:20, 10:30])):
        Image.fromarray(arr).save(tmp_path / f"{name}.png")
    argv = ["--checkpoint", str(run), "--ref", str(tmp_path / "ref.png"), "--image", str(tmp_path / "tgt.png"),
            "--mask", str(tmp_path / "mask.png"), "--out", str(tmp_path / "o.png"), "--steps", "1"]
    capsys.readouterr()
    assert _cli("edit", argv) == 0
    assert "using the run's only domain, vehicles" in capsys.readouterr().err

    write_shards(data, {"garments": [2]}, {"garments": 0}, size=40)
    two = tmp_path / "two"
    assert _cli("train", ["--config", str(tiny_config), "--data", str(data), "--out", str(two), "--max-steps", "1"]) == 0
    with pytest.raises(UserError, match=r"--category KEY is needed: the run trained on 2 domains \(garments, vehicles\)"):
        _cli("edit", [*argv[:1], str(two), *argv[2:]])
