"""GPT-1's Adam on the GPU over every parameter at once: the launch code of kernels/09_adam.cu.

    from minigpt.cuda import adam
    norm = adam.grad_norm(grads)                       # one launch + one read of the partials
    adam.update_arrays(ps, gs, ms, vs, wds, lr_t, betas, eps, clip)   # one launch

`update_all` is registered as the "cuda" implementation of the op "adam_all" (minigpt.optim's
`update_each`): when every array is a CuPy float32 C-contiguous array (mode "auto", kernels
switched on) minigpt.dispatch picks it and the whole update is one launch of adam_update;
otherwise the optimizer's per-parameter updates run. `grad_norm` is registered as the "cuda"
implementation of the op "grad_norm" (the norm that clipping compares to max_grad_norm).

The update is optim.adam_update's formula with the same float32 rounding step by step (see
the kernel's header), so on the same gradients and clip factor it gives the same bits.

The tables a launch reads (kernels/09's header): a pointer table of the 4n arrays, built for
each step (the gradients are new arrays every step), and the chunk and size tables, cached per
list of sizes: chunk k = (tensor, first element), CHUNK elements at most, one block each.
"""
from __future__ import annotations

import math

import numpy as np

from .. import dispatch
from ..backend import get_array_module, is_cupy_array, to_numpy
from .loader import (KERNEL_FILES, as_kernel_array, empty_output, f32, fused_enabled, i32,
                     launch, pointer_table)

__all__ = ["ADAM_THREADS", "CHUNK", "chunk_table", "grad_norm", "update_arrays", "update_all",
           "can_fuse_adam"]

ADAM_THREADS = 256
CHUNK = 1 << 14   # elements per block: 64 per thread; GPT-1's 116M parameters are ~7100 blocks
_TABLES: dict = {}  # (library, device, sizes, CHUNK) -> (chunks, sizes) arrays; a few entries


def chunk_table(sizes, chunk: int) -> np.ndarray:
    """(nchunks, 2) int32: (tensor index, first element) of each chunk; empty tensors have none."""
    rows = [(t, s) for t, n in enumerate(sizes) for s in range(0, n, chunk)]
    return np.array(rows, dtype=np.int32).reshape(-1, 2)


def _tables(xp, sizes, wds=()):
    """The chunk, size and weight-decay tables for these tensors, on xp's device (cached: they
    change only when the parameter list does)."""
    device = xp.cuda.runtime.getDevice() if xp is not np else -1
    key = (xp.__name__, device, sizes, wds, CHUNK)
    hit = _TABLES.get(key)
    if hit is None:
        if len(_TABLES) >= 8:  # a few parameter lists per process; never grow without bound
            _TABLES.clear()
        for n in sizes:
            i32(n, "parameter size")
        hit = _TABLES[key] = (xp.asarray(chunk_table(sizes, CHUNK)),
                              xp.asarray(np.array(sizes, dtype=np.int32)),
                              xp.asarray(np.array(wds, dtype=np.float32)))
    return hit


_F32 = np.dtype(np.float32)  # NumPy's dtypes are singletons: `a.dtype is _F32` is the fast test


def _float32_arrays(arrays, what: str):
    out = []
    for a in arrays:
        if a.dtype != np.float32 or not a.flags.c_contiguous:
            raise TypeError(f"{what}: the Adam kernel updates C-contiguous float32 arrays in "
                            f"place, got {a.dtype} contiguous={a.flags.c_contiguous}")
        out.append(a)
    return out


def _check_shapes(ps, gs, ms, vs, wds) -> None:
    n = len(ps)
    if not len(gs) == len(ms) == len(vs) == len(wds) == n:
        raise ValueError("update_arrays: p, grad, m, v and weight decay lists differ in length")
    for p, g, m, v in zip(ps, gs, ms, vs):
        if not p.shape == g.shape == m.shape == v.shape:
            raise ValueError(f"update_arrays: p {p.shape}, grad {g.shape}, m {m.shape}, "
                             f"v {v.shape} differ")


