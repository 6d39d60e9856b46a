"""Does training help? A trained built-in editor against its untrained self, two trivial editors and ablations.

    python bench/bench_learning.py --out DIR           # build, train 4 editors, edit and score (<= 15 min, 2 cores)
    python bench/bench_learning.py --quick --out DIR   # every step on a tiny budget: plumbing, not quality

1. **Data the bench makes itself, through the real build.** Synthetic photos (``make_source``), one object each,
   on a background (a gradient between two random colours, pixel noise) drawn independently of the object, so
   the context says nothing about what belongs in the hole. Every object has its own two random colours in its
   own pattern (solid, stripes at a random angle, checks, dots): only the reference can tell what to paint. Its
   outline is its subcategory's (t-shirt, dress / car, boat / bottle, ball: three domains), so the anchor knows
   the shape and only the reference the look. The photos and their ``manifest:`` file go through
   ``unieditkit build`` (its own entry point, once per domain into one folder, ``--models none``), which cuts
   and augments the references, draws the MATS rough masks and boxes, and puts a tenth of the photos in test.
2. **Training** (``unieditkit.training.train.run`` in this process, CPU), every variant with the same seed, data, steps,
   batch and learning rate (its cosine schedule decays to 0 rather than the default 10% of the peak: the budget is
   fixed, so the last steps are spent settling rather than exploring):

   * ``MoT + MATS``: 8 LoRA experts, top-2, Anchor-Guided Routing, the MATS curriculum fine -> rough -> box;
   * ``LoRA r{2 x rank} (one expert)``: one LoRA of the same active rank (``num_experts 1, top_k 1``);
   * ``MoT, random routing``: ``model.routing: random``, each reference's experts fixed by a frozen random gate;
   * ``MoT, fine masks only``: ``curriculum.boundaries: [1.0, 1.0]``, never a rough mask or a box.

   The built-in editor from scratch trains its backbone too (``model.train_backbone: auto``), so the ablations
   compare what each adds to a backbone that learns alongside. Size (``--image-size 16 --patch-size 2 --dim
   64``): a token must carry its patch's pixels through the model (7 channels x patch^2 inputs), and with
   32-px halves in 4-px patches a 64-wide token could not (samples stayed speckled, masked MSE 0.051 against
   0.045 at 16 px in 2-px patches: the same 64 tokens per half at the same cost); a width of 128 at 32 px took 2-3x
   the time per step and was no better for the same time (0.052). Experts of rank 8 rather than the paper's 16: at width 64 a rank-16 expert would be half as
   big as the linear it adapts.
3. **Scoring** on the test split, every sample with its fine, rough and box mask: each editor's predictions are
   written by ``unieditkit edit``'s batch path (``unieditkit.training.edit.edit_split``; the sampling noise of a sample is
   the same for every editor) and read back as ``unieditkit eval`` reads them (``held_out``, ``composite``);
   masked MSE, PSNR and SSIM over the generated pixels (``unieditkit.metrics``). Beside them: the same
   architecture untrained (step 0: the seeded initial weights every variant starts from) and the two baselines
   of ``unieditkit.baselines``, on the same samples and masks, and the ceiling: the ground truth through the
   editor's own 16-px frame and back, what a perfect editor of this size would score.

The table (rows: editors; columns: metric x mask variant) is printed and written to ``--out`` as ``learning.md``
and ``learning.json``, with issue 18's targets: the trained editor's masked MSE at most 0.5x the untrained
editor's and at most 0.5x the mean-fill baseline's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unieditkit.baselines import BASELINES  # noqa: E402
from unieditkit.format import MASK_VARIANTS  # noqa: E402
from unieditkit.metrics import masked_mse, masked_psnr, masked_ssim  # noqa: E402

#: outlines in the unit square, one per subcategory (a taxonomy key), grouped by domain
OUTLINES: dict[str, dict[str, list[tuple[float, float]]]] = {
    "garments": {
        "t_shirt": [(0, .15), (.3, 0), (.7, 0), (1, .15), (.9, .4), (.75, .3), (.75, 1), (.25, 1), (.25, .3), (.1, .4)],
        "dress": [(.35, 0), (.65, 0), (.62, .35), (1, 1), (0, 1), (.38, .35)],
    },
    "vehicles": {
        "car": [(0, .45), (.2, .45), (.3, .1), (.7, .1), (.8, .45), (1, .45), (1, .9), (0, .9)],
        "boat": [(0, .5), (.45, .5), (.45, 0), (.75, .45), (.55, .5), (1, .5), (.8, 1), (.2, 1)],
    },
    "products": {
        "bottle": [(.4, 0), (.6, 0), (.6, .25), (.8, .4), (.8, 1), (.2, 1), (.2, .4), (.4, .25)],
        "sports_ball": [(.5 + .5 * math.cos(a), .5 + .5 * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 24, endpoint=False)],
    },
}
METRICS = {"MSE": masked_mse, "PSNR": masked_psnr, "SSIM": masked_ssim}
#: metric -> whether higher is better
HIGHER_IS_BETTER = {"MSE": False, "PSNR": True, "SSIM": True}
TRAINED = "MoT + MATS"
CEILING = "ground truth at the editor's size"
UNTRAINED = "untrained (step 0)"
#: the trained variants: row name -> config overrides on top of the common ones
VARIANTS: dict[str, dict[str, Any]] = {
    TRAINED: {},
    "LoRA r{rank} (one expert)": {"model.num_experts": 1, "model.top_k": 1},
    "MoT, random routing": {"model.routing": "random"},
    "MoT, fine masks only": {"curriculum.boundaries": [1.0, 1.0]},
}
#: range of an object's width and height as a fraction of the photo's side
OBJECT_SIDE = (0.4, 0.7)
EXPERTS = 8
TOP_K = 2
#: issue 18's targets: the trained editor's masked MSE at most this fraction of each of these rows'
TARGET_RATIO = 0.5


# ---- data ---------------------------------------------------------------------------------------------------------


def _pattern(size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``size`` x ``size`` swatch of the object's own look: two random colours in a random pattern with a period
    of 0.12-0.25 of the photo's side (coarse, so that the editor's small halves can hold some of it)."""
    c1, c2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = rng.uniform(0.12, 0.25) * size
    kind = rng.integers(0, 4)
    if kind == 0:  # solid
        second = np.zeros((size, size), bool)
    elif kind == 1:  # stripes at a random angle
        angle = rng.uniform(0, math.pi)
        second = (xx * math.cos(angle) + yy * math.sin(angle)) // (period / 2) % 2 == 0
    elif kind == 2:  # checks
        second = (xx // period + yy // period) % 2 == 0
    else:  # dots
        second = (xx % period - period / 2) ** 2 + (yy % period - period / 2) ** 2 < (period / 3) ** 2
    return np.where(second[..., None], c2, c1).astype(np.uint8)


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A gradient between two random colours at a random angle, with pixel noise (the build's blur filter wants
    texture); drawn from the generator independently of the object."""
    a, b = rng.integers(0, 256, 3).astype(np.float32), rng.integers(0, 256, 3).astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    t = np.clip((xx * math.cos(angle) + yy * math.sin(angle)) + 0.5, 0, 1)[..., None]
    image = a * (1 - t) + b * t + rng.normal(0, 10, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def make_source(folder: Path, images: int, size: int, seed: int) -> Path:
    """``images`` PNGs with one object each, round-robin over the subcategories, and the ``manifest.jsonl`` that
    annotates them (polygon per object); returns the manifest."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    kinds = [(sub, outline) for subs in OUTLINES.values() for sub, outline in subs.items()]
    lines = []
    for i in range(images):
        sub, outline = kinds[i % len(kinds)]
        image = _background(size, rng)
        w, h = rng.uniform(*OBJECT_SIDE, 2) * size
        x0, y0 = rng.uniform(1, size - w - 1), rng.uniform(1, size - h - 1)
        mirror = rng.random() < 0.5
        polygon = [((1 - x if mirror else x) * w + x0, y * h + y0) for x, y in outline]
        canvas = Image.new("L", (size, size), 0)
        ImageDraw.Draw(canvas).polygon(polygon, fill=255)
        inside = np.asarray(canvas) > 0
        image[inside] = _pattern(size, rng)[inside]
        name = f"{i:05d}.png"
        Image.fromarray(image).save(folder / name)
        flat = [round(v, 2) for point in polygon for v in point]
        lines.append(json.dumps({"image": name, "objects": [{"category": sub, "polygon": [flat]}]}) + "\n")
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(lines))
    return manifest


