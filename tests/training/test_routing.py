"""What the router reads and guarantees: a gate that sees the reference's structure, not only its mean; a weight
floor for the home expert; and the random-routing ablation (untrained, anchor-blind, saved with the run)."""

from __future__ import annotations

import json
import pathlib

import pytest
import torch

from unieditkit.training.model.anchors import Anchors
from unieditkit.training.runtime.checkpoint import load_weights
from unieditkit.training.config import ModelConfig, load_config
from unieditkit.training.backbones.builtin.editor import Editor
from unieditkit.training.model.routing import AnchorGuidedRouter, RandomRouter
from unieditkit.training.train import run
from unieditkit.errors import UserError

ANCHORS = Anchors.from_taxonomy()
SMALL = dict(image_size=16, patch_size=4, dim=32, depth=1, heads=2, num_experts=8, rank=2, top_k=2)


def _split_and_flat(size: int) -> torch.Tensor:
    """Two references with the same mean patch: colour ``a`` left and ``b`` right (split on a patch boundary),
    and the flat average colour. The mean-pooled router could not tell them apart."""
    a, b = torch.tensor([0.8, -0.6, 0.2]), torch.tensor([-0.4, 0.6, -0.8])
    split = torch.empty(3, size, size)
    split[:, :, : size // 2] = a[:, None, None]
    split[:, :, size // 2 :] = b[:, None, None]
    flat = ((a + b) / 2)[:, None, None].expand(3, size, size)
    return torch.stack([split, flat])


def _capture(router: torch.nn.Module) -> dict:
    """Records what the router is given (``embedded``) and what its learned gate reads, during a real forward."""
    seen: dict = {}
    router.register_forward_pre_hook(lambda _m, _a, kw: seen.update(embedded=kw["embedded"].detach()),
                                     with_kwargs=True)
    router.gate.register_forward_hook(lambda _m, inputs, _o: seen.update(gate_input=inputs[0].detach()))
    return seen


def _editor_forward(editor: Editor, ref: torch.Tensor, domain: list[int], sub: list[int], t: float = 0.5,
                    seed: int = 0):
    n, size = ref.shape[0], ref.shape[-1]
    noise = torch.randn(ref.shape, generator=torch.Generator().manual_seed(seed))
    mask = torch.ones(n, 1, size, size)
    return editor(noise, torch.full((n,), t), ref, ref, mask, torch.tensor(domain), torch.tensor(sub))


def test_gate_sees_structure_that_the_mean_of_the_tokens_hides():
    torch.manual_seed(0)
    editor = Editor(ModelConfig(**SMALL), ANCHORS)
    seen = _capture(editor.router)
    _editor_forward(editor, _split_and_flat(16), [0, 0], [0, 0])
    mean = seen["embedded"].mean(dim=1)
    torch.testing.assert_close(mean[0], mean[1], atol=1e-5, rtol=0)  # the old gate input: identical
    gate = seen["gate_input"]
    assert (gate[0] - gate[1]).abs().max() > 0.1, gate  # the attention-pooled one: not


def test_flux_gate_sees_structure_that_the_mean_latent_hides(tiny_flux):
    from unieditkit.training.backbones.flux.adapter import FluxMoT, load_flux_fill_transformer

    torch.manual_seed(0)
    flux = FluxMoT(load_flux_fill_transformer(tiny_flux, torch.float32), ANCHORS, num_experts=4, rank=2)
    seen = _capture(flux.router)
    c_in = flux.transformer.x_embedder.in_features
    u, v = torch.randn(c_in), torch.randn(c_in)
    structured = torch.stack([u + v, u - v, u - v, u + v])  # four reference tokens whose mean latent is u
    ref_tokens = torch.stack([structured, u.expand(4, c_in)])
    flux.route(torch.tensor([0, 0]), torch.tensor([0, 0]), ref_tokens)
    mean = seen["embedded"].mean(dim=1)
    torch.testing.assert_close(mean[0], mean[1], atol=1e-5, rtol=0)
    gate = seen["gate_input"]
    assert (gate[0] - gate[1]).abs().max() > 0.1, gate


def test_at_initialisation_routing_is_the_anchor_alone_and_never_the_timestep():
    torch.manual_seed(0)
    editor = Editor(ModelConfig(**SMALL), ANCHORS)
    refs = torch.rand(4, 3, 16, 16) * 2 - 1
    first = _editor_forward(editor, refs, [0, 0, 0, 0], [1, 1, 1, 1], t=0.1, seed=1).router
    assert first.probs.unique(dim=0).shape[0] == 1  # four different references, one anchor: one routing
    with torch.no_grad():
        editor.router.gate.weight.normal_()  # a trained gate: the reference now matters, the timestep still not
    early = _editor_forward(editor, refs, [0, 0, 0, 0], [1, 1, 1, 1], t=0.1, seed=1).router
    late = _editor_forward(editor, refs, [0, 0, 0, 0], [1, 1, 1, 1], t=0.9, seed=2).router
    assert early.probs.unique(dim=0).shape[0] == 4
    assert torch.equal(early.probs, late.probs) and torch.equal(early.routing.indices, late.routing.indices)


@pytest.mark.parametrize("top_k", [1, 2])
def test_home_weight_never_falls_below_the_floor_and_the_gradient_still_flows(top_k):
    def route(floor: float, home_bias: float):
        torch.manual_seed(0)
        router = AnchorGuidedRouter(8, top_k, 8, 32, feature_dim=4, subcategory_domains=[s // 4 for s in range(32)],
                                    anchor_floor=floor)
        with torch.no_grad():
            router.subcategory_bias.weight[:, 3] = home_bias  # learned terms that turn against domain 3's home
        tokens = torch.randn(3, 5, 4)
        return router, router(torch.tensor([3, 3, 3]), torch.tensor([12, 13, 14]), raw=tokens, embedded=tokens)

    _, unfloored = route(0.0, -100.0)
    assert unfloored.routing.weights[:, 0].max() < 1e-30  # what the issue saw: an anchor in name only
    _, floored = route(0.25, -100.0)
    assert floored.routing.weights[:, 0].min() >= 0.25
    torch.testing.assert_close(floored.probs.sum(dim=1), torch.ones(3))  # the floor is a share, not extra mass
    router, out = route(0.25, -2.0)
    assert (out.routing.weights[:, 0] > 0.25).all()
    out.routing.weights.sum().backward()
    assert router.subcategory_bias.weight.grad[12:15, 3].abs().min() > 0  # the home weight above it is learned


@pytest.mark.parametrize("text, message", [
    ("model: {anchor_floor: 1.0}\n", r"model\.anchor_floor must be in \[0, 1\)"),
    ("model: {anchor_floor: -0.1}\n", r"model\.anchor_floor must be in \[0, 1\)"),
    ("model: {routing: hash}\n", "model.routing is 'hash'; use one of anchor, random"),
])
def test_routing_keys_are_checked(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_config(path)


def test_random_routing_is_untrained_anchor_blind_and_fixed_by_the_seed():
    def build(seed: int) -> Editor:
        torch.manual_seed(seed)
        return Editor(ModelConfig(**SMALL, routing="random"), ANCHORS)

    editor = build(3)
    assert isinstance(editor.router, RandomRouter) and not list(editor.router.parameters())
    assert {"router.query", "router.projection"} <= set(editor.state_dict())  # saved with every checkpoint
    assert not any(n.startswith("router.") for n, p in editor.named_parameters() if p.requires_grad)
    refs = torch.rand(6, 3, 16, 16) * 2 - 1
    one = _editor_forward(editor, refs, [0, 1, 2, 3, 4, 5], [0, 5, 9, 13, 17, 21]).router
    other = _editor_forward(editor, refs, [5, 4, 3, 2, 1, 0], [21, 17, 13, 9, 5, 0], t=0.9, seed=4).router
    assert torch.equal(one.routing.indices, other.routing.indices)  # neither the anchor nor the timestep counts
    assert (one.routing.indices[:, 0] != one.routing.indices[:, 1]).all()  # k distinct experts per sample
    assert (one.routing.weights == 0.5).all() and one.balance_loss.item() == 0.0
    assert not one.routing.weights.requires_grad and not one.balance_loss.requires_grad
    assert torch.equal(build(3).router.projection, editor.router.projection)
    assert not torch.equal(build(4).router.projection, editor.router.projection)
    colours = (torch.rand(64, 3, 1, 1) * 2 - 1).expand(64, 3, 16, 16)
    spread = _editor_forward(editor, colours, [0] * 64, [0] * 64).router.expert_load()
    assert (spread > 0).sum() >= 6, spread  # the reference decides, over most of the experts


TINY = """
model: {image_size: 16, patch_size: 4, dim: 32, depth: 1, heads: 2, num_experts: 8, rank: 2, top_k: 2}
data: {num_workers: 0, shuffle_buffer: 8, batches_per_epoch: 4}
optim: {warmup_steps: 2}
train: {batch_size: 3, save_every: 3, log_every: 1, preview_every: 100, max_steps: 3, progress: false,
        tensorboard: false}
"""


def _run(tmp_path: pathlib.Path, shards: pathlib.Path, name: str, routing: str) -> tuple[pathlib.Path, dict]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(TINY)
    run_dir = tmp_path / name
    cfg = load_config(path, {"data.root": str(shards), "train.run_dir": str(run_dir), "model.routing": routing})
    assert run(cfg) == 3
    notes = [json.loads(line).get("note", "") for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return run_dir, {"notes": notes, "cfg": cfg}


def test_random_run_is_announced_keeps_its_routing_and_loads_for_editing(two_domain_shards, tmp_path):
    run_dir, info = _run(tmp_path, two_domain_shards, "random", "random")
    assert any(n.startswith("model.routing: random (ablation)") and "no balance loss" in n for n in info["notes"])
    ckpt = run_dir / "checkpoints" / "step_00000003.pt"
    saved = torch.load(ckpt, weights_only=True)["model"]
    torch.manual_seed(info["cfg"].train.seed)  # as make_backend builds the run's model
    start = Editor(info["cfg"].model, ANCHORS)
    assert torch.equal(saved["router.projection"], start.router.projection)  # three steps later: untouched
    fresh = Editor(ModelConfig(**{**SMALL, "routing": "random"}), ANCHORS)  # another seed's random gate ...
    assert not torch.equal(fresh.router.projection, saved["router.projection"])
    assert load_weights(ckpt, fresh) == 3
    assert torch.equal(fresh.router.projection, saved["router.projection"])  # ... replaced by the run's own


def test_anchor_run_is_announced_and_a_checkpoint_with_the_old_router_is_one_clear_line(two_domain_shards, tmp_path):
    run_dir, info = _run(tmp_path, two_domain_shards, "anchor", "anchor")
    assert any(n.startswith("model.routing: anchor") and "model.anchor_floor 0.25" in n for n in info["notes"])
    ckpt = torch.load(run_dir / "checkpoints" / "step_00000003.pt", weights_only=True)
    d, k = SMALL["dim"], SMALL["num_experts"]  # the router before attention pooling: LayerNorm(mean) -> Linear
    old = {n: t for n, t in ckpt["model"].items() if n not in ("router.query", "router.gate.weight")}
    old.update({"router.norm.weight": torch.ones(d), "router.norm.bias": torch.zeros(d),
                "router.gate.weight": torch.zeros(k, d)})
    torch.save({**ckpt, "model": old}, run_dir / "old.pt")
    editor = Editor(info["cfg"].model, ANCHORS)
    with pytest.raises(UserError, match="earlier unieditkit whose router read the reference's mean.*train the run "
                                        "again") as err:
        load_weights(run_dir / "old.pt", editor)
    assert "\n" not in str(err.value)
    assert load_weights(run_dir / "checkpoints" / "step_00000003.pt", editor) == 3
