"""CPU-side tests of the CUDA kernel work: no GPU needed.

1. The NumPy tiled (flash) attention of minigpt.cuda.tiled_attention against functional.attention
   in float64: forward and all three gradients, T not a multiple of the tile, T = 1, Tq < Tk
   (cached decoding), padding masks including fully padded rows, non-causal.
2. The loader (minigpt.cuda.loader) and the attention launchers (minigpt.cuda.attention): finding the sources, pasting headers, tile tables that match
   the .cu files, shared-memory sizes, argument hygiene, the on/off switch, the compile-error
   message, and its launch code end to end through a fake provider.
3. The .cu files themselves: `make kernels-check` (nvcc for sm_80 and sm_90, no spills) when
   nvcc is on PATH, and the real kernels run on the CPU through tools/cuda_emu (g++, with
   AddressSanitizer, and ThreadSanitizer for missing barriers) against float64 references.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minigpt.cuda import attention as A
from minigpt.cuda import loader as L
from minigpt import Tensor
from minigpt import functional as F
from minigpt.cuda.tiled_attention import (TiledAttention, flash_attention_backward,
                                     flash_attention_forward, tiled_attention)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools" / "cuda_emu"))
import emulate  # noqa: E402  (tools/cuda_emu/emulate.py)

HAVE_NVCC = shutil.which("nvcc") is not None
HAVE_GXX = emulate.have_compiler()
requires_nvcc = pytest.mark.skipif(not HAVE_NVCC, reason="nvcc (CUDA toolkit) is not on PATH")
requires_gxx = pytest.mark.skipif(not HAVE_GXX, reason="g++ is not on PATH: the CPU emulator "
                                  "of the CUDA kernels (tools/cuda_emu) needs it")


def _qkv(rng, B, nh, Tq, Tk, hs, dtype=np.float64):
    q = rng.standard_normal((B, nh, Tq, hs)).astype(dtype)
    k = rng.standard_normal((B, nh, Tk, hs)).astype(dtype)
    v = rng.standard_normal((B, nh, Tk, hs)).astype(dtype)
    return q, k, v


def _padding(rng, B, Tk, empty_row=True):
    pm = (rng.random((B, Tk)) > 0.3).astype(np.float64)
    pm[:, 0] = 1.0
    if empty_row:
        pm[0] = 0.0  # batch entry 0: every key padded, every query row sees nothing
    return pm


def _reference(q, k, v, g, causal, pm):
    """functional.attention's output and gradients (float64)."""
    qt, kt, vt = (Tensor(a, requires_grad=True) for a in (q, k, v))
    out = F.attention(qt, kt, vt, causal=causal, padding_mask=pm)
    out.backward(g)
    return out.data, qt.grad, kt.grad, vt.grad


# ---- 1. the NumPy tiled algorithm --------------------------------------------------------------

TILED_CASES = [
    # B, nh, Tq, Tk, hs, causal, padded, block_q, block_k
    (2, 3, 100, 100, 16, True, False, 64, 64),   # T not a multiple of the tile
    (2, 2, 1, 1, 8, True, False, 64, 64),        # T = 1
    (1, 2, 1, 37, 8, True, False, 16, 16),       # one new token against a cache
    (2, 2, 7, 40, 8, True, True, 4, 16),         # Tq < Tk with padding
    (3, 1, 50, 50, 8, True, True, 16, 8),        # padding incl. a fully padded batch entry
    (2, 2, 33, 21, 8, False, True, 8, 16),       # non-causal, Tq > Tk
    (1, 1, 64, 64, 32, True, False, 64, 64),     # exactly one tile
    (1, 2, 130, 130, 8, True, False, 32, 48),    # unequal tiles
]


@pytest.mark.parametrize("B,nh,Tq,Tk,hs,causal,padded,bq,bk", TILED_CASES)
def test_tiled_attention_matches_naive_float64(B, nh, Tq, Tk, hs, causal, padded, bq, bk):
    rng = np.random.default_rng(hash((B, nh, Tq, Tk, hs, causal, padded, bq, bk)) % 2**32)
    q, k, v = _qkv(rng, B, nh, Tq, Tk, hs)
    pm = _padding(rng, B, Tk) if padded else None
    g = rng.standard_normal((B, nh, Tq, hs))
    ref = _reference(q, k, v, g, causal, pm)
    o, lse = flash_attention_forward(q, k, v, causal, pm, bq, bk)
    grads = flash_attention_backward(q, k, v, o, lse, g, causal, pm, bq, bk)
    for name, got, want in zip(("o", "dq", "dk", "dv"), (o, *grads), ref):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=name)