def build(manifest: Path, out: Path, test_fraction: float, ref_size: int, seed: int) -> float:
    """``unieditkit build`` once per domain into ``out``, through the command's own entry point in this process (so
    the three builds share one Ray instance, stopped afterwards); returns seconds."""
    import ray

    from unieditkit.cli import main as unieditkit

    started = not ray.is_initialized()
    t0 = time.perf_counter()
    try:
        for domain in OUTLINES:
            argv = ["build", "--domain", domain, "--source", f"manifest:{manifest}", "--out", str(out),
                    "--models", "none", "--splits", f"{1 - test_fraction},0,{test_fraction}",
                    "--ref-size", str(ref_size), "--seed", str(seed), "--no-progress"]
            status = unieditkit(argv)
            if status:
                raise RuntimeError(f"unieditkit {' '.join(argv)} exited with {status}")
    finally:
        if started:
            ray.shutdown()
    return time.perf_counter() - t0


# ---- training and editing -------------------------------------------------------------------------------------------


@dataclass
class Settings:
    image_size: int
    patch_size: int
    dim: int
    depth: int
    heads: int
    experts: int
    rank: int
    top_k: int
    steps: int
    batch_size: int
    lr: float
    warmup: int
    seed: int

    def overrides(self, data: Path, run_dir: Path) -> dict[str, Any]:
        """The dotted config keys every variant shares."""
        return {
            "model.image_size": self.image_size, "model.patch_size": self.patch_size, "model.dim": self.dim, "model.depth": self.depth,
            "model.heads": self.heads, "model.num_experts": self.experts, "model.rank": self.rank,
            "model.alpha": float(self.rank), "model.top_k": self.top_k,
            "data.root": str(data), "data.num_workers": 0,
            "optim.lr": self.lr, "optim.warmup_steps": self.warmup, "optim.min_lr_ratio": 0.0,
            "train.run_dir": str(run_dir), "train.max_steps": self.steps, "train.batch_size": self.batch_size,
            "train.save_every": self.steps, "train.preview_every": self.steps + 1, "train.log_every": max(1, self.steps // 20),
            "train.seed": self.seed, "train.tensorboard": False, "train.progress": False,
        }


def variant_overrides(name: str, settings: Settings) -> dict[str, Any]:
    extra = dict(VARIANTS[name])
    if extra.get("model.num_experts") == 1:  # one LoRA of the MoT's active rank per sample
        extra["model.rank"] = settings.rank * settings.top_k
        extra["model.alpha"] = float(settings.rank * settings.top_k)
    return extra


def row_name(name: str, active_rank: int) -> str:
    return name.format(rank=active_rank)


def train(name: str, settings: Settings, data: Path, run_dir: Path, extra: dict[str, Any] | None = None) -> dict:
    """Train one variant (``extra``: its overrides, by default ``VARIANTS[name]``'s) into ``run_dir``; returns its
    time, its steps and its loss over the last logged window (the last twentieth of the run)."""
    from unieditkit.training.config import load_config
    from unieditkit.training.train import run

    cfg = load_config(None, settings.overrides(data, run_dir) | (variant_overrides(name, settings) if extra is None else extra))
    t0 = time.perf_counter()
    run(cfg, overwrite=True)
    seconds = time.perf_counter() - t0
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    last = [r for r in records if "loss" in r][-1]
    return {"seconds": seconds, "steps": last["step"], "last_loss": last["loss"]}


def predict(run_dir: Path | None, settings: Settings, data: Path, pred: Path, sample_steps: int) -> None:
    """Every test sample x mask variant through ``unieditkit edit``'s batch path; ``run_dir`` None: the same
    architecture untrained (the MoT + MATS run's config at step 0)."""
    import torch

    from unieditkit.training.backbones.base import make_backend
    from unieditkit.training.config import load_config
    from unieditkit.training.edit import LoadedRun, edit_split, load_run

    if run_dir is None:
        cfg = load_config(None, settings.overrides(data, pred.parent / "untrained"))
        backend = make_backend(cfg, torch.device("cpu"))
        backend.module.eval()
        loaded = LoadedRun(cfg, backend, 0, torch.device("cpu"), pred.parent / "untrained")
    else:
        loaded = load_run(run_dir, "latest", "cpu")
    edit_split(loaded, data, "test", "", list(MASK_VARIANTS), pred, 16, sample_steps, settings.seed)


# ---- scoring --------------------------------------------------------------------------------------------------------


Table = dict[str, dict[str, dict[str, float]]]


def round_trip(target: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
    """The ground truth through the editor's own frame: letterboxed to ``size`` as training sees it, mapped back
    and composited as ``unieditkit edit`` does. A perfect editor of this size scores this, so it is the ceiling
    that the editor's resolution alone allows."""
    from unieditkit.training.data import GREY, letterbox
    from unieditkit.training.edit import compose

    small = np.asarray(letterbox(Image.fromarray(target), size, GREY, Image.BICUBIC))
    return np.asarray(compose(small, Image.fromarray(target), Image.fromarray(mask.astype(np.uint8) * 255)))


def score(data: Path, predictions: dict[str, Path], image_size: int) -> tuple[Table, dict[str, int]]:
    """``{row: {variant: {metric: mean over test samples}}}`` for every editor with predictions, both baselines
    and the ceiling (:func:`round_trip` at ``image_size``), on the same samples and masks, and the test samples
    per domain."""
    from unieditkit.evaluate import composite, find_prediction, held_out

    per: dict[str, dict[str, dict[str, list[float]]]] = {}
    domains: dict[str, int] = {}
    for sample in held_out(data, "test", ""):
        domains[sample.domain] = domains.get(sample.domain, 0) + 1
        for variant in MASK_VARIANTS:
            mask = sample.masks[variant]
            edits = {name: composite(find_prediction(pred, sample.key, variant), sample, mask)
                     for name, pred in predictions.items()}
            edits |= {name: fill(sample.target, mask, sample.ref, sample.ref_mask) for name, fill in BASELINES.items()}
            edits[CEILING] = round_trip(sample.target, mask, image_size)
            for name, edit in edits.items():
                cell = per.setdefault(name, {}).setdefault(variant, {m: [] for m in METRICS})
                for metric, fn in METRICS.items():
                    cell[metric].append(fn(edit, sample.target, mask))
    table = {name: {v: {m: float(np.mean(values)) for m, values in cells.items()} for v, cells in variants.items()}
             for name, variants in per.items()}
    return table, domains


def markdown(table: Table) -> str:
    columns = [(m, v) for m in METRICS for v in MASK_VARIANTS]
    arrows = {m: "↑" if HIGHER_IS_BETTER[m] else "↓" for m in METRICS}
    lines = ["| editor | " + " | ".join(f"{m} {arrows[m]} {v}" for m, v in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for name, cells in table.items():
        values = [cells[v][m] for m, v in columns]
        lines.append(f"| {name} | " + " | ".join(_fmt(m, x) for (m, _), x in zip(columns, values)) + " |")
    return "\n".join(lines)


def _fmt(metric: str, value: float) -> str:
    return f"{value:.4f}" if metric in ("MSE", "SSIM") else f"{value:.2f}"


def mse_ratios(table: Table) -> dict[str, dict[str, float]]:
    """The trained editor's masked MSE over the untrained editor's and the mean-fill baseline's, per variant."""
    return {other: {v: table[TRAINED][v]["MSE"] / table[other][v]["MSE"] for v in MASK_VARIANTS}
            for other in (UNTRAINED, "mean-fill")}


# ---- main -----------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for learning.md and learning.json")
    p.add_argument("--work", type=Path, help="keep the photos, the build, the runs and the predictions here "
                                              "(default: a temporary folder, removed at the end)")
    p.add_argument("--quick", action="store_true", help="a plumbing check of every step in about a minute: "
                   f"{QUICK}; says nothing about quality")
    data = p.add_argument_group("data")
    data.add_argument("--images", type=int, default=1200, help="synthetic photos, over all domains")
    data.add_argument("--photo-size", type=int, default=64, help="side of each photo in pixels")
    data.add_argument("--test-fraction", type=float, default=0.1, help="share of the photos the build puts in test")
    model = p.add_argument_group("editor (the MoT variants: 8 experts, top-2)")
    model.add_argument("--image-size", type=int, default=16, help="model.image_size: pixels per half")
    model.add_argument("--patch-size", type=int, default=2)
    model.add_argument("--dim", type=int, default=64)
    model.add_argument("--depth", type=int, default=4)
    model.add_argument("--heads", type=int, default=4)
    model.add_argument("--rank", type=int, default=8, help="expert rank; the one-LoRA ablation gets rank x top-k")
    run = p.add_argument_group("training and sampling (every variant alike)")
    run.add_argument("--steps", type=int, default=1200, help="optimizer steps per trained variant")
    run.add_argument("--batch-size", type=int, default=8)
    run.add_argument("--lr", type=float, default=2e-3)
    run.add_argument("--sample-steps", type=int, default=8, help="Euler steps per prediction (`edit --steps`)")
    run.add_argument("--seed", type=int, default=0, help="photos, build, initial weights, batches and sampling")
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK_ARGS.items():
            setattr(args, key, value)
    return args


#: what ``--quick`` sets
QUICK_ARGS = {"images": 60, "test_fraction": 0.2, "dim": 32, "depth": 1, "heads": 2, "rank": 2, "steps": 3,
              "batch_size": 4, "sample_steps": 2}
QUICK = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in QUICK_ARGS.items())


def settings_of(args: argparse.Namespace) -> Settings:
    return Settings(image_size=args.image_size, patch_size=args.patch_size, dim=args.dim, depth=args.depth,
                    heads=args.heads, experts=EXPERTS, rank=args.rank, top_k=TOP_K, steps=args.steps,
                    batch_size=args.batch_size, lr=args.lr, warmup=max(1, args.steps // 20), seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    settings = settings_of(args)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_learning_") as tmp:
        work = args.work or Path(tmp)
        manifest = make_source(work / "photos", args.images, args.photo_size, args.seed)
        data = work / "data"
        build_s = build(manifest, data, args.test_fraction, args.photo_size, args.seed)
        runs: dict[str, dict] = {}
        predictions = {UNTRAINED: work / "pred" / "untrained"}
        t = time.perf_counter()
        predict(None, settings, data, predictions[UNTRAINED], args.sample_steps)
        runs[UNTRAINED] = {"steps": 0, "edit_seconds": time.perf_counter() - t}
        for name in VARIANTS:
            row = row_name(name, args.rank * TOP_K)
            slug = re.sub(r"[^A-Za-z0-9]+", "-", row).strip("-")
            run_dir = work / "runs" / slug
            info = train(name, settings, data, run_dir)
            predictions[row] = work / "pred" / slug
            t = time.perf_counter()
            predict(run_dir, settings, data, predictions[row], args.sample_steps)
            runs[row] = info | {"edit_seconds": time.perf_counter() - t}
            print(f"{row}: trained {info['steps']} steps in {info['seconds']:.0f} s, last loss {info['last_loss']:.4f}",
                  flush=True)
        table, test_samples = score(data, predictions, args.image_size)
    table = {name: table[name] for name in [*predictions, *BASELINES, CEILING]}
    total = time.perf_counter() - t0
    ratios = mse_ratios(table)
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
               f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    header = (f"{args.images} photos of {args.photo_size} px, {len(test_samples)} domains, test samples "
              f"{sum(test_samples.values())} ({', '.join(f'{d} {n}' for d, n in sorted(test_samples.items()))}); "
              f"editor {args.image_size} px per half, patch {args.patch_size}, dim {args.dim}, depth {args.depth}, "
              f"{EXPERTS} experts of rank {args.rank}, top-{TOP_K}; {args.steps} steps x batch {args.batch_size}, "
              f"lr {args.lr}; {args.sample_steps} sampling steps; seed {args.seed}"
              f"{' (--quick: ' + QUICK + ')' if args.quick else ''}\n"
              f"build {build_s:.0f} s, total {total:.0f} s; {machine}")
    verdict = [f"{TRAINED} MSE / {other} MSE: " + ", ".join(f"{v} {r:.2f}x" for v, r in by.items())
               + f" (target <= {TARGET_RATIO}x)" for other, by in ratios.items()]
    text = "\n".join([header, "", markdown(table), "", *verdict])
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "learning.md").write_text(text + "\n")
    (args.out / "learning.json").write_text(json.dumps({
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine, "build_seconds": build_s, "total_seconds": total, "runs": runs,
        "test_samples": test_samples, "metrics": list(METRICS), "higher_is_better": HIGHER_IS_BETTER,
        "variants": list(MASK_VARIANTS), "table": table, "mse_ratios": ratios, "target_ratio": TARGET_RATIO,
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
