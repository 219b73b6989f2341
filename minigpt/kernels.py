"""Load and launch minigpt's hand-written CUDA kernels (the numbered ladder in kernels/*.cu).

    import minigpt.kernels as K
    y = K.softmax_forward(x, scale=0.125, causal=True)          # x: a CuPy float32 array
    o, lse = K.attention_forward(q, k, v, causal=True)          # (B, nh, T, hs) each
    dq, dk, dv = K.attention_backward(q, k, v, o, lse, do)

The files, simplest first (each one's header says what it changes, its launch shape and its
memory layout):
    01_softmax_naive.cu        scaled causal softmax, one thread per row
    02_softmax_warp.cu         the same, one warp per row, online max/sum in one pass
    03_attention_naive.cu      attention forward + backward, one thread per row
    04_attention_flash_fwd.cu  tiled forward with the online softmax, saves O and the row lse
    05_attention_flash_bwd.cu  tiled backward from the lse, dQ and dK/dV in separate kernels

What this module does for them:
  * finds the .cu files (installed next to the package as minigpt/_cuda, or kernels/ in a
    source checkout, or $MINIGPT_KERNEL_DIR), and pastes every `#include "x.cuh"` of that
    folder into the source before compiling: CuPy's compile cache is keyed by the source
    text alone, so an edited header would otherwise be served stale;
  * compiles each file once per GPU with cupy.RawModule (CuPy itself is imported only through
    minigpt.backend), and turns a compile failure into KernelCompileError with the log;
  * argument hygiene: arrays C-contiguous float32 (never silently cast), scalars as np.int32 /
    np.float32 (a bare Python int or float would reach the kernel with the wrong width),
    grid/block as tuples of ints, the dynamic shared-memory byte count passed explicitly (and
    the function's limit raised first when it is over 48 KB).

The provider indirection (`kernel_provider`) exists for tests: tools/cuda_emu runs the same
launches on the CPU.  `use_fused(False)` (or MINIGPT_FUSED=0) makes F.attention and
F.softmax ignore the kernels, to compare against the plain CuPy path.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
from pathlib import Path

import numpy as np

from .backend import _cupy_module, get_array_module, is_cupy_array

__all__ = ["KERNEL_FILES", "FLASH_TILES", "KernelCompileError", "kernel_dir", "load_source",
           "softmax_forward", "softmax_backward", "attention_forward", "attention_backward",
           "use_fused", "fused_enabled", "can_fuse_attention", "can_fuse_softmax",
           "kernel_provider", "poison_outputs"]

KERNEL_FILES = {
    "softmax_naive": "01_softmax_naive.cu",
    "softmax_warp": "02_softmax_warp.cu",
    "attention_naive": "03_attention_naive.cu",
    "attention_flash_fwd": "04_attention_flash_fwd.cu",
    "attention_flash_bwd": "05_attention_flash_bwd.cu",
}
SOFTMAX_VARIANTS = ("naive", "warp")
ATTENTION_VARIANTS = ("naive", "flash")

# Flash kernels: head size -> BN, the rows of the streamed tile (keys in the forward and the dQ
# kernel, queries in the dK/dV kernel). Must match the MG_FLASH_FWD/MG_FLASH_BWD lines of
# 04/05 (tests/test_kernels_cpu.py checks). The block always owns 64 rows with 256 threads.
FLASH_TILES = {32: 64, 64: 64, 128: 32}
FLASH_THREADS = 256
FLASH_ROWS = 64
SOFTMAX_THREADS = 128
NAIVE_ATTENTION_THREADS = 128
COMPILE_OPTIONS = ("-std=c++17",)
_STATIC_SMEM_LIMIT = 48 * 1024  # above this a kernel must opt in to more dynamic shared memory

_INCLUDE_RE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"[ \t]*$', re.M)


class KernelCompileError(RuntimeError):
    """A .cu file failed to compile; the message carries the compiler's log."""


# ---- finding and preparing the sources --------------------------------------------------------

def kernel_dir() -> Path:
    """The folder holding the .cu files: $MINIGPT_KERNEL_DIR, else the installed copy
    (minigpt/_cuda, put there by setup.py), else kernels/ beside the package (a checkout)."""
    env = os.environ.get("MINIGPT_KERNEL_DIR")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve().parent
    candidates += [here / "_cuda", here.parent / "kernels"]
    for c in candidates:
        if (c / KERNEL_FILES["softmax_naive"]).is_file():
            return c
    raise FileNotFoundError("minigpt's CUDA sources were not found; looked in "
                            + ", ".join(str(c) for c in candidates)
                            + " (set MINIGPT_KERNEL_DIR to the folder holding the .cu files)")


