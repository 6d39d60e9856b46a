"""``unieditkit eval``: ground truth as predictions beats both baselines on every metric, rows per variant and
group, flagged random weights, the chart, missing predictions, and weight files loaded by path."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from unieditkit.baselines import BASELINES
from unieditkit.cli import main
from unieditkit.evaluate import MODEL, DinoEmbedder, InceptionFeatures, LpipsScorer, frechet_distance
from unieditkit.format import MASK_VARIANTS, TAR_SUFFIX, marker_name, shard_name
from unieditkit.imageio import decode_rgb
from unieditkit.metrics import PSNR_CAP_DB

SPLIT = "train"


def _samples(data: Path) -> list[dict]:
    return [s for tar in sorted(data.glob(f"*-{SPLIT}-*{TAR_SUFFIX}")) for s in wds.WebDataset(str(tar), shardshuffle=False)]


@pytest.fixture(scope="module")
def data(built_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four samples of the bundled build as two domains of two (the second pair relabelled in its metadata):
    rows per domain and per subcategory are exercised, and each eval run stays a few seconds per model."""
    root = tmp_path_factory.mktemp("data")
    samples = _samples(built_dataset)[:4]
    for domain, part in (("garments", samples[:2]), ("vehicles", samples[2:])):
        name = shard_name(domain, SPLIT, 0)
        with wds.TarWriter(str(root / f"{name}{TAR_SUFFIX}")) as sink:
            for s in part:
                meta = {**json.loads(s["json"]), "domain": domain}
                sink.write({**{k: v for k, v in s.items() if not k.startswith("__")}, "__key__": s["__key__"],
                            "json": json.dumps(meta).encode()})
        (root / marker_name(name)).write_text("{}")
    return root


