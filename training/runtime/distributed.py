"""Process-group setup and model wrapping (DDP by default, FSDP2 for backbones that do not fit one GPU).

Ranks come from the torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), so the same code runs as a
single process, under ``unieditkit train --nproc N`` and under a multi-node ``torchrun``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Join the process group torchrun describes: NCCL on GPUs, gloo on CPUs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local, device)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, strategy: str, info: DistInfo) -> nn.Module:
    """DDP replicates the model; FSDP2 (``fully_shard``) shards each transformer block and then the root.

    FSDP2 shards per parameter, so frozen backbone weights and trainable experts can share a block (FSDP1 needed
    ``use_orig_params`` for that). The model object stays the same for FSDP, so callers keep one reference.
    A quantized frozen weight (``model.backbone_quant``) is left to neither: neither DDP's start-up broadcast nor
    FSDP2's sharding can split torchao's or bitsandbytes' tensors, and every rank quantized the same snapshot the
    same way, so each keeps its own whole copy (under FSDP2 only experts, gradients and moments are sharded).
    """
    if not info.distributed:
        return model
    quantized = {p for p in model.parameters() if not p.requires_grad and type(p) not in (torch.Tensor, nn.Parameter)}
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in shard_units(model):
            fully_shard(block, ignored_params=quantized or None)
        fully_shard(model, ignored_params=quantized or None)
        return model
    if quantized:
        names = [n for n, p in model.named_parameters() if p in quantized]
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, names)
    device_ids = [info.local_rank] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


SHARDED_BLOCK_LISTS = ("blocks", "transformer_blocks", "single_transformer_blocks")


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks FSDP shards one by one: the built-in editor's ``blocks`` and FLUX's
    ``transformer_blocks`` and ``single_transformer_blocks`` (each gathered only while it runs)."""
    return [block for name, module in model.named_modules()
            if name.rsplit(".", 1)[-1] in SHARDED_BLOCK_LISTS and isinstance(module, nn.ModuleList)
            for block in module]


@contextmanager
def gradient_sync(model: nn.Module, sync: bool) -> Iterator[None]:
    """Gradient accumulation: reduce gradients across ranks only on the last micro-batch of a step."""
    if sync or not dist.is_initialized():
        yield
    elif isinstance(model, DistributedDataParallel):
        with model.no_sync():
            yield
    else:  # FSDP2 keeps partial gradients unsharded until the step's last backward
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def mean_across_ranks(values: torch.Tensor) -> torch.Tensor:
    """Average a float tensor over ranks (a no-op without a process group)."""
    if dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= dist.get_world_size()
    return values


def sum_across_ranks(values: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
