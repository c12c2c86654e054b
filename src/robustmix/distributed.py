"""Running under ``torchrun``: index shards without padding, per-rank records, a merge step.

Each rank takes every world-th block of consecutive example indices (disjoint,
no padding or duplicates, unlike ``DistributedSampler``), writes its own record file, and
rank 0 merges them (:func:`robustmix.experiments.runner.merge_shards`), sorted by example index, into exactly the records a single
process writes.  Randomness is seeded per example index, so the result does not
depend on the number of ranks.  A restarted rank (``torchrun --max-restarts``)
resumes from its own records.  Each rank uses its local GPU when there is one,
else the CPU.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def device(self) -> torch.device:
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank % torch.cuda.device_count())
        return torch.device("cpu")

    def shard(self, indices: torch.Tensor, block: int = 1) -> torch.Tensor:
        """This rank's blocks: ``block``-sized runs of indices dealt round-robin (no padding, no overlap).

        Using the computation's batch size as ``block`` keeps every batch's composition the same as in a
        single-process run, so results agree bit for bit (kernels may round differently per batch shape).
        """
        blocks = list(indices.split(block))[self.rank::self.world]
        return torch.cat(blocks) if blocks else indices[:0]

    def records_path(self, path: Path) -> Path:
        return path if not self.active else path.with_name(f"{path.stem}.rank{self.rank}{path.suffix}")

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()


def setup() -> Dist:
    """Read torchrun's environment and join the process group (gloo on CPU, nccl on GPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    info = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.device)
        # A fresh key prefix per torchrun restart: the launcher's store outlives a failed round, and
        # without it the new workers would read the dead workers' addresses and fail to connect.
        agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "False") == "True"
        store = torch.distributed.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                                           is_master=not agent_store and info.rank == 0)
        prefixed = torch.distributed.PrefixStore(f"robustmix/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/",
                                                 store)
        torch.distributed.init_process_group(backend=backend, store=prefixed, rank=info.rank, world_size=world)
    logger.info("rank %d of %d on %s", info.rank, info.world, info.device)
    return info


def teardown(info: Dist) -> None:
    if info.active and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