def load_source(filename: str, directory: str | os.PathLike | None = None) -> str:
    """The text of one .cu file with each `#include "x"` of its own folder pasted in, once
    (as #pragma once would); includes of files not in that folder are left alone."""
    directory = Path(directory) if directory is not None else kernel_dir()
    seen: set[str] = set()

    def expand(name: str, stack: tuple[str, ...]) -> str:
        path = directory / name
        text = path.read_text(encoding="utf-8")

        def repl(m):
            inc = m.group(1)
            if not (directory / inc).is_file():
                return m.group(0)
            if inc in stack:
                raise ValueError(f"{name}: circular #include of {inc}")
            if inc in seen:
                return f"// (already included: {inc})"
            seen.add(inc)
            return f"// ---- begin {inc} ----\n{expand(inc, stack + (inc,))}\n// ---- end {inc} ----"

        return _INCLUDE_RE.sub(repl, text)

    return expand(filename, (filename,))


# ---- providers: who compiles and launches -----------------------------------------------------

class CupyKernels:
    """Compiles each .cu file once per GPU with cupy.RawModule and hands out its functions."""

    def __init__(self):
        self._modules = {}    # (filename, device id) -> RawModule
        self._functions = {}  # (filename, name, device id) -> RawKernel

    def module(self, filename: str):
        cupy = _cupy_module()
        dev = cupy.cuda.runtime.getDevice()
        key = (filename, dev)
        mod = self._modules.get(key)
        if mod is None:
            source = load_source(filename)
            mod = cupy.RawModule(code=source, options=COMPILE_OPTIONS)
            try:
                mod.compile()
            except Exception as e:  # cupy.cuda.compiler.CompileException carries the log
                if type(e).__name__ != "CompileException":
                    raise
                raise KernelCompileError(f"compiling {filename} (from {kernel_dir()}) failed:\n"
                                         f"{e}") from None
            self._modules[key] = mod
        return mod

    def get_function(self, filename: str, name: str):
        cupy = _cupy_module()
        key = (filename, name, cupy.cuda.runtime.getDevice())
        fn = self._functions.get(key)
        if fn is None:
            fn = self._functions[key] = self.module(filename).get_function(name)
        return fn

    def max_shared_memory(self) -> int:
        """Bytes of shared memory one block may opt in to on the current GPU."""
        rt = _cupy_module().cuda.runtime
        return int(rt.deviceGetAttribute(rt.cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                         rt.getDevice()))


_provider = None


def _get_provider():
    global _provider
    if _provider is None:
        _provider = CupyKernels()
    return _provider


@contextlib.contextmanager
def kernel_provider(provider):
    """Launch through `provider` inside the block (tests: tools/cuda_emu's EmulatedKernels)."""
    global _provider
    previous, _provider = _provider, provider
    try:
        yield provider
    finally:
        _provider = previous


def _launch(filename: str, name: str, grid, block, args, shared_mem: int = 0) -> None:
    provider = _get_provider()
    fn = provider.get_function(filename, name)
    grid = tuple(int(g) for g in grid)
    block = tuple(int(b) for b in block)
    shared_mem = int(shared_mem)
    if shared_mem > _STATIC_SMEM_LIMIT:
        limit = provider.max_shared_memory()
        if shared_mem > limit:
            raise RuntimeError(f"{name} needs {shared_mem} bytes of shared memory per block; "
                               f"this GPU allows {limit}")
        if fn.max_dynamic_shared_size_bytes < shared_mem:
            fn.max_dynamic_shared_size_bytes = shared_mem
    fn(grid, block, tuple(args), shared_mem=shared_mem)


# ---- argument hygiene -------------------------------------------------------------------------

def _address(a) -> int:
    """Device (CuPy) or host (NumPy) address of an array's first element."""
    return a.data.ptr if is_cupy_array(a) else a.__array_interface__["data"][0]


def as_kernel_array(a, name: str = "array"):
    """`a` as a C-contiguous, 16-byte aligned float32 array (copied only when it is not).

    Aligned because the flash kernels move float4s: a contiguous view that starts mid-row
    (say x.reshape(-1)[1:]) is contiguous but would fault on a 16-byte load."""
    dtype = getattr(a, "dtype", None)
    if dtype != np.float32:
        raise TypeError(f"{name}: the CUDA kernels take float32 arrays, got "
                        f"{dtype if dtype is not None else type(a).__name__}")
    xp = get_array_module(a)
    a = xp.ascontiguousarray(a)
    if a.size and _address(a) % 16:
        a = a.copy()  # fresh allocations are aligned (NumPy 16 bytes, CuPy 256)
    return a