def test_tiled_lse_is_the_row_logsumexp_and_inf_for_empty_rows():
    rng = np.random.default_rng(3)
    q, k, v = _qkv(rng, 2, 2, 9, 9, 8)
    pm = _padding(rng, 2, 9)
    _, lse = flash_attention_forward(q, k, v, True, pm, 4, 4)
    s = q @ k.swapaxes(-1, -2) / np.sqrt(8)
    mask = F.attention_mask(9, 9, True, pm)
    s = np.where(mask, s, -np.inf)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = s.max(-1, keepdims=True)
        want = (m + np.log(np.exp(s - np.where(np.isfinite(m), m, 0)).sum(-1, keepdims=True)))[..., 0]
    empty = ~mask.any(-1)  # (B, 1, Tq) rows with no visible key
    empty = np.broadcast_to(empty, lse.shape)
    assert np.all(np.isposinf(lse[empty]))
    np.testing.assert_allclose(lse[~empty], want[~empty], rtol=1e-12)


def test_tiled_attention_function_gradients_match_functional():
    rng = np.random.default_rng(5)
    q, k, v = _qkv(rng, 2, 2, 11, 11, 8)
    g = rng.standard_normal(q.shape)
    ref = _reference(q, k, v, g, True, None)
    qt, kt, vt = (Tensor(a, requires_grad=True) for a in (q, k, v))
    out = tiled_attention(qt, kt, vt, causal=True, block_q=4, block_k=3)
    out.backward(g)
    for got, want in zip((out.data, qt.grad, kt.grad, vt.grad), ref):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert isinstance(out.creator, TiledAttention)


def test_tiled_attention_float32_stays_float32():
    rng = np.random.default_rng(6)
    q, k, v = _qkv(rng, 1, 1, 5, 5, 4, np.float32)
    o, lse = flash_attention_forward(q, k, v)
    assert o.dtype == np.float32 and lse.dtype == np.float32


# ---- 2. the loader ---------------------------------------------------------------------------

def test_kernel_dir_finds_the_sources_and_env_overrides(tmp_path, monkeypatch):
    d = L.kernel_dir()
    for f in L.KERNEL_FILES.values():
        assert (d / f).is_file(), f
    monkeypatch.setenv("MINIGPT_KERNEL_DIR", str(tmp_path))
    (tmp_path / L.KERNEL_FILES["softmax_naive"]).write_text("// stub\n")
    assert L.kernel_dir() == tmp_path


def test_kernel_dir_missing_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGPT_KERNEL_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setattr(L, "__file__", str(tmp_path / "pkg" / "cuda" / "loader.py"))
    with pytest.raises(FileNotFoundError, match="MINIGPT_KERNEL_DIR"):
        L.kernel_dir()


def test_load_source_pastes_each_header_once(tmp_path):
    (tmp_path / "a.cuh").write_text('#pragma once\n#include "b.cuh"\nint a;\n')
    (tmp_path / "b.cuh").write_text("#pragma once\nint b;\n")
    (tmp_path / "k.cu").write_text('#include "a.cuh"\n  #include "b.cuh"\n#include <cstdio>\n'
                                   '#include "missing.h"\nint k;\n')
    src = L.load_source("k.cu", tmp_path)
    assert src.count("int a;") == 1 and src.count("int b;") == 1
    assert '#include "a.cuh"' not in src and '#include "b.cuh"' not in src
    assert "#include <cstdio>" in src and '#include "missing.h"' in src  # left alone
    assert src.index("int b;") < src.index("int a;") < src.index("int k;")


def test_load_source_rejects_circular_includes(tmp_path):
    (tmp_path / "a.cuh").write_text('#include "b.cuh"\n')
    (tmp_path / "b.cuh").write_text('#include "a.cuh"\n')
    (tmp_path / "k.cu").write_text('#include "a.cuh"\n')
    with pytest.raises(ValueError, match="circular"):
        L.load_source("k.cu", tmp_path)


