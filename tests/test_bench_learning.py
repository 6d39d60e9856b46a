"""bench/bench_learning.py runs end to end on a tiny budget: it makes its photos, builds them with the real build,
trains every variant, edits the test split and writes one table with every row and column.

Whether training beats the untrained editor and the baselines is the benchmark's own finding at its full budget
(BENCHMARKS.md), never asserted here: three steps of a one-block editor learn nothing.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import bench_learning  # noqa: E402

from unieditkit.baselines import BASELINES  # noqa: E402
from unieditkit.format import MASK_VARIANTS  # noqa: E402


def test_learning_bench_writes_every_row_and_column(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "out"
    assert bench_learning.main(["--quick", "--out", str(out), "--work", str(tmp_path / "work")]) == 0

    result = json.loads((out / "learning.json").read_text())
    active_rank = result["args"]["rank"] * bench_learning.TOP_K
    trained = [bench_learning.row_name(name, active_rank) for name in bench_learning.VARIANTS]
    rows = [bench_learning.UNTRAINED, *trained, *BASELINES, bench_learning.CEILING]
    assert list(result["table"]) == rows
    assert len(set(rows)) == len(rows)
    for row in rows:
        for variant in MASK_VARIANTS:
            cell = result["table"][row][variant]
            assert set(cell) == set(bench_learning.METRICS)
            assert all(math.isfinite(v) for v in cell.values()), (row, variant, cell)
    # the data really is multi-domain and held out: every domain has test samples, scored with every mask
    assert set(result["test_samples"]) == set(bench_learning.OUTLINES)
    assert all(n > 0 for n in result["test_samples"].values())
    for other in (bench_learning.UNTRAINED, "mean-fill"):
        assert set(result["mse_ratios"][other]) == set(MASK_VARIANTS)
    assert result["runs"][bench_learning.UNTRAINED]["steps"] == 0
    assert all(result["runs"][row]["steps"] == 3 and math.isfinite(result["runs"][row]["last_loss"]) for row in trained)

    table = (out / "learning.md").read_text()
    for row in rows:
        assert f"| {row} |" in table
    header = next(line for line in table.splitlines() if line.startswith("| editor |"))
    assert header.count("|") == 2 + len(bench_learning.METRICS) * len(MASK_VARIANTS)


def test_the_ceiling_is_the_ground_truth_changed_only_inside_the_mask_and_only_by_the_editors_size():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    mask = np.zeros((48, 64), bool)
    mask[10:30, 20:50] = True
    small = bench_learning.round_trip(target, mask, 16)
    assert (small[~mask] == target[~mask]).all()
    assert np.abs(small[mask].astype(int) - target[mask]).mean() > 10  # noise does not survive 16 px
    same = bench_learning.round_trip(target, mask, 64)  # the editor's frame at the photo's own size
    assert np.abs(same.astype(int) - target).max() <= 1
