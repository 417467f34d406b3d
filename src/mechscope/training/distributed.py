"""Distributed training helpers: one process per rank under ``torchrun``, gloo on CPU and NCCL on GPU.

Every rank builds the same dictionaries (same seed), wraps their objectives in ``DistributedDataParallel`` and
trains on its own slice of the data; gradients are averaged across ranks, so with equal per-rank batches a step
equals a single-process step on the concatenated global batch. Statistics that must agree across ranks (the
geometric median and normalisation factor at initialisation, dead-latent counts, logged metrics) go through the
collectives below. See ``docs/distributed.md`` for multi-machine runs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the run."""

    rank: int = 0
    """Global rank (0 writes files)."""
    world_size: int = 1
    """Number of processes."""
    local_rank: int = 0
    """Rank on this machine (selects the GPU)."""
    device: str = "cpu"
    """Device this rank trains on."""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group torchrun describes in the environment (``WORLD_SIZE`` > 1); no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(device=device or "cpu")
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    log.info("rank %d/%d joined (%s)", rank, world, "nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local, f"cuda:{local}" if use_cuda else "cpu")


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_gather_rows(x: Tensor, info: DistInfo) -> Tensor:
    """Concatenate every rank's rows (same shape on every rank), rank order."""
    if not info.enabled:
        return x
    parts = [torch.empty_like(x) for _ in range(info.world_size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def all_reduce(x: Tensor, info: DistInfo, op: str = "sum") -> Tensor:
    """Sum (or ``max`` / ``mean``) of ``x`` over ranks; returns a new tensor."""
    if not info.enabled:
        return x
    y = x.clone()
    dist.all_reduce(y, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return y / info.world_size if op == "mean" else y


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_parameters(module: torch.nn.Module, info: DistInfo) -> None:
    """Copy rank 0's parameters to every rank (after a data-dependent edit such as resampling)."""
    if info.enabled:
        with torch.no_grad():
            for p in module.parameters():
                dist.broadcast(p.data, src=0)