def grad_norm(grads) -> float:
    """sqrt(sum of g.g over the gradients): adam_sumsq's per-chunk sums (float32, fixed tree),
    added on the host in float64 in chunk order. The same bits on every run."""
    grads = [g for g in grads if g.size]
    if not grads:
        return 0.0
    nd = type(grads[0])
    if not all(type(g) is nd and g.dtype is _F32 and g.flags.c_contiguous for g in grads):
        grads = [as_kernel_array(g, "grad") for g in grads]  # (the usual case needs no copy)
    xp = get_array_module(grads[0])
    chunks, sizes, _ = _tables(xp, tuple([g.size for g in grads]))
    partial = empty_output(xp, (chunks.shape[0],))
    launch(KERNEL_FILES["adam"], "adam_sumsq", (chunks.shape[0],), (ADAM_THREADS,),
           (pointer_table(grads), chunks, sizes, partial, i32(0), i32(CHUNK)),
           (ADAM_THREADS // 32) * 4)
    return math.sqrt(float(to_numpy(partial).astype(np.float64).sum()))


def update_arrays(ps, gs, ms, vs, wds, lr_t: float, betas, eps: float, clip=None) -> None:
    """Adam's update of every (p, g, m, v) in place, in one launch: optim.adam_update for each,
    weight decay wds[i] for the i-th. clip: None or the factor g is first scaled by (written
    back to g, as optim's `g *= clip` does)."""
    arrays = [_float32_arrays(a, name) for a, name in ((ps, "p"), (gs, "grad"), (ms, "m"),
                                                        (vs, "v"))]
    _check_shapes(*arrays, wds)
    _launch_update(*arrays, wds, lr_t, betas, eps, clip)


def _launch_update(ps, gs, ms, vs, wds, lr_t, betas, eps, clip) -> None:
    """update_arrays' launch, its inputs already checked."""
    keep = [i for i, p in enumerate(ps) if p.size]  # empty parameters: nothing to do
    if not keep:
        return
    if len(keep) < len(ps):
        ps, gs, ms, vs = ([a[i] for i in keep] for a in (ps, gs, ms, vs))
        wds = [wds[i] for i in keep]
    ps, gs, ms, vs = list(ps), list(gs), list(ms), list(vs)
    xp = get_array_module(ps[0])
    chunks, sizes, wd = _tables(xp, tuple([p.size for p in ps]), tuple(map(float, wds)))
    b1, b2 = betas
    launch(KERNEL_FILES["adam"], "adam_update", (chunks.shape[0],), (ADAM_THREADS,),
           (pointer_table(ps + gs + ms + vs), chunks, sizes, wd, i32(len(ps)), i32(CHUNK),
            f32(b1), f32(1.0 - b1), f32(b2), f32(1.0 - b2), f32(eps), f32(lr_t),
            f32(clip if clip is not None else 1.0), i32(clip is not None)))


def can_fuse_adam(arrays) -> bool:
    """Mode "auto", kernels on, and every array a CuPy float32 C-contiguous array.
    (Called for ~600 arrays per step of GPT-1: the cheapest tests first.)"""
    if not arrays or dispatch.current_mode() != "auto" or not fused_enabled() \
            or not is_cupy_array(arrays[0]):
        return False
    nd = type(arrays[0])
    return all(type(a) is nd and a.dtype is _F32 and a.flags.c_contiguous for a in arrays)


def update_all(jobs, lr_t: float, betas, eps: float, clip=None) -> None:
    """The "cuda" implementation of the op "adam_all" (optim.update_each in one launch).
    jobs: (p, g, m, v, weight_decay) per parameter with a gradient; every array a CuPy
    float32 C-contiguous array (can_fuse_adam, checked by minigpt.dispatch before)."""
    jobs = list(jobs)
    if not jobs:
        return
    ps, gs, ms, vs, wds = zip(*jobs)
    _check_shapes(ps, gs, ms, vs, wds)
    _launch_update(ps, gs, ms, vs, wds, lr_t, betas, eps, clip)


def _supports_update_all(*arrays, **options) -> bool:
    return can_fuse_adam(arrays)


def _supports_grad_norm(*grads, **options) -> bool:
    return fused_enabled() and all(is_cupy_array(g) and g.dtype == np.float32 for g in grads)


dispatch.register("grad_norm", "cuda", grad_norm, supports=_supports_grad_norm)
dispatch.register("adam_all", "cuda", update_all, supports=_supports_update_all)
