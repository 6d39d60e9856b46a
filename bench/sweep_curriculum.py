"""Where should the MATS stages begin? The default ``curriculum.boundaries``, chosen on data the learning bench never scores.

    python bench/sweep_curriculum.py --out DIR                  # 6 schedules, seed 1 (about 19 min, 2 cores)
    python bench/sweep_curriculum.py --out DIR --boundaries 0.3,0.7 0.2,0.5

The paper gives the order of the stages (fine -> rough -> box), not where each begins. This sweep trains the
learning bench's editor (``bench_learning.py``: same synthetic data, size, steps and learning rate) once per
schedule and scores masked MSE / SSIM on the test split with fine, rough and box masks. It draws its photos with
``--seed 1`` by default, so its test split is a different draw from the one ``bench_learning.py`` (seed 0)
reports: the schedule is chosen here, measured there. Writes ``sweep.md`` and ``sweep.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_learning as bench  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for sweep.md and sweep.json")
    p.add_argument("--boundaries", nargs="+", default=["0.3,0.7", "0.2,0.5", "0.1,0.4", "0.1,0.25", "0.05,0.15", "0,0"],
                   help="schedules to try, each 'ROUGH_START,BOX_START' as fractions of the run")
    p.add_argument("--seed", type=int, default=1, help="photos, build, weights, batches and sampling (the learning "
                   "bench reports seed 0; keep this one different)")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--work", type=Path, help="keep the photos, build, runs and predictions here")
    p.add_argument("--quick", action="store_true", help="bench_learning.py's --quick budget: plumbing, not quality")
    args = p.parse_args(argv)
    try:
        args.schedules = [[float(x) for x in b.split(",")] for b in args.boundaries]
    except ValueError:
        p.error(f"--boundaries {' '.join(args.boundaries)}: give each as ROUGH_START,BOX_START, e.g. 0.3,0.7")
    if any(len(s) != 2 or not 0 <= s[0] <= s[1] <= 1 for s in args.schedules):
        p.error(f"--boundaries {' '.join(args.boundaries)}: each needs 0 <= ROUGH_START <= BOX_START <= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    learning = bench.parse_args(["--out", str(args.out), "--seed", str(args.seed), "--steps", str(args.steps),
                                 *(["--quick"] if args.quick else [])])
    settings = bench.settings_of(learning)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sweep_curriculum_") as tmp:
        work = args.work or Path(tmp)
        manifest = bench.make_source(work / "photos", learning.images, learning.photo_size, args.seed)
        data = work / "data"
        bench.build(manifest, data, learning.test_fraction, learning.photo_size, args.seed)
        predictions: dict[str, Path] = {}
        seconds: dict[str, float] = {}
        for rough_start, box_start in args.schedules:
            row = f"[{rough_start}, {box_start}]"
            run_dir = work / "runs" / f"{rough_start}-{box_start}"
            schedule = {"curriculum.boundaries": [rough_start, box_start]}
            seconds[row] = bench.train(row, settings, data, run_dir, schedule)["seconds"]
            predictions[row] = work / "pred" / run_dir.name
            bench.predict(run_dir, settings, data, predictions[row], learning.sample_steps)
            print(f"{row}: trained in {seconds[row]:.0f} s", flush=True)
        table, test_samples = bench.score(data, predictions, learning.image_size)
    table = {name: table[name] for name in [*predictions, *bench.BASELINES, bench.CEILING]}
    mean_mse = {name: float(np.mean([cells[v]["MSE"] for v in cells])) for name, cells in table.items()}
    best = min(predictions, key=lambda name: mean_mse[name])
    text = "\n".join([
        f"seed {args.seed}, {sum(test_samples.values())} test samples, {learning.steps} steps per schedule, "
        f"total {time.perf_counter() - t0:.0f} s",
        "", bench.markdown(table), "",
        "mean masked MSE over fine, rough and box: " + ", ".join(f"{n} {mean_mse[n]:.4f}" for n in predictions),
        f"lowest: {best}",
    ])
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.md").write_text(text + "\n")
    (args.out / "sweep.json").write_text(json.dumps({"seed": args.seed, "steps": learning.steps, "table": table,
                                                     "train_seconds": seconds, "mean_mse": mean_mse,
                                                     "lowest": best}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