def test_every_kernel_source_is_self_contained_after_pasting():
    """What NVRTC gets: no quoted include left, headers present, each kernel name defined."""
    for f in L.KERNEL_FILES.values():
        src = L.load_source(f)
        assert not re.search(r'^\s*#\s*include\s*"', src, re.M), f
        assert "mg_visible" in src and "warp_sum" in src, f
        assert emulate.kernel_names((L.kernel_dir() / f).read_text()), f
    changed = L.load_source(L.KERNEL_FILES["attention_flash_fwd"])
    assert "load_rows" in changed  # tiles.cuh pasted: an edit there changes the source text


def test_flash_tile_table_matches_the_cuda_instantiations():
    d = L.kernel_dir()
    fwd = re.findall(r"^MG_FLASH_FWD\((\d+), (\d+)\)", (d / L.KERNEL_FILES["attention_flash_fwd"]).read_text(), re.M)
    bwd = re.findall(r"^MG_FLASH_BWD\((\d+), (\d+), \d+\)", (d / L.KERNEL_FILES["attention_flash_bwd"]).read_text(), re.M)
    want = sorted((str(h), str(b)) for h, b in A.FLASH_TILES.items())
    assert sorted(fwd) == want and sorted(bwd) == want


def test_kernel_names_found_in_each_file():
    d = L.kernel_dir()
    names = {f: set(emulate.kernel_names((d / f).read_text())) for f in L.KERNEL_FILES.values()}
    assert names["01_softmax_naive.cu"] == {"softmax_naive_fwd", "softmax_naive_bwd"}
    assert names["02_softmax_warp.cu"] == {"softmax_warp_fwd", "softmax_warp_bwd"}
    assert names["03_attention_naive.cu"] == {"attn_naive_fwd", "attn_naive_bwd_dq", "attn_naive_bwd_dkdv"}
    assert names["04_attention_flash_fwd.cu"] == {f"flash_fwd_{pf}hs{h}" for h in A.FLASH_TILES
                                                  for pf in ("", "pf_")}
    assert names["05_attention_flash_bwd.cu"] == (
        {"flash_bwd_preprocess"} | {f"flash_bwd_{k}_hs{h}" for h in A.FLASH_TILES for k in ("dq", "dkdv")})


@pytest.mark.parametrize("hs", sorted(A.FLASH_TILES))
def test_flash_shared_memory_fits_ampere_and_hopper(hs):
    for kernel in ("fwd", "dq", "dkdv"):
        smem = A.flash_smem_bytes(kernel, hs)
        assert 0 < smem <= 163 * 1024, (kernel, hs, smem)  # A100's opt-in limit (H100: 227 KB)
        assert smem % 16 == 0
    # the forward's formula from 04's header, by hand for hs = 64 (BN = 64): Q, K, V, P
    assert A.flash_smem_bytes("fwd", 64) == 4 * ((64 + 2 * 64) * 68 + 64 * 68)


def test_flash_launch_shapes():
    grid, block, smem = A.flash_launch("fwd", 96, 100, 100, 64)
    assert grid == (96, 2) and block == (256,) and smem == A.flash_smem_bytes("fwd", 64)
    assert A.flash_launch("dkdv", 4, 10, 130, 32)[0] == (4, 3)
    assert A.flash_launch("preprocess", 3, 10, 10, 32) == ((4,), (256,), 0)
    with pytest.raises(ValueError, match="head sizes"):
        A.flash_smem_bytes("fwd", 48)


def test_softmax_launch_shapes():
    assert A.softmax_launch("naive", 300) == ("01_softmax_naive.cu", (3,), (128,))
    assert A.softmax_launch("warp", 9) == ("02_softmax_warp.cu", (3,), (128,))
    with pytest.raises(ValueError, match="variant"):
        A.softmax_launch("fast", 9)


def test_argument_hygiene():
    with pytest.raises(TypeError, match="float32"):
        L.as_kernel_array(np.zeros(3), "q")
    with pytest.raises(TypeError, match="float32"):
        L.as_kernel_array([1.0, 2.0], "q")
    a = np.zeros((4, 6), np.float32)[:, ::2]
    c = L.as_kernel_array(a)
    assert c.flags.c_contiguous and np.array_equal(c, a)
    b = np.zeros(4, np.float32)
    assert L.as_kernel_array(b) is b  # no needless copy
    mis = np.zeros(33, np.float32)[1:]  # contiguous but not 16-byte aligned
    assert L.address(L.as_kernel_array(mis)) % 16 == 0
    assert type(L.i32(5)) is np.int32 and type(L.f32(0.5)) is np.float32
    with pytest.raises(OverflowError):
        L.i32(2**31)


