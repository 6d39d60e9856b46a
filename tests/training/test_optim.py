"""The optimizer choice: 8-bit moments for MoT on FLUX (the memory target of MoT against a LoRA), fp32 otherwise."""

from __future__ import annotations

import pytest
import torch

from unieditkit.training.config import ModelConfig, OptimConfig, load_config
from unieditkit.training.model.mot import MoTLinear, Routing
from unieditkit.training.runtime.optim import build_optimizer, optimizer_kind, optimizer_note, tensor_bytes
from unieditkit.errors import UserError


def test_auto_resolves_per_backbone_and_says_so():
    auto = OptimConfig()
    assert optimizer_kind(auto, ModelConfig(backbone="flux-fill")) == "adamw8bit"
    assert optimizer_kind(auto, ModelConfig(backbone="builtin")) == "adamw"
    assert optimizer_kind(OptimConfig(optimizer="adamw"), ModelConfig(backbone="flux-fill")) == "adamw"
    assert optimizer_note(auto, ModelConfig(backbone="flux-fill")).startswith("optim.optimizer auto -> adamw8bit")


def test_unknown_optimizer_is_refused(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("optim: {optimizer: sgd}\n")
    with pytest.raises(UserError, match="optim.optimizer"):
        load_config(p)


@pytest.mark.parametrize("kind, bytes_per_moment", [("adamw8bit", 1), ("adamw", 4)])
def test_expert_moments_take_the_bytes_the_kind_promises_and_the_step_trains(kind, bytes_per_moment):
    torch.manual_seed(0)
    layer = MoTLinear(torch.nn.Linear(256, 256), num_experts=8, rank=16, alpha=16.0, dtype=torch.float32)
    layer.routing = Routing(torch.tensor([[0, 3]]), torch.tensor([[0.6, 0.4]], requires_grad=True))
    opt = build_optimizer([layer.lora_A, layer.lora_B], OptimConfig(optimizer=kind, lr=1e-2), ModelConfig())
    x, target = torch.randn(1, 32, 256), torch.randn(1, 32, 256)
    losses = []
    for _ in range(20):
        loss = torch.nn.functional.mse_loss(layer(x), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0] * 0.9
    state = opt.state[layer.lora_A]
    numel = layer.lora_A.numel()
    moments = tensor_bytes(state["exp_avg"]) + tensor_bytes(state["exp_avg_sq"])
    # 8-bit: + one fp32 scale per 256 values and a 256-entry code book per moment tensor
    assert 2 * bytes_per_moment * numel <= moments <= 2 * bytes_per_moment * numel * 1.05
    assert layer.lora_A.dtype == torch.float32  # master weights stay fp32 either way
