"""Find, compile and launch minigpt's hand-written CUDA kernels (the numbered ladder in kernels/).

    from minigpt.cuda import loader
    fn = loader.get_function("02_softmax_warp.cu", "softmax_warp_fwd")   # compiled once per GPU
    loader.launch("02_softmax_warp.cu", "softmax_warp_fwd", grid, block, args)

The launch functions of each kernel family live beside this module (minigpt/cuda/attention.py,
layers.py, adam.py); this module is what they share:
  * finding the .cu files (installed next to the package as minigpt/_cuda, or kernels/ in a
    source checkout, or $MINIGPT_KERNEL_DIR), and pasting every `#include "x.cuh"` of that
    folder into the source before compiling: CuPy's compile cache is keyed by the source
    text alone, so an edited header would otherwise be served stale;
  * compiling each file once per GPU with cupy.RawModule (CuPy itself is imported only through
    minigpt.backend), and turning a compile failure into KernelCompileError with the log;
  * argument hygiene: arrays C-contiguous float32 (never silently cast), scalars as np.int32 /
    np.float32 (a bare Python int or float would reach the kernel with the wrong width),
    grid/block as tuples of ints, the dynamic shared-memory byte count passed explicitly (and
    the function's limit raised first when it is over 48 KB);
  * the on/off switch `use_fused(False)` (or MINIGPT_FUSED=0): the CUDA implementations then
    report that they do not support their inputs, and minigpt.dispatch picks the next one.

The provider indirection (`kernel_provider`) exists for tests: tools/cuda_emu runs the same
launches on the CPU.
"""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import numpy as np

from ..backend import cupy_module, get_array_module, is_cupy_array

__all__ = ["KERNEL_FILES", "KernelCompileError", "kernel_dir", "load_source", "CupyKernels",
           "kernel_provider", "get_provider", "launch", "as_kernel_array", "as_index_array",
           "pointer_table", "address", "i32", "f32", "cdiv", "empty_output",
           "poison_outputs", "use_fused", "fused_enabled", "is_kernel_array"]

KERNEL_FILES = {
    "softmax_naive": "01_softmax_naive.cu",
    "softmax_warp": "02_softmax_warp.cu",
    "attention_naive": "03_attention_naive.cu",
    "attention_flash_fwd": "04_attention_flash_fwd.cu",
    "attention_flash_bwd": "05_attention_flash_bwd.cu",
    "layernorm": "06_layernorm.cu",
    "softmax_xent": "08_softmax_xent.cu",
    "adam": "09_adam.cu",
    "attention_flash_bwd_onepass": "10_attention_flash_bwd_onepass.cu",
    "bias_gelu": "07_bias_gelu.cu",
}
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
    package = Path(__file__).resolve().parent.parent  # minigpt/
    candidates += [package / "_cuda", package.parent / "kernels"]
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
        cupy = cupy_module()
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
        cupy = cupy_module()
        key = (filename, name, cupy.cuda.runtime.getDevice())
        fn = self._functions.get(key)
        if fn is None:
            fn = self._functions[key] = self.module(filename).get_function(name)
        return fn

    def max_shared_memory(self) -> int:
        """Bytes of shared memory one block may opt in to on the current GPU."""
        rt = cupy_module().cuda.runtime
        return int(rt.deviceGetAttribute(rt.cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                         rt.getDevice()))

    def pointer_table(self, arrays):
        """A device array of the arrays' addresses, which a kernel reads as `float* const*`
        (09_adam.cu: every parameter in one launch). The caller keeps the arrays alive."""
        cupy = cupy_module()
        return cupy.asarray(np.array([a.data.ptr for a in arrays], dtype=np.uint64))


_provider = None


def get_provider():
    """The provider launches go through: CuPy's, unless kernel_provider() put another in place."""
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


def launch(filename: str, name: str, grid, block, args, shared_mem: int = 0) -> None:
    """Launch kernel `name` of `filename` with the given grid, block, arguments and dynamic
    shared memory (bytes); raises the function's shared-memory limit first when needed."""
    provider = get_provider()
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

