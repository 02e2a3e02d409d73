"""Multi-process training under torchrun: the process group from torchrun's environment
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); NCCL on GPUs, gloo on CPUs."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_processes(device_type: str) -> Processes:
    """This process's place in the run: joins torchrun's process group when WORLD_SIZE > 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Processes()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def barrier(processes: Processes) -> None:
    if processes.distributed:
        dist.barrier()


def all_finite(value: torch.Tensor, processes: Processes) -> bool:
    """Whether `value` is finite in every process (all take the same branch, none hangs)."""
    flag = torch.isfinite(value.detach()).all().to(torch.float32).reshape(1)
    if processes.distributed:
        flag = flag.to(value.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0)


def mean_over_processes(values: dict[str, float], processes: Processes, device: torch.device) -> dict[str, float]:
    if not processes.distributed or not values:
        return values
    names = sorted(values)
    tensor = torch.tensor([values[n] for n in names], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return {n: float(v) / processes.world_size for n, v in zip(names, tensor.tolist())}


def shutdown(processes: Processes) -> None:
    if processes.distributed and dist.is_initialized():
        dist.destroy_process_group()