def test_use_fused_switch_and_can_fuse_rejects_numpy(monkeypatch):
    q = np.zeros((1, 1, 4, 32), np.float32)
    assert not A.can_fuse_attention(q, q, q)  # NumPy arrays never take the kernels
    assert not A.can_fuse_softmax(q)
    before = L.fused_enabled()
    with L.use_fused(False):
        assert not L.fused_enabled()
        with L.use_fused(True):
            assert L.fused_enabled()
        assert not L.fused_enabled()
    assert L.fused_enabled() == before


def test_env_var_turns_fusion_off():
    code = "from minigpt.cuda import loader as L; print(L.fused_enabled())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={**__import__("os").environ, "MINIGPT_FUSED": "0"})
    assert out.stdout.strip() == "False", out.stderr


class _FakeKernel:
    def __init__(self):
        self.max_dynamic_shared_size_bytes = 48 * 1024
        self.calls = []

    def __call__(self, grid, block, args, shared_mem=0):
        self.calls.append((grid, block, args, shared_mem))


class _FakeProvider:
    def __init__(self, limit=227 * 1024):
        self.limit, self.fns = limit, {}

    def get_function(self, filename, name):
        return self.fns.setdefault((filename, name), _FakeKernel())

    def max_shared_memory(self):
        return self.limit


def test_launch_passes_typed_arguments_and_raises_the_smem_limit():
    prov = _FakeProvider()
    q = np.random.default_rng(0).standard_normal((2, 3, 70, 128)).astype(np.float32)
    with L.kernel_provider(prov):
        A.attention_forward(q, q, q, causal=True)
    fn = prov.fns[("04_attention_flash_fwd.cu", "flash_fwd_pf_hs128")]  # the default variant
    (grid, block, args, smem), = fn.calls
    assert grid == (6, 2) and block == (256,) and smem == A.flash_smem_bytes("fwd", 128)
    assert fn.max_dynamic_shared_size_bytes == smem > 48 * 1024
    for a in args:
        assert (isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.c_contiguous) \
            or type(a) in (np.int32, np.float32), a
    assert args[-1] == 0 and args[-2] == 1  # has_pad, causal
    assert args[-3] == np.float32(1 / np.sqrt(128))
    with L.kernel_provider(_FakeProvider(limit=64 * 1024)), pytest.raises(RuntimeError, match="allows"):
        A.attention_forward(q, q, q)


def test_attention_shape_errors():
    q = np.zeros((1, 2, 5, 32), np.float32)
    with L.kernel_provider(_FakeProvider()):
        with pytest.raises(ValueError, match="Tq <= Tk"):
            A.attention_forward(q, q[:, :, :3], q[:, :, :3], causal=True)
        with pytest.raises(ValueError, match="head sizes"):
            A.attention_forward(q[..., :16], q[..., :16], q[..., :16])
        with pytest.raises(ValueError, match="padding_mask"):
            A.attention_forward(q, q, q, padding_mask=np.ones((1, 4)))
        with pytest.raises(TypeError, match="float32"):
            A.attention_forward(q.astype(np.float64), q, q)


def test_compile_error_carries_the_log(monkeypatch):
    class CompileException(Exception):
        pass

    class FakeModule:
        def __init__(self, code, options):
            assert not re.search(r'^\s*#\s*include\s*"', code, re.M)  # headers pasted in
            self.code, self.options = code, options

        def compile(self):
            raise CompileException("kernel.cu(3): error: identifier \"oops\" is undefined")

    class FakeCupy:
        RawModule = FakeModule

        class cuda:
            class runtime:
                @staticmethod
                def getDevice():
                    return 0

    monkeypatch.setattr(L, "cupy_module", lambda: FakeCupy)
    with pytest.raises(L.KernelCompileError, match="identifier \"oops\""):
        L.CupyKernels().get_function("01_softmax_naive.cu", "softmax_naive_fwd")