@pytest.fixture(scope="module")
def ground_truth_predictions(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The targets themselves as every variant's prediction: the best any editor can do."""
    pred = tmp_path_factory.mktemp("pred")
    for s in _samples(data):
        tgt = Image.fromarray(decode_rgb(s["tgt.jpg"]))
        for variant in MASK_VARIANTS:
            tgt.save(pred / f"{s['__key__']}.{variant}.png")
    return pred


@pytest.fixture(scope="module")
def random_run(data: Path, ground_truth_predictions: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    out = tmp_path_factory.mktemp("eval")
    argv = ["eval", "--pred", str(ground_truth_predictions), "--data", str(data), "--split", SPLIT,
            "--random-weights", "--device", "cpu", "--json", str(out / "eval.json"), "--chart", str(out / "eval.png")]
    capture = io.StringIO()
    from contextlib import redirect_stdout

    with redirect_stdout(capture):
        assert main(argv) == 0
    return json.loads((out / "eval.json").read_text()), capture.getvalue(), out / "eval.png"


def _row(result: dict, variant: str, editor: str, group: str = "all") -> dict:
    (row,) = [r for r in result["rows"] if r["group"] == group and r["variant"] == variant and r["editor"] == editor]
    return row


@pytest.mark.slow  # one eval with all six networks, randomly initialised, on the CPU (about 1.5 min)
def test_ground_truth_beats_both_baselines(random_run: tuple[dict, str, Path], data: Path) -> None:
    result, _, _ = random_run
    assert result["samples"] == len(_samples(data)) == 4
    assert result["metrics"] == ["CLIP-I", "DINO-I", "PSNR", "SSIM", "LPIPS", "FID"]
    assert result["editors"] == [MODEL, *BASELINES]
    for variant in MASK_VARIANTS:
        model = _row(result, variant, MODEL)
        assert model["n"] == result["samples"]
        assert model["PSNR"] == PSNR_CAP_DB and model["SSIM"] == pytest.approx(1.0, abs=1e-9)
        assert model["LPIPS"] == pytest.approx(0.0, abs=1e-6)
        for name in BASELINES:
            base = _row(result, variant, name)
            assert base["n"] == model["n"]
            assert base["PSNR"] < 40 and base["SSIM"] < 0.99, f"{name} must not see the ground truth"
            assert base["LPIPS"] > model["LPIPS"] + 1e-4
            assert base["FID"] > model["FID"] + 1e-6
        assert abs(model["FID"]) < 1e-3 * _row(result, variant, "mean-fill")["FID"], "identical features: FID ~ 0"


@pytest.mark.slow
def test_rows_per_domain_and_subcategory(random_run: tuple[dict, str, Path]) -> None:
    result, printed, _ = random_run
    for group in ("domain", "subcategory"):
        names = {r["name"] for r in result["rows"] if r["group"] == group}
        assert names, group
        for name in names:
            rows = [r for r in result["rows"] if r["group"] == group and r["name"] == name]
            assert {(r["variant"], r["editor"]) for r in rows} == {(v, e) for v in MASK_VARIANTS for e in result["editors"]}
    per_sub = [r for r in result["rows"] if r["group"] == "subcategory" and r["variant"] == "fine" and r["editor"] == MODEL]
    assert sum(r["n"] for r in per_sub) == result["samples"]
    # a subcategory's row is the mean of its samples: the all-samples mean is their count-weighted mean
    assert sum(r["n"] * r["DINO-I"] for r in per_sub) / result["samples"] == pytest.approx(_row(result, "fine", MODEL)["DINO-I"])
    for variant in MASK_VARIANTS:
        for editor in result["editors"]:
            assert f"| {variant} | all | 4 | {editor} |" in printed
            assert f"| {variant} | garments | 2 | {editor} |" in printed and f"| {variant} | vehicles | 2 | {editor} |" in printed
    assert "| garments/" not in printed, "per-subcategory rows are in the JSON only"


@pytest.mark.slow
def test_random_weights_are_flagged_everywhere(random_run: tuple[dict, str, Path]) -> None:
    result, printed, chart = random_run
    assert result["random_weights"] == ["CLIP-I", "DINO-I", "LPIPS", "FID"]
    assert all(result["weights"][m].endswith("random") or "random" in result["weights"][m] for m in result["random_weights"])
    head, *rows = [line for line in printed.splitlines() if line.startswith("| ")]
    assert printed.startswith("* RANDOM WEIGHTS for CLIP-I, DINO-I, LPIPS, FID")
    for metric in result["random_weights"]:
        assert f"{metric}*" in head
    assert "PSNR*" not in head and "SSIM*" not in head
    for line in rows[1:]:  # every value of a random-weight metric carries the flag; PSNR and SSIM do not
        cells = [c.strip() for c in line.strip("|").split("|")][4:]
        assert [c.split(" ")[0].endswith("*") for c in cells] == [True, True, False, False, True, True], line
    assert "(n=" in rows[1], "FID is printed with its sample count"
    with Image.open(chart) as img:
        assert img.format == "PNG" and img.width > 600 and img.height > 200


@pytest.mark.slow
def test_dino_score_is_the_reference_similarity(random_run: tuple[dict, str, Path], data: Path) -> None:
    """DINO-I of ground-truth predictions, recomputed by hand: the target's object box against the reference."""
    result, _, _ = random_run
    dino = DinoEmbedder(None, "cpu")
    sims = []
    for s in _samples(data):
        box = tuple(json.loads(s["json"])["bbox"])
        crop = np.asarray(Image.fromarray(decode_rgb(s["tgt.jpg"])).crop(box))
        a, b = dino([crop, decode_rgb(s["ref.jpg"])])
        sims.append(float(a @ b))
    for variant in MASK_VARIANTS:
        assert _row(result, variant, MODEL)["DINO-I"] == pytest.approx(np.mean(sims), abs=1e-5)


def test_missing_predictions_exit_1(data: Path, ground_truth_predictions: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    pred = tmp_path / "pred"
    pred.mkdir()
    files = sorted(ground_truth_predictions.iterdir())
    for f in files[1:]:
        (pred / f.name).symlink_to(f)
    out = tmp_path / "eval.json"
    assert main(["eval", "--pred", str(pred), "--data", str(data), "--split", SPLIT, "--random-weights",
                 "--json", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and not out.exists()
    assert captured.err.count("\n") == 1 and f"1 of {len(files)} predictions missing" in captured.err
    assert str(pred / files[0].name) in captured.err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval", "--pred", str(empty), "--data", str(data), "--split", SPLIT, "--random-weights"]) == 1
    assert f"{len(files)} of {len(files)} predictions missing" in capsys.readouterr().err


def test_missing_weights_say_how_to_get_them(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pred").mkdir()
    base = ["eval", "--pred", str(tmp_path / "pred"), "--data", str(data), "--json", str(tmp_path / "e.json")]
    assert main(base) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    for flag in ("--dino-weights", "--no-dino", "--lpips-weights", "--no-lpips", "--fid-weights", "--no-fid"):
        assert flag in err
    assert "alexnet-owt-7be5be79.pth" in err and "weights-inception-2015-12-05-6726825d.pth" in err
    assert main([*base, "--no-dino", "--no-fid", "--lpips-weights", str(tmp_path / "nope.pth")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--lpips-weights {tmp_path / 'nope.pth'}: file not found" in err
    assert not (tmp_path / "e.json").exists()
    assert main(["eval", "--pred", str(tmp_path / "pred"), "--data", str(data), "--random-weights",
                 "--split", "val"]) == 2
    assert f"--data {data}: no finished val shards; it has train " in capsys.readouterr().err


@pytest.mark.slow
def test_weight_files_load_by_path(data: Path, ground_truth_predictions: Path, random_run: tuple[dict, str, Path],
                                   tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Files in the official layouts (random values here, shifted from the seeded ones) go through the real
    loading code: unflagged, and their scores differ from the seeded random weights'."""
    torch.manual_seed(1)
    alex = {"features." + k.split(".", 1)[1]: v + 0.01 * torch.randn_like(v) for k, v in LpipsScorer(None, "cpu").net.net.state_dict().items()}
    torch.save(alex, tmp_path / "alexnet.pth")
    inception = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v
                 for k, v in InceptionFeatures(None, "cpu").net.state_dict().items()}
    torch.save(inception, tmp_path / "inception.pth")
    out = tmp_path / "eval.json"
    argv = ["eval", "--pred", str(ground_truth_predictions), "--data", str(data), "--split", SPLIT,
            "--variants", "box", "--no-clip", "--no-dino", "--device", "cpu", "--json", str(out)]
    assert main([*argv, "--lpips-weights", str(tmp_path / "alexnet.pth"), "--fid-weights", str(tmp_path / "inception.pth")]) == 0
    result = json.loads(out.read_text())
    assert result["random_weights"] == [] and "*" not in capsys.readouterr().out
    assert result["metrics"] == ["PSNR", "SSIM", "LPIPS", "FID"] and result["variants"] == ["box"]
    seeded = random_run[0]
    for editor in BASELINES:
        for metric in ("LPIPS", "FID"):
            assert _row(result, "box", editor)[metric] != pytest.approx(_row(seeded, "box", editor)[metric], rel=1e-4), metric
        for metric in ("PSNR", "SSIM"):
            assert _row(result, "box", editor)[metric] == _row(seeded, "box", editor)[metric]
    # a file of the other network is refused in one line naming it
    assert main([*argv, "--no-fid", "--lpips-weights", str(tmp_path / "inception.pth")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--lpips-weights" in err and "inception.pth" in err and "alexnet-owt" in err
    assert main([*argv, "--no-lpips", "--fid-weights", str(tmp_path / "alexnet.pth")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not hold torch-fidelity's Inception-v3" in err


def test_fid_in_the_span_of_the_features_equals_torchmetrics_fid() -> None:
    from torchmetrics.image.fid import FrechetInceptionDistance

    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(6, 96)), 1.3 * rng.normal(size=(9, 96)) + 0.2

    class Features(torch.nn.Module):
        num_features = 96

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    full = FrechetInceptionDistance(feature=Features())
    full.update(torch.from_numpy(real), real=True)
    full.update(torch.from_numpy(fake), real=False)
    assert frechet_distance(real, fake) == pytest.approx(float(full.compute()), rel=1e-6)
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(real[:1], fake) is None
