"""The world of a data-parallel run: how many processes (ranks) and which one this is.

`get_world()` is the one-process world (rank 0 of 1, no mpi4py needed) unless the process was
started by `mpiexec` (MPICH's PMI_SIZE / PMI_RANK, Open MPI's OMPI_COMM_WORLD_SIZE in the
environment): then it imports mpi4py and wraps COMM_WORLD. Collectives used by training:

    allreduce_sum(buf)   in place, every rank ends with the element-wise sum (MPI Allreduce)
    any(flag)            True on every rank if it is True on one (Ctrl-C on any rank)
    allgather(obj)       small Python objects (checksums)
    barrier()
    abort(code)          MPI_Abort: every rank stops (never a hang)

`abort_on_error(world)` wraps a command: an exception on one rank prints one line naming the
rank, then aborts every rank (the others would wait forever in their next Allreduce).
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager

import numpy as np

__all__ = ["World", "get_world", "abort_on_error", "DistributedError", "launched_size"]


class DistributedError(RuntimeError):
    """The run cannot be distributed as asked (no mpi4py under mpiexec, ranks diverged, ...)."""


def launched_size() -> int:
    """The number of processes mpiexec started (1 when not launched by mpiexec)."""
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


class World:
    """rank, size and the collectives; comm None: the one-process world (no MPI)."""

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes the run folder, metrics and logs."""
        return self.rank == 0

    def allreduce_sum(self, buf: np.ndarray) -> np.ndarray:
        """Sum `buf` over the ranks, in place (MPI.IN_PLACE); returns buf."""
        if self.comm is not None and self.size > 1:
            from mpi4py import MPI
            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        return buf

    def any(self, flag: bool) -> bool:
        if self.comm is None or self.size == 1:
            return bool(flag)
        from mpi4py import MPI
        return bool(self.comm.allreduce(int(bool(flag)), op=MPI.MAX))

    def allgather(self, obj) -> list:
        return [obj] if self.comm is None else self.comm.allgather(obj)

    def barrier(self) -> None:
        if self.comm is not None:
            self.comm.Barrier()

    def abort(self, code: int = 1) -> None:
        if self.comm is not None and self.size > 1:
            self.comm.Abort(code)

    def __repr__(self):
        return f"World(rank={self.rank}, size={self.size})"


_WORLD: list = []


def get_world() -> World:
    """This process's World (created once): MPI's COMM_WORLD when launched by mpiexec with
    more than one process, else the one-process world."""
    if not _WORLD:
        n = launched_size()
        if n <= 1:
            _WORLD.append(World())
        else:
            try:
                from mpi4py import MPI
            except ImportError:
                raise DistributedError(
                    f"started by mpiexec as one of {n} processes, but mpi4py is not installed: "
                    "pip install 'minigpt-gpt1[distributed]'") from None
            world = World(MPI.COMM_WORLD)
            install_abort_hook(world)
            from .nccl import nccl_world  # on the CuPy backend: NCCL for CuPy buffers
            _WORLD.append(nccl_world(world))
    return _WORLD[0]


def install_abort_hook(world: World) -> None:
    """An uncaught exception on one rank aborts every rank (after its traceback)."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.flush()
        world.abort(1)
    sys.excepthook = hook


@contextmanager
def abort_on_error(world: World, command: str = "minigpt"):
    """Around a command: an exception on any rank of a world of N > 1 prints
    `<command>: error (rank r of N): ...` and stops every rank with MPI_Abort (exit status 2),
    so that no rank waits forever in a collective; in a one-process world it does nothing."""
    try:
        yield
    except BaseException as e:
        if world.size <= 1:
            raise
        text = str(e) or type(e).__name__
        print(f"{command}: error (rank {world.rank} of {world.size}): {text}; stopping every "
              "rank (MPI_Abort)", file=sys.stderr, flush=True)
        world.abort(2)
        raise