def test_one_module_per_device(monkeypatch):
    made = []
    device = [0]

    class FakeModule:
        def __init__(self, code, options):
            made.append(self)

        def compile(self):
            pass

        def get_function(self, name):
            return (self, name)

    class FakeCupy:
        RawModule = FakeModule

        class cuda:
            class runtime:
                @staticmethod
                def getDevice():
                    return device[0]

    monkeypatch.setattr(L, "cupy_module", lambda: FakeCupy)
    prov = L.CupyKernels()
    f1 = prov.get_function("02_softmax_warp.cu", "softmax_warp_fwd")
    f2 = prov.get_function("02_softmax_warp.cu", "softmax_warp_bwd")
    assert f1[0] is f2[0] and len(made) == 1  # one module per file and device
    device[0] = 1
    prov.get_function("02_softmax_warp.cu", "softmax_warp_fwd")
    assert len(made) == 2


# ---- 3. the .cu files: nvcc, and the CPU emulator -----------------------------------------------

def test_parse_ptxas_report():
    sys.path.insert(0, str(REPO / "tools"))
    import check_kernels
    text = ("ptxas info    : Compiling entry function 'k1' for 'sm_90'\n"
            "ptxas info    : Function properties for k1\n"
            "    8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads\n"
            "ptxas info    : Used 128 registers, used 1 barriers, 16 bytes smem\n"
            "ptxas info    : Compiling entry function 'k2' for 'sm_90'\n"
            "ptxas info    : Function properties for k2\n"
            "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
            "ptxas info    : Used 32 registers, used 0 barriers\n")
    k1, k2 = check_kernels.parse_ptxas(text)
    assert (k1["kernel"], k1["registers"], k1["spill_stores"], k1["smem"]) == ("k1", 128, 4, 16)
    assert (k2["kernel"], k2["registers"], k2["spill_loads"], k2["stack"]) == ("k2", 32, 0, 0)