def i32(x, name: str = "value") -> np.int32:
    v = int(x)
    if not -2**31 <= v < 2**31:
        raise OverflowError(f"{name}={v} does not fit the kernels' 32-bit int")
    return np.int32(v)


def f32(x) -> np.float32:
    return np.float32(x)


_POISON = False


class poison_outputs:
    """Fill every output buffer with NaN before the launch (tests: catch unwritten elements).
    Takes effect at once; as a context manager it restores the previous setting on exit."""

    def __init__(self, enabled: bool = True):
        global _POISON
        self._previous, _POISON = _POISON, bool(enabled)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _POISON
        _POISON = self._previous


def _empty(xp, shape):
    if _POISON:
        return xp.full(shape, np.nan, dtype=np.float32)
    return xp.empty(shape, dtype=np.float32)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


# ---- the on/off switch for F.attention / F.softmax ----------------------------------------------

_USE_FUSED = os.environ.get("MINIGPT_FUSED", "1").strip().lower() not in ("0", "false", "off", "no")


class use_fused:
    """use_fused(False) makes F.attention and F.softmax take the plain array path on CuPy
    arrays too; use_fused(True) (the default, unless MINIGPT_FUSED=0) uses the kernels.
    Takes effect at once; `with use_fused(False): ...` restores the previous setting."""

    def __init__(self, enabled: bool = True):
        global _USE_FUSED
        self._previous, _USE_FUSED = _USE_FUSED, bool(enabled)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _USE_FUSED
        _USE_FUSED = self._previous


def fused_enabled() -> bool:
    return _USE_FUSED


def can_fuse_softmax(x, axis: int = -1) -> bool:
    """Should F.softmax(x, axis) run the kernel? CuPy float32, last axis, switch on."""
    return (_USE_FUSED and is_cupy_array(x) and x.dtype == np.float32 and x.ndim >= 1
            and axis in (-1, x.ndim - 1) and x.size > 0)


def can_fuse_attention(q, k, v) -> bool:
    """Should F.attention run the flash kernels? CuPy float32, head size 32/64/128, switch on."""
    return (_USE_FUSED and all(is_cupy_array(a) for a in (q, k, v))
            and all(a.dtype == np.float32 for a in (q, k, v))
            and q.ndim == 4 and q.shape[-1] in FLASH_TILES and q.size > 0 and k.size > 0)


# ---- softmax (01, 02) -------------------------------------------------------------------------

def softmax_launch(variant: str, rows: int):
    """(file, grid, block) of a softmax kernel over `rows` rows."""
    if variant == "naive":
        return KERNEL_FILES["softmax_naive"], (_cdiv(rows, SOFTMAX_THREADS),), (SOFTMAX_THREADS,)
    if variant == "warp":
        per_block = SOFTMAX_THREADS // 32
        return KERNEL_FILES["softmax_warp"], (_cdiv(rows, per_block),), (SOFTMAX_THREADS,)
    raise ValueError(f"softmax variant must be one of {SOFTMAX_VARIANTS}, got {variant!r}")


def _softmax_shape(x, causal):
    if x.ndim < 1:
        raise ValueError("softmax needs at least one axis")
    L = x.shape[-1]
    rows = x.size // L if L else 0
    if causal:
        if x.ndim < 2:
            raise ValueError("causal softmax needs (..., Tq, Tk) input")
        Tq = x.shape[-2]
        if Tq > L:
            raise ValueError(f"causal softmax needs Tq <= Tk, got {Tq} > {L}")
    else:
        Tq = 1
    return rows, L, Tq


def softmax_forward(x, scale: float = 1.0, causal: bool = False, variant: str = "warp"):
    """y = softmax(scale * x) over the last axis; causal: x is (..., Tq, Tk) scores and query
    i sees keys j <= i + (Tk - Tq) (others get y = 0)."""
    x = as_kernel_array(x, "x")
    rows, L, Tq = _softmax_shape(x, causal)
    y = _empty(get_array_module(x), x.shape)
    if rows == 0:
        return y
    fname, grid, block = softmax_launch(variant, rows)
    _launch(fname, f"softmax_{variant}_fwd", grid, block,
            (x, y, i32(rows, "rows"), i32(L, "L"), i32(Tq, "Tq"), f32(scale), i32(causal)))
    return y


