"""Running under ``torchrun``: rank, world size, a barrier, and batch sharding.

Samples are sharded by whole batches (batch i goes to rank i mod world), so every batch is computed
exactly as in a single-process run and the merged per-sample results are identical to it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def owns(self, batch_index: int) -> bool:
        return batch_index % self.world == self.rank

    def barrier(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.barrier()


def setup(device: torch.device | str = "cpu") -> Dist:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA); (0, 1) without torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and not dist.is_initialized():
        cuda = torch.cuda.is_available() if device == "auto" else torch.device(device).type == "cuda"
        backend = "nccl" if cuda else "gloo"
        dist.init_process_group(backend=backend)
    return Dist(rank, world)


def local_device(device: str) -> str:
    """With several CUDA processes on a node, each takes the GPU of its LOCAL_RANK."""
    if device in {"cuda", "auto"} and torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device
