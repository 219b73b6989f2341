#!/usr/bin/env python3
"""Compile every kernels/*.cu for Ampere (sm_80) and Hopper (sm_90); fail on any error or spill.

    python3 tools/check_kernels.py            (make kernels-check)
    python3 tools/check_kernels.py --json out.json --arch sm_90

For each file and architecture it runs
    nvcc -cubin -arch=sm_XX --resource-usage -std=c++17 -I kernels FILE.cu
and reads ptxas' report of every kernel: registers, stack frame, spill stores/loads, shared
memory. Exit status 1 when a file does not compile or any kernel spills registers to local
memory (a stack frame without spills is reported but allowed). Needs only the standard
library and nvcc; no GPU.

When an NVRTC library can be found ($MINIGPT_NVRTC_LIB, or libnvrtc.so next to nvcc or in an
installed nvidia-cuda-nvrtc wheel) it also compiles each file the way minigpt/cuda/loader.py does
at run time (headers pasted in, NVRTC, no system headers): a kernel that builds with nvcc but
not with NVRTC would otherwise fail only on the GPU machine.
"""
from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KERNEL_DIR = REPO / "kernels"
ARCHS = ("sm_80", "sm_90")
OPTIONS = ("-std=c++17",)  # the same as minigpt/cuda/loader.py COMPILE_OPTIONS

_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(\w+)'")
_PROPS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers(?:.*?(\d+) bytes smem)?")
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"[ \t]*$', re.M)


def parse_ptxas(text: str) -> list[dict]:
    """Per-kernel resource lines of `nvcc --resource-usage` output."""
    kernels, cur = [], None
    for line in text.splitlines():
        m = _ENTRY.search(line)
        if m:
            cur = {"kernel": m.group(1), "arch": m.group(2), "registers": None, "stack": 0,
                   "spill_stores": 0, "spill_loads": 0, "smem": 0}
            kernels.append(cur)
            continue
        if cur is None:
            continue
        m = _PROPS.search(line)
        if m:
            cur["stack"], cur["spill_stores"], cur["spill_loads"] = map(int, m.groups())
            continue
        m = _USED.search(line)
        if m:
            cur["registers"] = int(m.group(1))
            cur["smem"] = int(m.group(2) or 0)
    return kernels


def compile_nvcc(nvcc: str, path: Path, arch: str) -> tuple[bool, str, list[dict]]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [nvcc, "-cubin", f"-arch={arch}", "--resource-usage", *OPTIONS, f"-I{KERNEL_DIR}",
               "-o", os.path.join(tmp, "k.cubin"), str(path)]
        res = subprocess.run(cmd, capture_output=True, text=True)
    log = res.stdout + res.stderr
    return res.returncode == 0, log, parse_ptxas(log)


def inline_source(name: str, directory: Path = KERNEL_DIR) -> str:
    """The loader's header pasting (minigpt.cuda.loader.load_source), without importing minigpt."""
    seen: set[str] = set()

    def expand(fname: str) -> str:
        def repl(m):
            inc = m.group(1)
            if not (directory / inc).is_file():
                return m.group(0)
            if inc in seen:
                return ""
            seen.add(inc)
            return expand(inc)
        return _INCLUDE.sub(repl, (directory / fname).read_text())

    return expand(name)