@requires_nvcc
def test_make_kernels_check(tmp_path):
    """`make kernels-check`: every .cu compiles for sm_80 and sm_90 with no register spill."""
    if shutil.which("make") is None:
        pytest.skip("make is not on PATH")
    res = subprocess.run(["make", "-s", "kernels-check"], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "no spills" in res.stdout
    for name in ("flash_fwd_hs128", "flash_bwd_dkdv_hs64", "softmax_warp_fwd"):
        assert name in res.stdout


@requires_nvcc
def test_check_kernels_script_reports_every_kernel(tmp_path):
    out = tmp_path / "report.json"
    res = subprocess.run([sys.executable, str(REPO / "tools" / "check_kernels.py"), "--arch",
                          "sm_90", "--no-nvrtc", "--json", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(out.read_text())
    assert not report["problems"]
    names = {r["kernel"] for r in report["kernels"]}
    assert {f"flash_fwd_hs{h}" for h in A.FLASH_TILES} <= names
    assert all(r["spill_stores"] == 0 and r["spill_loads"] == 0 for r in report["kernels"])


@pytest.fixture(scope="module")
def emu():
    if not HAVE_GXX:
        pytest.skip("g++ is not on PATH: the CPU emulator of the CUDA kernels needs it")
    return emulate.EmulatedKernels(sanitizer="address")


def _softmax_ref(x, scale, causal):
    s = x.astype(np.float64) * scale
    if causal:
        Tq, Tk = x.shape[-2:]
        s = np.where(F.attention_mask(Tq, Tk, True), s, -np.inf)
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@requires_gxx
@pytest.mark.parametrize("variant", A.SOFTMAX_VARIANTS)
@pytest.mark.parametrize("shape,causal", [((2, 3, 7, 9), True), ((5, 70), False), ((1, 1, 1), True),
                                          ((2, 40, 40), True)])
def test_emulated_softmax_kernels(emu, variant, shape, causal):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(np.float32) * 3
    g = rng.standard_normal(shape).astype(np.float32)
    with L.kernel_provider(emu), L.poison_outputs():
        y = A.softmax_forward(x, 0.7, causal, variant)
        dx = A.softmax_backward(y, g, 0.7, causal, variant)
    ref = _softmax_ref(x, 0.7, causal)
    dref = 0.7 * ref * (g - (g * ref).sum(-1, keepdims=True))
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, dref, rtol=1e-5, atol=1e-6)


EMU_ATTENTION_CASES = [
    # B, nh, Tq, Tk, hs, causal, padded
    (1, 2, 100, 100, 32, True, False),   # T not a multiple of 64, two query tiles
    (2, 1, 7, 70, 64, True, True),       # Tq < Tk (cache), padding, an empty batch entry
    (1, 1, 1, 1, 128, True, False),      # T = 1, the 32-row tiles of hs = 128
    (2, 1, 70, 50, 32, False, True),     # non-causal, Tq > Tk
    (1, 1, 130, 130, 128, True, True),   # three query tiles, five key tiles of 32
]


@requires_gxx
@pytest.mark.parametrize("variant", A.ATTENTION_VARIANTS)
@pytest.mark.parametrize("B,nh,Tq,Tk,hs,causal,padded", EMU_ATTENTION_CASES)
def test_emulated_attention_kernels(emu, variant, B, nh, Tq, Tk, hs, causal, padded):
    rng = np.random.default_rng(Tq * 1000 + Tk + hs)
    q, k, v = _qkv(rng, B, nh, Tq, Tk, hs)
    pm = _padding(rng, B, Tk) if padded else None
    g = rng.standard_normal((B, nh, Tq, hs))
    o_ref, lse_ref = flash_attention_forward(q, k, v, causal, pm)
    ref = (o_ref, *flash_attention_backward(q, k, v, o_ref, lse_ref, g, causal, pm))
    f32 = lambda a: a.astype(np.float32)  # noqa: E731
    with L.kernel_provider(emu), L.poison_outputs():
        o, lse = A.attention_forward(f32(q), f32(k), f32(v), causal, pm, variant)
        got = (o, *A.attention_backward(f32(q), f32(k), f32(v), o, lse, f32(g), causal, pm, variant))
    for name, a, r in zip(("o", "dq", "dk", "dv"), got, ref):
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=2e-5, err_msg=f"{variant} {name}")
    finite = np.isfinite(lse_ref)
    assert np.array_equal(np.isposinf(lse), ~finite)
    np.testing.assert_allclose(lse[finite], lse_ref[finite], rtol=1e-5, atol=1e-5)


@requires_gxx
def test_emulated_fused_functions_match_functional(emu):
    """FusedAttention / FusedSoftmax wiring (autograd, saved arrays) against functional."""
    from minigpt.cuda.attention import FusedAttention, FusedSoftmax
    rng = np.random.default_rng(11)
    q, k, v = _qkv(rng, 1, 2, 20, 20, 32, np.float32)
    g = rng.standard_normal(q.shape).astype(np.float32)
    ref = _reference(*(a.astype(np.float64) for a in (q, k, v)), g.astype(np.float64), True, None)
    qt, kt, vt = (Tensor(a.copy(), requires_grad=True) for a in (q, k, v))
    with L.kernel_provider(emu):
        out = FusedAttention.apply(qt, kt, vt, causal=True)
        out.backward(g)
        x = Tensor(rng.standard_normal((3, 5, 6)).astype(np.float32), requires_grad=True)
        y = FusedSoftmax.apply(x, axis=-1)
        y.backward(np.ones_like(y.data) * np.arange(6, dtype=np.float32))
    for got, want in zip((out.data, qt.grad, kt.grad, vt.grad), ref):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5)
    xr = Tensor(x.data.astype(np.float64), requires_grad=True)
    yr = F.softmax(xr)
    yr.backward(np.ones_like(yr.data) * np.arange(6))
    np.testing.assert_allclose(y.data, yr.data, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(x.grad, xr.grad, rtol=1e-4, atol=1e-6)


@requires_gxx
@pytest.mark.parametrize("hs", [32, 128])
def test_emulated_flash_kernels_have_no_data_race(hs):
    """ThreadSanitizer over the flash kernels: a missing __syncthreads is reported as a race."""
    tsan = emulate.EmulatedKernels(sanitizer="thread")
    rng = np.random.default_rng(hs)
    q, k, v = _qkv(rng, 1, 1, 70, 70, hs, np.float32)
    pm = np.ones((1, 70), np.float32)
    pm[0, 5] = 0
    with L.kernel_provider(tsan):
        o, lse = A.attention_forward(q, k, v, True, pm)
        dq, dk, dv = A.attention_backward(q, k, v, o, lse, q, True, pm)
    assert np.isfinite(o).all() and np.isfinite(dk).all()
