"""Data-parallel training: N processes (ranks), each with a copy of the model, one global batch.

    world.py      World: this process's rank among `size`; MPI through mpi4py (imported only when
                  launched by mpiexec), or the one-process world without it; abort_on_error
    batches.py    check_split (the global batch must divide into N ranks x K micro-batches),
                  my_rows (this rank's K slices of the global batch's rows)
    masks.py      GlobalRowMasks: dropout masks drawn for the global rows, so that each row's
                  mask comes from its global position whatever N and K are
    gradients.py  allreduce_gradients (one Allreduce per bucket of a flat buffer),
                  check_weights_equal (a checksum per rank, RanksDiverged if they differ)
    nccl.py       the GPU path (CuPy backend, N > 1): NCCL through CuPy, the rendezvous by MPI;
                  UNTESTED (written without a GPU)
    ring.py       the ring all-reduce over simulated ranks (the `parallel` assignment's key)

The rule that makes a run's numbers independent of N and K: every rank draws the SAME global
batch (same random state), takes its rows, and weights each micro-batch's mean loss by its
share of the global batch's count, so the all-reduced SUM of gradients is the one-process
gradient of the global batch's mean loss.
"""
from .batches import (check_split, example_rows, loss_counts, my_examples, my_rows,
                      row_slices)
from .gradients import (RanksDiverged, allreduce_gradients, check_weights_equal,
                        gradient_bytes, weights_checksum)
from .masks import GlobalRowMasks
from .world import DistributedError, World, abort_on_error, get_world

__all__ = ["World", "get_world", "abort_on_error", "DistributedError", "check_split", "my_rows",
           "example_rows", "loss_counts", "my_examples", "row_slices", "GlobalRowMasks", "allreduce_gradients", "check_weights_equal",
           "weights_checksum", "gradient_bytes", "RanksDiverged"]
