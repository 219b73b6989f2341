"""Run minigpt's CUDA kernels on the CPU through cuda_emu.h, behind minigpt.cuda.loader's own API.

    from emulate import EmulatedKernels          # (tools/cuda_emu on sys.path)
    from minigpt.cuda import attention as A, loader as L
    with L.kernel_provider(EmulatedKernels()):
        o, lse = A.attention_forward(q, k, v)     # q, k, v: NumPy float32 arrays

Each .cu file is compiled once (g++ -std=c++20, AddressSanitizer + UBSan by default, or
ThreadSanitizer with sanitizer="thread") into a small executable that launches one kernel per
invocation; arrays travel through temporary files. A kernel object here is called exactly like
a CuPy RawKernel, `kernel(grid, block, args, shared_mem=bytes)`, and insists on the argument
hygiene the GPU needs (C-contiguous float32 arrays, np.int32 / np.float32 scalars), so the
loader's launch code is what gets tested, not a copy of it.

Slow (one OS thread per CUDA thread): meant for small shapes.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
_KERNEL_RE = re.compile(r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?(\w+)\s*\(")
_MACRO_KERNEL_RE = re.compile(r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?(\w+)##HS\s*\(")
_INSTANCE_RE = re.compile(r"^MG_FLASH_\w+\((\d+)", re.M)


class PointerTable:
    """A device array of float pointers (09_adam.cu's multi-tensor tables), emulated: the
    arrays themselves travel, and the kernel gets a float* const* to their copies."""

    def __init__(self, arrays):
        self.arrays = list(arrays)
        for a in self.arrays:
            if not (isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.c_contiguous):
                raise TypeError("a pointer table holds C-contiguous float32 NumPy arrays")
        if not self.arrays:
            raise ValueError("an empty pointer table")


def have_compiler() -> bool:
    return shutil.which("g++") is not None


def kernel_names(source: str) -> list[str]:
    """extern "C" kernels defined in a .cu file, macro-generated instantiations included."""
    names = _KERNEL_RE.findall(source)
    stems = _MACRO_KERNEL_RE.findall(source)
    sizes = _INSTANCE_RE.findall(source)
    names += [f"{stem}{hs}" for stem in stems for hs in sizes]
    return [n for n in dict.fromkeys(names) if n != "__launch_bounds__"]


class EmulatedKernel:
    """One kernel of one compiled file; called like cupy.RawKernel."""

    def __init__(self, exe: Path, name: str, timeout: float):
        self.exe, self.name, self.timeout = exe, name, timeout
        self.max_dynamic_shared_size_bytes = 48 * 1024
        self.launches = []  # (grid, block, shared_mem) of each call, for tests

    def __call__(self, grid, block, args, shared_mem=0):
        grid, block = tuple(grid), tuple(block)
        if len(grid) == 1:
            grid = grid + (1, 1)
        elif len(grid) == 2:
            grid = grid + (1,)
        if len(block) == 1:
            block = block + (1, 1)
        for g in grid + block + (shared_mem,):
            if type(g) is not int:
                raise TypeError(f"{self.name}: grid/block/shared_mem must be Python ints, got {g!r}")
        if shared_mem > 48 * 1024 and shared_mem > self.max_dynamic_shared_size_bytes:
            raise RuntimeError(f"{self.name}: {shared_mem} bytes of shared memory requested "
                               "without raising max_dynamic_shared_size_bytes first")
        self.launches.append((grid, block, shared_mem))
        with tempfile.TemporaryDirectory(prefix="mg_emu_") as tmp:
            specs, arrays = [], []
            for n, a in enumerate(args):
                if isinstance(a, PointerTable):
                    entries = []
                    for k, t in enumerate(a.arrays):
                        path = os.path.join(tmp, f"a{n}_{k}.bin")
                        t.tofile(path)
                        entries.append(f"{path}:{t.size}")
                        arrays.append((t, path))
                    specs.append("t:" + ",".join(entries))
                elif isinstance(a, np.ndarray) and a.dtype == np.int32:
                    if not a.flags.c_contiguous:
                        raise TypeError(f"{self.name} argument {n}: int32 arrays must be C-contiguous")
                    path = os.path.join(tmp, f"a{n}.bin")
                    a.tofile(path)
                    specs.append(f"I:{path}:{a.size}")
                elif isinstance(a, np.ndarray):
                    if a.dtype != np.float32 or not a.flags.c_contiguous:
                        raise TypeError(f"{self.name} argument {n}: arrays must be C-contiguous "
                                        f"float32, got {a.dtype} contiguous={a.flags.c_contiguous}")
                    path = os.path.join(tmp, f"a{n}.bin")
                    a.tofile(path)
                    specs.append(f"{'w' if a.flags.writeable else 'p'}:{path}:{a.size}")
                    if a.flags.writeable:
                        arrays.append((a, path))
                elif isinstance(a, np.int32):
                    specs.append(f"i:{int(a)}")
                elif isinstance(a, np.float32):
                    specs.append(f"f:{float(a).hex()}")
                else:
                    raise TypeError(f"{self.name} argument {n}: expected an array, np.int32 or "
                                    f"np.float32, got {type(a).__name__} (a bare Python number "
                                    "would reach the GPU with the wrong width)")
            cmd = [str(self.exe), self.name, *map(str, grid), *map(str, block), str(shared_mem),
                   *specs]
            env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0",
                       TSAN_OPTIONS="halt_on_error=1 report_signal_unsafe=0")
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout, env=env)
            if res.returncode != 0 or "ERROR:" in res.stderr or "WARNING: ThreadSanitizer" in res.stderr:
                raise RuntimeError(f"emulated kernel {self.name} failed (exit {res.returncode}):\n"
                                   f"{res.stderr[-4000:]}")
            for a, path in arrays:  # the written float buffers, pointer tables' included
                a[...] = np.fromfile(path, dtype=np.float32).reshape(a.shape)


class EmulatedKernels:
    """A kernel provider for minigpt.cuda.loader.kernel_provider(): compiles .cu files for the CPU."""

    def __init__(self, sanitizer: str = "address", cache_dir: str | os.PathLike | None = None,
                 kernel_dir: str | os.PathLike | None = None, timeout: float = 600.0):
        if sanitizer not in ("address", "thread", "none"):
            raise ValueError("sanitizer must be 'address', 'thread' or 'none'")
        self.sanitizer, self.timeout = sanitizer, timeout
        self.kernel_dir = Path(kernel_dir) if kernel_dir else REPO / "kernels"
        self.cache_dir = Path(cache_dir or Path(tempfile.gettempdir()) / "minigpt_cuda_emu")
        self._exes: dict[str, Path] = {}
        self.kernels: dict[str, EmulatedKernel] = {}

    def _flags(self):
        if self.sanitizer == "address":
            return ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                    "-fno-omit-frame-pointer"]
        if self.sanitizer == "thread":
            return ["-fsanitize=thread"]
        return []

    def build(self, filename: str) -> Path:
        if filename in self._exes:
            return self._exes[filename]
        src_path = self.kernel_dir / filename
        source = src_path.read_text()
        names = kernel_names(source)
        headers = sorted(p.read_text() for p in self.kernel_dir.glob("*.cuh"))
        key = hashlib.sha256("\0".join([source, *headers, (HERE / "cuda_emu.h").read_text(),
                                        " ".join(self._flags())]).encode()).hexdigest()[:16]
        out_dir = self.cache_dir / key
        exe = out_dir / (Path(filename).stem + ".emu")
        if not exe.exists():
            out_dir.mkdir(parents=True, exist_ok=True)
            lines = ['#include "cuda_emu.h"', f'#include "{src_path}"',
                     "int main(int argc, char** argv) {",
                     "  if (argc < 2) return 2;", "  const std::string name = argv[1];"]
            lines += [f'  if (name == "{n}") return emu_run({n}, argc, argv);' for n in names]
            lines += ['  fprintf(stderr, "cuda_emu: no kernel %s\\n", argv[1]);', "  return 2;", "}"]
            main = out_dir / (Path(filename).stem + "_emu.cpp")
            main.write_text("\n".join(lines) + "\n")
            tmp_exe = out_dir / (exe.name + f".tmp{os.getpid()}")
            cmd = ["g++", "-std=c++20", "-O1", "-g", "-pthread", "-w", *self._flags(),
                   f"-I{HERE}", f"-I{self.kernel_dir}", str(main), "-o", str(tmp_exe)]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(f"g++ could not build the emulator for {filename}:\n"
                                   f"{' '.join(cmd)}\n{res.stderr[-6000:]}")
            os.replace(tmp_exe, exe)
        self._exes[filename] = exe
        return exe

    def get_function(self, filename: str, name: str) -> EmulatedKernel:
        key = f"{filename}:{name}"
        if key not in self.kernels:
            self.kernels[key] = EmulatedKernel(self.build(filename), name, self.timeout)
        return self.kernels[key]

    # what minigpt.cuda.loader asks a provider about the device
    def max_shared_memory(self) -> int:
        return 227 * 1024  # an H100's opt-in limit

    def pointer_table(self, arrays) -> PointerTable:
        """What CupyKernels.pointer_table makes on the GPU: a table of the arrays' addresses."""
        return PointerTable(arrays)
