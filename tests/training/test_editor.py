"""The built-in editor learns: it overfits a handful of samples, and a backbone checkpoint initialises MoT."""

from __future__ import annotations

import pytest
import torch

from unieditkit.training.model.anchors import Anchors
from unieditkit.training.config import CurriculumConfig, ModelConfig
from unieditkit.training.model.curriculum import Curriculum
from unieditkit.training.data import BatchSource, find_shards
from unieditkit.training.backbones.builtin.editor import Editor, load_backbone
from unieditkit.training.backbones.builtin.flow import flow_loss, sample
from unieditkit.errors import UserError

ANCHORS = Anchors.from_taxonomy()
SMALL = dict(image_size=32, patch_size=4, dim=64, depth=2, heads=4, num_experts=4, rank=4, top_k=2)


def _batch(shards, n):
    source = BatchSource(find_shards(shards, "train"), ANCHORS, Curriculum(CurriculumConfig(), 10), image_size=32,
                         batch_size=n, seed=0, epoch_batches=1, rank=0, world_size=1, num_workers=0,
                         shuffle_buffer=16, rough_source="stored")
    return next(source.batches(0))


def _eval_loss(editor, batch):
    with torch.no_grad():
        return sum(flow_loss(editor, batch, torch.Generator().manual_seed(100 + i), "uniform", 0.0).flow.item()
                   for i in range(4)) / 4


def test_small_editor_overfits_a_handful_of_samples(two_domain_shards):
    torch.manual_seed(0)
    batch = _batch(two_domain_shards, 6)
    assert len(set(batch["domain"].tolist())) == 2
    editor = Editor(ModelConfig(**SMALL), ANCHORS)
    opt = torch.optim.AdamW([p for p in editor.parameters() if p.requires_grad], lr=2e-3)
    start = _eval_loss(editor, batch)
    for step in range(60):
        parts = flow_loss(editor, batch, torch.Generator().manual_seed(step), "uniform", 0.01)
        opt.zero_grad()
        parts.total.backward()
        opt.step()
    end = _eval_loss(editor, batch)
    assert end < 0.5 * start, (start, end)
    out = sample(editor, batch, steps=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == batch["tgt"].shape and out.abs().max() <= 1


def test_backbone_checkpoint_initialises_a_frozen_mot_editor(tmp_path):
    torch.manual_seed(0)
    backbone = Editor(ModelConfig(**{**SMALL, "num_experts": 0}), ANCHORS)
    for p in backbone.parameters():
        p.data.normal_()
    torch.save({"model": backbone.state_dict()}, tmp_path / "backbone.pt")
    cfg = ModelConfig(**SMALL, train_backbone=False, init_checkpoint=str(tmp_path / "backbone.pt"))
    editor = Editor(cfg, ANCHORS)
    load_backbone(editor, cfg.init_checkpoint)
    torch.testing.assert_close(editor.blocks[0].attn.q.base.weight, backbone.blocks[0].attn.q.weight)
    x = torch.randn(2, 3, 32, 32)
    m = torch.zeros(2, 1, 32, 32)
    args = (x, torch.rand(2), x, x, m, torch.tensor([0, 1]), torch.tensor([0, 40]))
    torch.testing.assert_close(editor(*args).velocity, backbone(*args).velocity)  # experts start at zero


def test_backbone_checkpoint_must_have_every_backbone_tensor(tmp_path):
    editor = Editor(ModelConfig(**SMALL), ANCHORS)
    partial = {k: v for k, v in editor.state_dict().items() if "blocks.1" not in k}
    torch.save({"model": partial}, tmp_path / "partial.pt")
    with pytest.raises(UserError, match="lacks .* backbone tensors"):
        load_backbone(editor, tmp_path / "partial.pt")
    with pytest.raises(UserError, match="not found"):
        load_backbone(editor, tmp_path / "missing.pt")


def _loss_and_grad(cfg, batch, autocast=False):
    torch.manual_seed(0)
    editor = Editor(cfg, ANCHORS)
    for p in editor.parameters():
        p.data.normal_(0, 0.1)  # non-zero experts and adaLN gates, so every path carries gradient
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        parts = flow_loss(editor, batch, torch.Generator().manual_seed(0), "uniform", 0.01)
    parts.total.backward()
    return parts.total.item(), editor.blocks[0].attn.q.lora_A.grad


def test_activation_checkpointing_and_bf16_autocast_keep_the_routing():
    n = 3
    batch = dict(ref=torch.randn(n, 3, 16, 16), tgt=torch.randn(n, 3, 16, 16), mask=torch.ones(n, 1, 16, 16),
                 domain=torch.tensor([0, 1, 2]), subcategory=torch.tensor([0, 40, 80]))
    small = dict(SMALL, image_size=16, dim=32, heads=2)
    loss, grad = _loss_and_grad(ModelConfig(**small), batch)
    loss_ckpt, grad_ckpt = _loss_and_grad(ModelConfig(**small, gradient_checkpointing=True), batch)
    assert loss_ckpt == loss and torch.equal(grad_ckpt, grad)  # recomputation sees the same experts
    loss_bf16, grad_bf16 = _loss_and_grad(ModelConfig(**small), batch, autocast=True)
    assert grad_bf16.dtype == torch.float32 and loss_bf16 == pytest.approx(loss, rel=0.05)