def softmax_backward(y, g, scale: float = 1.0, causal: bool = False, variant: str = "warp"):
    """dx = scale * y * (g - sum(g * y)) over the last axis (the gradient w.r.t. x of
    softmax_forward(x, scale, causal) given its output y and the upstream gradient g)."""
    y = as_kernel_array(y, "y")
    g = as_kernel_array(g, "g")
    if g.shape != y.shape:
        raise ValueError(f"softmax_backward: g {g.shape} and y {y.shape} differ")
    rows, L, Tq = _softmax_shape(y, causal)
    dx = _empty(get_array_module(y), y.shape)
    if rows == 0:
        return dx
    fname, grid, block = softmax_launch(variant, rows)
    _launch(fname, f"softmax_{variant}_bwd", grid, block,
            (y, g, dx, i32(rows, "rows"), i32(L, "L"), i32(Tq, "Tq"), f32(scale), i32(causal)))
    return dx


# ---- attention (03, 04, 05) -------------------------------------------------------------------

def flash_smem_bytes(kernel: str, hs: int) -> int:
    """Dynamic shared memory of a flash kernel ("fwd", "dq" or "dkdv"), as laid out in 04/05."""
    if hs not in FLASH_TILES:
        raise ValueError(f"the flash kernels support head sizes {sorted(FLASH_TILES)}, got {hs}")
    bn, ld = FLASH_TILES[hs], hs + 4
    R = FLASH_ROWS
    floats = {
        "fwd": (R + 2 * bn) * ld + R * (bn + 4),                   # Q, K, V, P
        "dq": (2 * R + 2 * bn) * ld + R * (bn + 4),                # Q, dO, K, V, dS
        "dkdv": (2 * R + 2 * bn) * ld + 2 * R * (bn + 4) + 2 * bn,  # K, V, Q, dO, P, dS, lse, D
    }[kernel]
    return 4 * floats


