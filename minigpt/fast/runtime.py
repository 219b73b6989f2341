"""What the fast ops run on: a thread pool for elementwise work, and BLAS thread control.

Two facts about NumPy on a multi-core CPU drive every fast op:

1. BLAS (OpenBLAS, bundled with NumPy) spreads a matmul over all cores, but NumPy's own
   elementwise loops run on one. NumPy releases the GIL inside those loops, though, so Python
   threads that each run the same in-place formula on their own block of rows do run in
   parallel: `in_parallel` / `run_blocks`.
2. OpenBLAS splits *each* call over its threads, waking and joining them every time, and on a
   busy machine every wake-up waits for a free core. Measured here under load: two (2048, 384)
   matrix-vector products 10-25 ms on average with 2 threads against 0.36 ms with one; 96
   attention products (128, 64) @ (64, 128) 200 ms against 11 ms. So small BLAS calls run
   inside `blas_single_thread()`, and blocks that call BLAS are split over our own threads
   instead (`in_parallel_blas` / `run_blocks_blas`): the threads then synchronise once per op,
   not once per small matmul (what PyTorch's bmm does). Large matmuls keep all BLAS threads.

The BLAS thread count is read and set through threadpoolctl. Its `threadpool_limits()`
re-scans the loaded libraries on every call (measured here: 163 us per enter/exit, and
`ThreadpoolController.limit()` 9 us); a training step switches hundreds of times, so the
controller is built once at import (1 ms) and the library controllers' own get/set are called
directly. Measured here: `blas_single_thread()` enter + exit 3.7 us, against 3.2 us for the
hand-written ctypes version it replaces (its get + two sets alone: 1.4 us).
"""
from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import ThreadpoolController

from ..backend import get_array_module
from ..settings import config

__all__ = ["num_threads", "in_parallel", "in_parallel_blas", "run_blocks", "run_blocks_blas",
           "blas_single_thread", "sum_rows", "PARALLEL_MIN", "BLAS_CONTEXT_MIN"]

PARALLEL_MIN = 1 << 17  # elements; below this, thread hand-offs cost more than they save
# elements; below this the BLAS thread switch (~4 us enter + exit) is skipped: OpenBLAS runs
# products this small on the calling thread anyway (its own threshold is higher), and on one
# sampled token's shapes the switch cost more than the op (issue 26's sweep: tuned ops at one
# row 1.5-2x slower than the reference, from these switches and num_threads' environment reads)
BLAS_CONTEXT_MIN = 1 << 12

_POOL: ThreadPoolExecutor | None = None
_BLAS = ThreadpoolController().select(user_api="blas").lib_controllers  # scanned once


def num_threads() -> int:
    """Cores for elementwise work: the switch config.num_threads (minigpt/settings.py) if set,
    else MINIGPT_NUM_THREADS, else what BLAS is told, else all."""
    if config.num_threads is not None:
        return config.num_threads
    for var in ("MINIGPT_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").isdigit() and int(os.environ[var]) > 0:
            return int(os.environ[var])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def in_parallel(fn, n: int, unit: int = 1) -> None:
    """Call fn(slice) over blocks covering range(n), one block per core, concurrently.

    unit: elements per index (a row's length), to judge whether n is worth splitting; small
    work runs inline on this thread.
    """
    global _POOL
    if n * unit < 2 * PARALLEL_MIN:  # one block: no need to read the thread count (environment)
        fn(slice(0, n))
        return
    k = min(num_threads(), n * unit // PARALLEL_MIN, n)
    if k <= 1:
        fn(slice(0, n))
        return
    if _POOL is None or _POOL._max_workers < k - 1:
        _POOL = ThreadPoolExecutor(max_workers=k - 1, thread_name_prefix="minigpt")
    bounds = [n * i // k for i in range(k + 1)]
    futures = [_POOL.submit(fn, slice(bounds[i], bounds[i + 1])) for i in range(1, k)]
    fn(slice(bounds[0], bounds[1]))  # the first block on this thread
    for f in futures:
        f.result()


@contextlib.contextmanager
def blas_single_thread():
    """Inside: the BLAS library runs every call on the calling thread alone (see above)."""
    before = [lib.get_num_threads() for lib in _BLAS]
    for lib in _BLAS:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in zip(_BLAS, before):
            lib.set_num_threads(n)


def in_parallel_blas(fn, n: int, unit: int = 1) -> None:
    """in_parallel for blocks that call BLAS: our threads split the work, each block's BLAS
    calls run single-threaded (work under BLAS_CONTEXT_MIN elements: inline, no switch)."""
    if n * unit < BLAS_CONTEXT_MIN:
        fn(slice(0, n))
        return
    with blas_single_thread():
        in_parallel(fn, n, unit)


def run_blocks(xp, fn, n: int, unit: int = 1) -> None:
    """in_parallel on the CPU; one call over everything for CuPy (already parallel)."""
    if xp is np:
        in_parallel(fn, n, unit)
    else:
        fn(slice(0, n))


def run_blocks_blas(xp, fn, n: int, unit: int = 1) -> None:
    """in_parallel_blas on the CPU; one call over everything for CuPy."""
    if xp is np:
        in_parallel_blas(fn, n, unit)
    else:
        fn(slice(0, n))


def sum_rows(x2d):
    """Column sums of a (N, C) array as a matmul with a ones vector (several times faster
    than x.sum(0) in NumPy, since it runs on BLAS)."""
    xp = get_array_module(x2d)
    ones = xp.ones(x2d.shape[0], dtype=x2d.dtype)
    if x2d.size < 2 * BLAS_CONTEXT_MIN:  # OpenBLAS keeps a matvec under 9216 on one thread
        return ones @ x2d  # (N,) @ (N, C) -> (C,)
    with blas_single_thread():
        return ones @ x2d  # (N,) @ (N, C) -> (C,)