_F32 = np.dtype(np.float32)  # NumPy's dtypes are singletons: `a.dtype is _F32` is a fast test


def address(a) -> int:
    """Device (CuPy) or host (NumPy) address of an array's first element."""
    return a.data.ptr if is_cupy_array(a) else a.__array_interface__["data"][0]


def as_kernel_array(a, name: str = "array"):
    """`a` as a C-contiguous, 16-byte aligned float32 array (copied only when it is not).

    Aligned because the flash kernels move float4s: a contiguous view that starts mid-row
    (say x.reshape(-1)[1:]) is contiguous but would fault on a 16-byte load."""
    dtype = getattr(a, "dtype", None)
    if dtype is _F32 and is_cupy_array(a) and a.flags.c_contiguous and a.data.ptr % 16 == 0:
        return a  # the usual case on the GPU, tested cheaply (a few launches per op use this)
    if dtype != np.float32:
        raise TypeError(f"{name}: the CUDA kernels take float32 arrays, got "
                        f"{dtype if dtype is not None else type(a).__name__}")
    xp = get_array_module(a)
    a = xp.ascontiguousarray(a)
    if a.size and address(a) % 16:
        a = a.copy()  # fresh allocations are aligned (NumPy 16 bytes, CuPy 256)
    return a


def as_index_array(a, name: str = "indices", check_range: bool = True):
    """Integer array `a` as C-contiguous int32 (the kernels index with 32-bit ints); a value
    outside int32 is an OverflowError, a float array a TypeError. check_range=False skips the
    range check (it reads the values back from the GPU) where the caller validated them."""
    dtype = getattr(a, "dtype", None)
    if dtype is None or dtype.kind not in "iu":
        raise TypeError(f"{name}: the CUDA kernels take integer index arrays, got "
                        f"{dtype if dtype is not None else type(a).__name__}")
    xp = get_array_module(a)
    if dtype != np.int32:
        if check_range and a.size and dtype.itemsize >= 4 and (int(a.max()) >= 2**31 or int(a.min()) < -2**31):
            raise OverflowError(f"{name}: a value does not fit the kernels' 32-bit int")
        a = a.astype(np.int32)
    return xp.ascontiguousarray(a)


def pointer_table(arrays):
    """The arrays' addresses as a device array a kernel reads as `float* const*`, made by the
    current provider (tools/cuda_emu passes the arrays themselves). Arrays: as_kernel_array's."""
    return get_provider().pointer_table(arrays)


def i32(x, name: str = "value") -> np.int32:
    """x as the kernels' 32-bit int; OverflowError when it does not fit."""
    v = int(x)
    if not -2**31 <= v < 2**31:
        raise OverflowError(f"{name}={v} does not fit the kernels' 32-bit int")
    return np.int32(v)


def f32(x) -> np.float32:
    """x as the kernels' float (a bare Python float would be passed as a double)."""
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


def empty_output(xp, shape):
    """A fresh float32 output buffer (NaN-filled under poison_outputs, to catch unwritten elements)."""
    if _POISON:
        return xp.full(shape, np.nan, dtype=np.float32)
    return xp.empty(shape, dtype=np.float32)


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for positive ints: the number of blocks that cover a items."""
    return -(-a // b)


# ---- the on/off switch of every CUDA implementation ---------------------------------------------

_USE_FUSED = os.environ.get("MINIGPT_FUSED", "1").strip().lower() not in ("0", "false", "off", "no")


class use_fused:
    """use_fused(False) makes every op take the plain array path on CuPy arrays too (the CUDA
    implementations then decline their inputs); use_fused(True) (the default, unless
    MINIGPT_FUSED=0) uses the kernels.
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
    """Is the switch on (the CUDA implementations may run)?"""
    return _USE_FUSED


def is_kernel_array(a) -> bool:
    """A non-empty CuPy float32 array (what every kernel takes)?"""
    return is_cupy_array(a) and a.dtype == np.float32 and a.size > 0
