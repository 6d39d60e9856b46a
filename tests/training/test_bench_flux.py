"""The FLUX benchmarks run: bench/gpu_flux.py's code path on a tiny FLUX.1-Fill-shaped transformer on the CPU,
bench/bench_mot.py's MoT-vs-LoRA comparison, both on real diffusers / peft classes, and bench/bench_flux_load.py
on the tiny snapshot.

They check that the scripts work and compare like with like (the LoRA covers exactly the linears MoT routes);
the numbers themselves are in BENCHMARKS.md, never asserted here.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import bench_flux_load  # noqa: E402
import bench_mot  # noqa: E402
import gpu_flux  # noqa: E402


def test_gpu_script_runs_mot_and_the_lora_baseline_default_and_like_for_like_on_a_tiny_config(tmp_path):
    out = tmp_path / "gpu.json"
    argv = ["--tiny", "--device", "cpu", "--baseline", "--width", "64", "--height", "32", "--text-tokens", "8",
            "--warmup", "1", "--steps", "2", "--eager", "--json", str(out)]
    assert gpu_flux.main(argv) == 0
    result = json.loads(out.read_text())
    rows = {r["variant"]: r for r in result["rows"]}
    assert {v: r["optimizer"] for v, r in rows.items()} == {
        "lora-r32": "adamw", "mot": "adamw8bit", "lora-r32-8bit": "adamw8bit", "mot-adamw": "adamw"}
    assert {r["image_tokens"] for r in rows.values()} == {(64 // 16) * (32 // 16)}
    assert all(math.isfinite(x) for r in rows.values() for x in r["losses"]) and len(rows["mot"]["losses"]) == 3
    # 8 experts of rank 16 on the same linears as one LoRA of rank 32: 4x its weights, plus the router; the
    # optimizer changes the moments, never the trained weights
    assert rows["lora-r32"]["trainable_params"] == rows["lora-r32-8bit"]["trainable_params"]
    assert rows["mot"]["trainable_params"] == rows["mot-adamw"]["trainable_params"]
    assert rows["mot"]["trainable_params"] - rows["mot"]["router_params"] == 4 * rows["lora-r32"]["trainable_params"]
    pairs = [(c["pair"], c["mot"], c["lora"]) for c in result["comparisons"]]
    assert pairs == [("default", "mot", "lora-r32"), ("like-for-like", "mot-adamw", "lora-r32"),
                     ("like-for-like", "mot", "lora-r32-8bit")]
    for c in result["comparisons"]:
        assert (c["mot_optimizer"] == c["lora_optimizer"]) == (c["pair"] == "like-for-like")
        assert c["time_x"] == rows[c["mot"]]["step_s_median"] / rows[c["lora"]]["step_s_median"] > 0
        assert c["memory_x"] is None  # peak memory is measured on a GPU only


def test_load_benchmark_measures_a_fresh_process_loading_the_snapshot(tiny_flux, tmp_path):
    from unieditkit.training.backbones.flux.adapter import load_flux_fill_transformer

    out = tmp_path / "load.json"
    assert bench_flux_load.main(["--snapshot", str(tiny_flux), "--repeats", "1", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    model = load_flux_fill_transformer(tiny_flux, gpu_flux.torch.bfloat16)
    assert row["transformer_bytes"] == sum(p.numel() * p.element_size() for p in model.parameters())
    assert row["device"] == "cpu" and row["peak_rss_median"] >= row["rss_before_median"] > 2**20
    assert row["ratio"] == row["peak_rss_median"] / row["transformer_bytes"]


def test_gpu_script_refuses_cuda_without_a_gpu(capsys):
    if gpu_flux.torch.cuda.is_available():
        pytest.skip("a GPU is present: the error path cannot be reached")
    assert gpu_flux.main([]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_mot_vs_lora_benchmark_runs_side_by_side(tmp_path):
    out = tmp_path / "bench.json"
    argv = ["--dim", "32", "--heads", "2", "--double", "1", "--single", "1", "--width", "64", "--height", "32",
            "--text-tokens", "8", "--steps", "1", "--rounds", "1", "--eager", "--json", str(out)]
    assert bench_mot.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["variant"] for r in rows] == ["lora-r32", "mot", "mot-adamw", "lora-r32-8bit"]
    state = {r["variant"]: r["state_mib"] for r in rows}
    # 8-bit moments are counted by their real bytes: 6 bytes less per expert weight than fp32 AdamW's two moments
    saved = (state["mot-adamw"] - state["mot"]) * 2**20
    assert 0.9 * 6 * (rows[1]["trainable_params"] - 8 * 210) < saved < 6 * rows[1]["trainable_params"]
    assert rows[0]["time_x"] == 1.0 and rows[0]["memory_x"] == 1.0
    assert all(r["peak_mib"] > r["state_mib"] > 0 for r in rows)
