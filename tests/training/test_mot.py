"""MoT layers and Anchor-Guided Routing: exact maths, gradients only where routed, frozen backbone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unieditkit.training.model.anchors import Anchors
from unieditkit.training.config import ModelConfig
from unieditkit.training.backbones.builtin.editor import Editor
from unieditkit.training.model.mot import MoTLinear, Routing, apply_mot, mot_layers, set_routing
from unieditkit.training.model.routing import AnchorGuidedRouter, balance_loss, home_expert, secondary_expert
from unieditkit.errors import UserError

ANCHORS = Anchors(tuple(f"d{i}" for i in range(8)), tuple(s // 4 for s in range(32)))


def _route(router, domain: torch.Tensor, subcategory: torch.Tensor, tokens: torch.Tensor):
    """The anchor router reads the embedded tokens only; ``raw`` is what the random ablation reads."""
    return router(domain, subcategory, raw=tokens, embedded=tokens)


def _randomise_experts(model: nn.Module) -> None:
    """B starts at zero (the layer equals the backbone); give it values so gradients reach A as well."""
    gen = torch.Generator().manual_seed(1)
    for layer in mot_layers(model):
        layer.lora_B.data = torch.randn(layer.lora_B.shape, generator=gen) * 0.1


def test_fresh_mot_layer_equals_backbone():
    torch.manual_seed(0)
    base = nn.Linear(8, 6)
    x = torch.randn(3, 5, 8)
    expected = base(x)
    layer = MoTLinear(base, num_experts=4, rank=2, alpha=4.0)
    layer.routing = Routing(torch.tensor([[0, 1], [2, 3], [1, 0]]), torch.rand(3, 2))
    torch.testing.assert_close(layer(x), expected)


def test_mot_layer_matches_per_sample_reference():
    torch.manual_seed(0)
    layer = MoTLinear(nn.Linear(8, 6), num_experts=5, rank=3, alpha=6.0)
    layer.lora_B.data.normal_()
    idx = torch.tensor([[4, 1], [0, 2]])
    w = torch.tensor([[0.7, 0.2], [0.5, 0.4]])
    layer.routing = Routing(idx, w)
    x = torch.randn(2, 7, 8)
    expected = layer.base(x).clone()
    for b in range(2):
        for j in range(2):
            e = idx[b, j]
            expected[b] += w[b, j] * 2.0 * (x[b] @ layer.lora_A[e].T @ layer.lora_B[e])
    torch.testing.assert_close(layer(x), expected)


def test_without_routing_the_layer_is_the_backbone():
    layer = MoTLinear(nn.Linear(4, 4), num_experts=2, rank=2, alpha=2.0)
    layer.lora_B.data.fill_(1.0)
    x = torch.randn(2, 4)
    torch.testing.assert_close(layer(x), layer.base(x))


def test_any_transformer_only_routed_experts_get_gradients_backbone_frozen():
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    vit = ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             image_size=16, patch_size=8))
    names = apply_mot(
        vit,
        [r"encoder\.layer\.\d+\.attention\.attention\.(query|key|value)", r"encoder\.layer\.\d+\.attention\.output\.dense",
         r"encoder\.layer\.\d+\.(intermediate|output)\.dense"],
        num_experts=6, rank=2, alpha=2.0,
    )
    assert len(names) == 2 * 6  # q, k, v, o, ffn in, ffn out per layer
    _randomise_experts(vit)
    layers = mot_layers(vit)
    set_routing(layers, Routing(torch.tensor([[0, 3], [5, 3]]), torch.tensor([[0.6, 0.3], [0.5, 0.5]])))
    vit(pixel_values=torch.randn(2, 3, 16, 16)).last_hidden_state.pow(2).mean().backward()
    for layer in layers:
        assert not layer.base.weight.requires_grad and layer.base.weight.grad is None
        for grad in (layer.lora_A.grad, layer.lora_B.grad):
            touched = {e for e in range(6) if grad[e].abs().sum() > 0}
            assert touched == {0, 3, 5}


def test_apply_mot_puts_experts_in_attention_and_ffn_of_every_block():
    editor = Editor(ModelConfig(image_size=16, dim=32, depth=3, heads=2, num_experts=4, rank=2), ANCHORS)
    expected = {f"blocks.{i}.{p}" for i in range(3) for p in ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.fc1", "mlp.fc2")}
    assert set(editor.mot_names) == expected


def test_pattern_that_matches_nothing_is_an_error():
    model = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(UserError, match=r"'attn\\.qq' matches no nn.Linear"):
        apply_mot(model, [r"attn\.qq"], 2, 2, 2.0)


def test_apply_mot_twice_does_not_nest():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    assert apply_mot(model, [r".*"], 2, 1, 1.0) == ["0", "2"]
    with pytest.raises(UserError, match="matches no nn.Linear"):
        apply_mot(model, [r".*"], 2, 1, 1.0)


@pytest.mark.parametrize("num_experts", [8, 4, 16])
def test_routing_follows_the_anchor(num_experts):
    router = AnchorGuidedRouter(num_experts, 2, 8, 32, feature_dim=16, subcategory_domains=list(ANCHORS.subcategory_domains))
    domain = torch.arange(8)
    sub = domain * 4 + 1
    out = _route(router, domain, sub, torch.randn(8, 5, 16))
    assert out.routing.indices[:, 0].tolist() == [home_expert(d, num_experts) for d in range(8)]
    assert out.routing.indices[:, 1].tolist() == [secondary_expert(d, 4 * d + 1, num_experts) for d in range(8)]
    assert all(secondary_expert(d, s, num_experts) != home_expert(d, num_experts) for d in range(8) for s in range(32))


def test_unknown_subcategory_falls_back_to_the_domain_prior():
    router = AnchorGuidedRouter(8, 1, 8, 32, feature_dim=4, subcategory_domains=list(ANCHORS.subcategory_domains))
    out = _route(router, torch.tensor([3, 3]), torch.tensor([-1, 999]), torch.zeros(2, 5, 4))
    assert out.routing.indices[:, 0].tolist() == [3, 3]


def test_learned_gate_receives_gradient_and_chooses_the_free_slot():
    router = AnchorGuidedRouter(4, 2, 2, 4, feature_dim=3, prior_scale=1.0, subcategory_domains=[0, 0, 1, 1])
    tokens = torch.tensor([[[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]]])
    out = _route(router, torch.tensor([0]), torch.tensor([0]), tokens)
    assert out.routing.indices.tolist() == [[0, 1]]
    out.routing.weights.sum().backward()
    assert router.gate.weight.grad.abs().sum() > 0 and router.subcategory_bias.weight.grad.abs().sum() > 0
    with torch.no_grad():
        router.subcategory_bias.weight[0, 2] = 5.0
    assert _route(router, torch.tensor([0]), torch.tensor([0]), tokens).routing.indices.tolist() == [[0, 2]]


def test_balance_loss_is_one_when_uniform_and_k_when_collapsed():
    uniform = torch.full((4, 4), 0.25)
    assert balance_loss(uniform, torch.tensor([[0], [1], [2], [3]])).item() == pytest.approx(1.0)
    collapsed = torch.tensor([[1.0, 0, 0, 0]] * 4)
    assert balance_loss(collapsed, torch.zeros(4, 1, dtype=torch.long)).item() == pytest.approx(4.0)


def test_editor_sets_one_routing_on_all_layers_per_forward():
    torch.manual_seed(0)
    cfg = ModelConfig(image_size=16, patch_size=4, dim=32, depth=2, heads=2, num_experts=8, rank=2, top_k=2)
    editor = Editor(cfg, ANCHORS)
    x = torch.randn(3, 3, 16, 16)
    mask = torch.ones(3, 1, 16, 16)
    out = editor(x, torch.rand(3), x, x, mask, torch.tensor([0, 5, 7]), torch.tensor([1, 21, 29]))
    assert out.velocity.shape == (3, 3, 16, 16)
    assert out.router.routing.indices[:, 0].tolist() == [0, 5, 7]
    assert all(layer.routing is out.router.routing for layer in mot_layers(editor))


def test_frozen_backbone_leaves_only_experts_and_router_trainable():
    cfg = ModelConfig(image_size=16, dim=32, depth=1, heads=2, num_experts=2, rank=2, train_backbone=False,
                      init_checkpoint="unused.pt")
    editor = Editor(cfg, ANCHORS)
    trainable = {n for n, p in editor.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n or n.startswith("router.") for n in trainable)
