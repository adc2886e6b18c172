"""Data-parallel training under torchrun: which process this is, and how the examples are shared out.

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; without them training runs in one process. Each step takes one
global batch of a seeded per-epoch permutation, and process r takes the r-th equal share of it, so that a run on
W processes computes the same updates as one process on the same global batch (DDP averages the gradients).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


# Reasons to stop early, least pressing first.
STOP_PRIORITY = ("max-steps", "time-budget", "SIGINT", "SIGTERM")


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def agree_to_stop(self, reason: str | None, device: torch.device) -> str | None:
        """Every process stops at the same step: the reason of the process that has the most pressing one (a
        callback's own reason, then a signal, a time budget, a step budget), or None when none has one."""
        if not self.enabled:
            return reason
        codes = {None: 0, **{name: i + 1 for i, name in enumerate(STOP_PRIORITY)}}
        flag = torch.tensor([codes.get(reason, len(codes))], device=device if device.type == "cuda" else "cpu")
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        code = int(flag)
        if code == 0:
            return None
        return STOP_PRIORITY[code - 1] if code <= len(STOP_PRIORITY) else (reason or "a callback's stop")


def setup(device: torch.device) -> Distributed:
    """Joins the process group when torchrun started this process (gloo on the CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def epoch_batches(n: int, batch_size: int, *, seed: int, epoch: int, rank: int = 0, world_size: int = 1,
                  drop_last: bool = True) -> list[list[int]]:
    """This process's index lists for one epoch: global batches of batch_size from a permutation seeded by
    (seed, epoch), each split into world_size equal shares."""
    if batch_size % world_size:
        raise ValueError(f"the global batch size ({batch_size}) must be a multiple of the number of processes "
                         f"({world_size})")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()
    end = n - n % batch_size if drop_last else n
    share = batch_size // world_size
    return [order[i:i + batch_size][rank * share:(rank + 1) * share] for i in range(0, end, batch_size)]