def find_nvrtc(nvcc: str | None) -> str | None:
    env = os.environ.get("MINIGPT_NVRTC_LIB")
    if env:
        return env
    cands = []
    if nvcc:
        root = Path(nvcc).resolve().parent.parent
        cands += sorted(glob.glob(str(root / "lib64" / "libnvrtc.so*")))
    for p in sys.path:
        cands += sorted(glob.glob(os.path.join(p, "nvidia", "cu*", "lib", "libnvrtc.so*")))
        cands += sorted(glob.glob(os.path.join(p, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so*")))
    cands = [c for c in cands if "alt" not in os.path.basename(c) and "builtins" not in c]
    return cands[0] if cands else None


def load_nvrtc(lib: str):
    """ctypes handle on NVRTC, with its builtins library (same folder) loaded first."""
    for b in sorted(glob.glob(os.path.join(os.path.dirname(lib), "libnvrtc-builtins.so*"))):
        if ".alt." not in b:
            ctypes.CDLL(b, mode=ctypes.RTLD_GLOBAL)
    return ctypes.CDLL(lib)


def compile_nvrtc(nvrtc, name: str, source: str, arch: str) -> tuple[bool, str]:
    prog = ctypes.c_void_p()
    r = nvrtc.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None)
    if r:
        return False, f"nvrtcCreateProgram failed ({r})"
    opts = [f"--gpu-architecture={arch}".encode(), *(o.encode() for o in OPTIONS)]
    arr = (ctypes.c_char_p * len(opts))(*opts)
    r = nvrtc.nvrtcCompileProgram(prog, len(opts), arr)
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    buf = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(prog, buf)
    nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))
    return r == 0, buf.value.decode(errors="replace")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", action="append", help="target(s), default sm_80 and sm_90")
    ap.add_argument("--json", help="also write the table as JSON here")
    ap.add_argument("--no-nvrtc", action="store_true", help="skip the NVRTC pass")
    args = ap.parse_args(argv)
    archs = args.arch or list(ARCHS)

    nvcc = shutil.which("nvcc")
    if nvcc is None:
        print("check_kernels: nvcc is not on PATH (install the CUDA toolkit)", file=sys.stderr)
        return 2
    files = sorted(KERNEL_DIR.glob("*.cu"))
    if not files:
        print(f"check_kernels: no .cu files in {KERNEL_DIR}", file=sys.stderr)
        return 2

    rows, problems = [], []
    for path in files:
        for arch in archs:
            ok, log, kernels = compile_nvcc(nvcc, path, arch)
            if not ok:
                problems.append(f"{path.name} [{arch}] does not compile:\n{log}")
                continue
            if not kernels:
                problems.append(f"{path.name} [{arch}]: no kernel found in ptxas' report")
            for k in kernels:
                k["file"] = path.name
                rows.append(k)
                if k["spill_stores"] or k["spill_loads"]:
                    problems.append(f"{path.name} [{arch}] {k['kernel']}: spills "
                                    f"{k['spill_stores']} B stores / {k['spill_loads']} B loads")

    nvrtc_note = "NVRTC pass skipped (--no-nvrtc)"
    if not args.no_nvrtc:
        lib = find_nvrtc(nvcc)
        if lib is None:
            nvrtc_note = ("NVRTC pass skipped: no libnvrtc found (set MINIGPT_NVRTC_LIB or "
                          "pip install nvidia-cuda-nvrtc)")
        else:
            n_ok = 0
            try:
                handle = load_nvrtc(lib)
            except OSError as e:
                handle, nvrtc_note = None, f"NVRTC pass skipped: cannot load {lib}: {e}"
            for path in files if handle is not None else []:
                ok, log = compile_nvrtc(handle, path.name, inline_source(path.name), archs[-1])
                if not ok and "libnvrtc-builtins" in log:
                    nvrtc_note = f"NVRTC pass skipped: {lib} cannot find its builtins library"
                    break
                if ok:
                    n_ok += 1
                else:
                    problems.append(f"{path.name}: NVRTC (as the loader compiles it) failed:\n{log}")
            else:
                nvrtc_note = f"NVRTC ({lib}): {n_ok}/{len(files)} files compile for {archs[-1]}"

    w = max([len(r["file"]) for r in rows] + [4])
    kw = max([len(r["kernel"]) for r in rows] + [6])
    print(f"{'file':<{w}}  {'kernel':<{kw}}  arch   regs  stack  spill(st/ld)  smem")
    for r in sorted(rows, key=lambda r: (r["file"], r["kernel"], r["arch"])):
        flag = "  <-- SPILL" if r["spill_stores"] or r["spill_loads"] else ""
        print(f"{r['file']:<{w}}  {r['kernel']:<{kw}}  {r['arch']}  {r['registers'] or 0:>4}  "
              f"{r['stack']:>5}  {r['spill_stores']:>5}/{r['spill_loads']:<6}  {r['smem']:>4}{flag}")
    print(nvrtc_note)
    if args.json:
        Path(args.json).write_text(json.dumps({"kernels": rows, "problems": problems,
                                               "nvrtc": nvrtc_note}, indent=1))
    if problems:
        print("\nFAILED:", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 1
    print(f"OK: {len(files)} files, {len(rows)} kernel builds, no spills")
    return 0


if __name__ == "__main__":
    sys.exit(main())
