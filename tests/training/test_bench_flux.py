"""The FLUX benchmarks run: bench/gpu_flux.py's code path on a tiny FLUX.1-Fill-shaped transformer on the CPU, and
bench/bench_mot.py's MoT-vs-LoRA comparison, both on real diffusers / peft classes.

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

import bench_mot  # noqa: E402
import gpu_flux  # noqa: E402


def test_gpu_script_runs_mot_and_the_lora_baseline_on_a_tiny_config(tmp_path):
    out = tmp_path / "gpu.json"
    argv = ["--tiny", "--device", "cpu", "--baseline", "--width", "64", "--height", "32", "--text-tokens", "8",
            "--warmup", "1", "--steps", "2", "--eager", "--json", str(out)]
    assert gpu_flux.main(argv) == 0
    result = json.loads(out.read_text())
    lora, mot = result["rows"]
    assert (lora["variant"], mot["variant"]) == ("lora-r32", "mot")
    assert lora["image_tokens"] == mot["image_tokens"] == (64 // 16) * (32 // 16)
    assert all(math.isfinite(x) for x in lora["losses"] + mot["losses"]) and len(mot["losses"]) == 3
    router = gpu_flux.TINY["num_attention_heads"] * gpu_flux.TINY["attention_head_dim"]  # gate input width
    router_params = 8 * (router + 1) + 2 * router + 8 * 210  # gate, its LayerNorm, subcategory bias
    # 8 experts of rank 16 on the same linears as one LoRA of rank 32: exactly 4x its weights, plus the router
    assert mot["trainable_params"] - router_params == 4 * lora["trainable_params"]
    assert mot["time_x"] > 0


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