def flash_launch(kernel: str, BH: int, Tq: int, Tk: int, hs: int):
    """(grid, block, shared bytes) of a flash kernel: "fwd", "dq", "dkdv" or "preprocess"."""
    if kernel == "preprocess":
        return (_cdiv(BH * Tq, FLASH_THREADS // 32),), (FLASH_THREADS,), 0
    rows = Tk if kernel == "dkdv" else Tq
    return (BH, _cdiv(rows, FLASH_ROWS)), (FLASH_THREADS,), flash_smem_bytes(kernel, hs)


def _check_attention(q, k, v, causal, variant):
    if variant not in ATTENTION_VARIANTS:
        raise ValueError(f"attention variant must be one of {ATTENTION_VARIANTS}, got {variant!r}")
    if q.ndim != 4 or k.shape != v.shape or k.ndim != 4 or q.shape[:2] != k.shape[:2] \
            or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"attention: q {q.shape}, k {k.shape}, v {v.shape} do not fit "
                         "(B, nh, Tq, hs), (B, nh, Tk, hs), (B, nh, Tk, hs)")
    B, nh, Tq, hs = q.shape
    Tk = k.shape[2]
    if causal and Tq > Tk:
        raise ValueError(f"attention: causal attention needs Tq <= Tk, got {Tq} > {Tk}")
    if variant == "flash" and hs not in FLASH_TILES:
        raise ValueError(f"the flash kernels support head sizes {sorted(FLASH_TILES)}, got {hs}")
    return B, nh, Tq, Tk, hs


def _padding(padding_mask, B, Tk, xp):
    """(mask array, has_mask): padding (B, Tk) as float32 1/0, or a 1-element stand-in."""
    if padding_mask is None:
        return xp.zeros(1, dtype=np.float32), np.int32(0)
    pm = xp.asarray(padding_mask)
    if pm.shape != (B, Tk):
        raise ValueError(f"attention: padding_mask shape {pm.shape} should be (B, Tk) = {(B, Tk)}")
    return xp.ascontiguousarray(pm != 0, dtype=np.float32), np.int32(1)


def attention_forward(q, k, v, causal: bool = True, padding_mask=None, variant: str = "flash"):
    """Masked scaled dot-product attention: returns (O (B, nh, Tq, hs), lse (B, nh, Tq)).

    lse is the natural log-sum-exp of each row's scaled scores (+inf for a row that sees no
    key; its O row is 0): what attention_backward needs to recompute the probabilities."""
    q, k, v = (as_kernel_array(a, n) for a, n in ((q, "q"), (k, "k"), (v, "v")))
    B, nh, Tq, Tk, hs = _check_attention(q, k, v, causal, variant)
    xp = get_array_module(q)
    pad, has_pad = _padding(padding_mask, B, Tk, xp)
    o = _empty(xp, q.shape)
    lse = _empty(xp, (B, nh, Tq))
    BH = B * nh
    if BH * Tq == 0:
        return o, lse
    if Tk == 0:
        o[...] = 0
        lse[...] = np.inf
        return o, lse
    scale = f32(1.0 / math.sqrt(hs))
    dims = (i32(nh), i32(Tq, "Tq"), i32(Tk, "Tk"))
    if variant == "flash":
        fname = KERNEL_FILES["attention_flash_fwd"]
        grid, block, smem = flash_launch("fwd", BH, Tq, Tk, hs)
        _launch(fname, f"flash_fwd_hs{hs}", grid, block,
                (q, k, v, pad, o, lse, *dims, scale, i32(causal), has_pad), smem)
    else:
        fname = KERNEL_FILES["attention_naive"]
        i32(BH * Tq, "BH*Tq")  # the kernel indexes threads with a 32-bit int
        grid = (_cdiv(BH * Tq, NAIVE_ATTENTION_THREADS),)
        _launch(fname, "attn_naive_fwd", grid, (NAIVE_ATTENTION_THREADS,),
                (q, k, v, pad, o, lse, i32(BH), *dims, i32(hs), scale, i32(causal), has_pad))
    return o, lse


def attention_backward(q, k, v, o, lse, do, causal: bool = True, padding_mask=None,
                       variant: str = "flash"):
    """(dq, dk, dv) of attention_forward given its inputs, O, lse and the upstream dO."""
    q, k, v, o, lse, do = (as_kernel_array(a, n) for a, n in
                           ((q, "q"), (k, "k"), (v, "v"), (o, "o"), (lse, "lse"), (do, "dO")))
    B, nh, Tq, Tk, hs = _check_attention(q, k, v, causal, variant)
    if o.shape != q.shape or do.shape != q.shape or lse.shape != (B, nh, Tq):
        raise ValueError(f"attention_backward: o {o.shape}, dO {do.shape}, lse {lse.shape} do "
                         f"not fit q {q.shape}")
    xp = get_array_module(q)
    pad, has_pad = _padding(padding_mask, B, Tk, xp)
    BH = B * nh
    dq, dk, dv = _empty(xp, q.shape), _empty(xp, k.shape), _empty(xp, v.shape)
    if BH == 0 or Tq == 0 or Tk == 0:
        for a in (dq, dk, dv):
            a[...] = 0
        return dq, dk, dv
    D = _empty(xp, (B, nh, Tq))
    scale = f32(1.0 / math.sqrt(hs))
    dims = (i32(nh), i32(Tq, "Tq"), i32(Tk, "Tk"))
    flags = (scale, i32(causal), has_pad)
    if variant == "flash":
        fname = KERNEL_FILES["attention_flash_bwd"]
        grid, block, _ = flash_launch("preprocess", BH, Tq, Tk, hs)
        _launch(fname, "flash_bwd_preprocess", grid, block,
                (o, do, D, i32(BH * Tq, "BH*Tq"), i32(hs)))
        grid, block, smem = flash_launch("dkdv", BH, Tq, Tk, hs)
        _launch(fname, f"flash_bwd_dkdv_hs{hs}", grid, block,
                (q, k, v, do, lse, D, pad, dk, dv, *dims, *flags), smem)
        grid, block, smem = flash_launch("dq", BH, Tq, Tk, hs)
        _launch(fname, f"flash_bwd_dq_hs{hs}", grid, block,
                (q, k, v, do, lse, D, pad, dq, *dims, *flags), smem)
    else:
        fname = KERNEL_FILES["attention_naive"]
        threads = NAIVE_ATTENTION_THREADS
        i32(BH * max(Tq, Tk), "BH*T")
        _launch(fname, "attn_naive_bwd_dq", (_cdiv(BH * Tq, threads),), (threads,),
                (q, k, v, o, lse, do, pad, dq, D, i32(BH), *dims, i32(hs), *flags))
        _launch(fname, "attn_naive_bwd_dkdv", (_cdiv(BH * Tk, threads),), (threads,),
                (q, k, v, lse, D, do, pad, dk, dv, i32(BH), *dims, i32(hs), *flags))
    return dq, dk, dv
