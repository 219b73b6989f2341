"""The GPU path: gradients summed by NCCL, one GPU per rank, ranks and rendezvous from MPI.

UNTESTED: written without a GPU (the machine this was built on has none); the CPU path (MPI)
is the tested one. `nccl_world(world)` is what pretrain/finetune use when the backend is CuPy
and N > 1:

  * each rank takes the GPU of its rank among the ranks of its node (MPI's shared-memory
    split), cupy.cuda.Device(local_rank).use();
  * rank 0 makes NCCL's unique id, MPI broadcasts it, every rank builds
    cupy.cuda.nccl.NcclCommunicator(N, id, rank): no sockets or stores of our own;
  * allreduce_sum(buf) on a CuPy array is one ncclAllReduce (sum) in place on the current
    stream; NumPy buffers still go through MPI.
"""
from __future__ import annotations

import importlib

from ..backend import cupy_module, is_cupy_array

__all__ = ["NcclWorld", "nccl_world"]


class NcclWorld:
    """A World (world.py) whose allreduce_sum of CuPy arrays runs on NCCL; every other call
    goes to the MPI world it wraps."""

    def __init__(self, world):
        self.world = world
        self.comm, self.rank, self.size = world.comm, world.rank, world.size
        cupy = cupy_module()
        self.nccl = importlib.import_module("cupy.cuda.nccl")   # CuPy's binding of NCCL
        node = world.comm.Split_type(split_type=_mpi().COMM_TYPE_SHARED)
        self.local_rank = node.Get_rank()
        cupy.cuda.Device(self.local_rank).use()
        uid = self.nccl.get_unique_id() if self.rank == 0 else None
        uid = world.comm.bcast(uid, root=0)                     # the rendezvous: MPI's
        self.communicator = self.nccl.NcclCommunicator(self.size, uid, self.rank)
        self.cupy = cupy

    def allreduce_sum(self, buf):
        if not is_cupy_array(buf):
            return self.world.allreduce_sum(buf)
        kinds = {"float32": self.nccl.NCCL_FLOAT32, "float64": self.nccl.NCCL_FLOAT64}
        stream = self.cupy.cuda.get_current_stream()
        self.communicator.allReduce(buf.data.ptr, buf.data.ptr, buf.size, kinds[buf.dtype.name],
                                    self.nccl.NCCL_SUM, stream.ptr)
        return buf

    def __getattr__(self, name):  # is_main, any, allgather, barrier, abort: the MPI world's
        return getattr(self.world, name)


def _mpi():
    from mpi4py import MPI
    return MPI


def nccl_world(world):
    """NcclWorld for a multi-rank world on the CuPy backend, else `world` itself."""
    from ..backend import get_backend
    if world.size > 1 and get_backend() == "cupy":
        return NcclWorld(world)
    return world
