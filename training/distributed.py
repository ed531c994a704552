"""Training on several processes with torch's own engine: ``torch.distributed`` and DDP.

Launched by ``torchrun`` (``torchrun --nproc-per-node N -m training train ...``, or
``latentwatch train --nproc N``, which starts the same launcher), every process runs the same
command. Each reads its own shard of the table's rows (``service.tables.read_table``), and
the processes meet at four points only:

1. the feature statistics (medians, scales, category lists) are those of process 0's shard,
   sent to the others, so that every process encodes rows the same way;
2. each gradient step's gradients are averaged by ``DistributedDataParallel`` (gloo on CPU,
   NCCL on CUDA), so the weights, their moving average and every decision stay identical;
3. each validation's loss is the mean over every process's held-out rows, so early stopping
   ends every process at the same step;
4. after the fit, process 0 gathers the held-out rows, calibrates, exports and writes the
   bundle; the others wait for it and write nothing.

A multi-process fit trains one model (``folds = 1``, ``members = 1``, ``restarts = 1``), of a
type with one optimizer (``vae``, ``ae``, ``hvae``): it is for tables too large for one process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from service.errors import ConfigError
from training.config import TrainSettings

DISTRIBUTED_MODELS = ("vae", "ae", "hvae")


@dataclass(frozen=True)
class Group:
    """This process's place among the processes of one fit."""

    rank: int
    world: int

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` behind ``DistributedDataParallel``; its weights are process 0's from here on."""
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, broadcast_buffers=False)  # the buffers do not change in training

    def mean(self, total: float, count: int) -> float:
        """The mean over every process of values summing to ``total`` over ``count`` items here."""
        both = torch.tensor([total, float(count)], dtype=torch.float64)
        dist.all_reduce(both)
        return float(both[0] / max(1.0, float(both[1])))

    def total(self, count: int) -> int:
        """The sum of ``count`` over every process."""
        both = torch.tensor([count], dtype=torch.int64)
        dist.all_reduce(both)
        return int(both[0])

    def broadcast(self, value: Any) -> Any:
        """Process 0's ``value``, on every process."""
        box = [value if self.leader else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_rows(self, rows: np.ndarray) -> np.ndarray | None:
        """Every process's ``rows`` stacked in rank order on process 0; None elsewhere."""
        parts: list[Any] | None = [None] * self.world if self.leader else None
        dist.gather_object(rows, parts, dst=0)
        return np.concatenate(parts) if parts is not None else None

    def barrier(self) -> None:
        dist.barrier()


def from_environment(device: str = "cpu") -> Group | None:
    """The process group that ``torchrun`` set up in the environment, joined; None for one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    return Group(rank=dist.get_rank(), world=dist.get_world_size())


def shard() -> tuple[int, int]:
    """``(rank, world)`` from ``torchrun``'s environment, before the group is joined; ``(0, 1)`` alone."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def check_settings(settings: TrainSettings) -> None:
    """Refuse what a multi-process fit does not do, saying why."""
    if settings.model not in DISTRIBUTED_MODELS:
        msg = (
            f"--model {settings.model} trains with more than one optimizer and cannot be fitted on several "
            f"processes; use one of {DISTRIBUTED_MODELS} or a single process"
        )
        raise ConfigError(msg)
    for name in ("members", "restarts"):
        if getattr(settings, name) != 1:
            msg = f"setting {name!r}: a multi-process fit trains one model, so it must be 1"
            raise ConfigError(msg)
    if settings.folds not in (None, 1):
        msg = "setting 'folds': a multi-process fit trains one model on every shard's rows, so it must be 1"
        raise ConfigError(msg)


def close() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``python -m training argv`` on ``nproc`` local processes with torch's launcher (``torchrun``)."""
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(["--nproc-per-node", str(nproc), "--standalone", "--module", "training", *argv])
    try:
        run(args)
    except Exception as err:  # ChildFailedError: the processes printed their own errors
        print(f"error: the {nproc}-process fit failed: {type(err).__name__}")
        return 2
    return 0
