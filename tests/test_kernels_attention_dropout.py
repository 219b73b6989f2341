"""Attention dropout inside the flash kernels (kernels/philox.cuh, 04, 05, 10), on the CPU.

1. The NumPy twin of the kernels' random numbers (minigpt.cuda.attention.philox2x32 and
   dropout_keep): Philox-2x32-10's published known answers, the keep rate, independence of
   neighbouring elements, reproducibility from the seed, and the counter rule (hypothesis).
2. The real kernels on the CPU (tools/cuda_emu): given the mask that dropout_keep rebuilds from
   the seed, the kernels' O, dq, dk, dv equal the reference Attention's (minigpt.ops) with that
   same mask, for both backward variants (05, 10), T in {1, 7, 33, 70}, padding, causal,
   p in {0, 0.1, 0.5}. Since the backward gradients only match if the backward recomputed the
   forward's mask, this is the "same mask in forward and backward" check.
3. FusedAttention draws its seed from minigpt's generator (manual_seed reproduces a run) and
   passes the same seed to its backward.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigpt
from minigpt import Tensor
from minigpt.cuda import attention as A
from minigpt.cuda import loader as L
from minigpt.ops.attention import Attention

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools" / "cuda_emu"))
import emulate  # noqa: E402  (tools/cuda_emu/emulate.py)

requires_gxx = pytest.mark.skipif(not emulate.have_compiler(), reason="g++ is not on PATH: the "
                                  "CPU emulator of the CUDA kernels (tools/cuda_emu) needs it")
FLASH_VARIANTS = ("flash", "flash_onepass")


# ---- 1. the random numbers ---------------------------------------------------------------------

@pytest.mark.parametrize("x0,x1,key,want", [
    # Random123's known-answer vectors for philox2x32_10 (counter, key -> output)
    (0x00000000, 0x00000000, 0x00000000, (0xff1dae59, 0x6cd10df2)),
    (0xffffffff, 0xffffffff, 0xffffffff, (0x2c3f628b, 0xab4fd7ad)),
    (0x243f6a88, 0x85a308d3, 0x13198a2e, (0xdd7ce038, 0xf62a4c12)),
])
def test_philox_known_answers(x0, x1, key, want):
    out = A.philox2x32(np.array([x0]), np.array([x1]), key)
    assert (int(out[0][0]), int(out[1][0])) == want


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_rate_is_one_minus_p(p):
    keep = A.dropout_keep(1234, p, (4, 3, 64, 64))  # 49152 draws
    n = keep.size
    sigma = np.sqrt(n * p * (1 - p))
    assert abs(keep.sum() - n * (1 - p)) < 5 * sigma


def test_neighbouring_elements_are_uncorrelated():
    """The counter runs along rows and columns: neighbours must not share their fate."""
    keep = A.dropout_keep(7, 0.5, (2, 2, 128, 128)).astype(np.float64)
    for a, b in ((keep[..., 1:], keep[..., :-1]), (keep[..., 1:, :], keep[..., :-1, :]),
                 (keep[:, 1:], keep[:, :-1]), (keep[1:], keep[:-1])):
        corr = np.corrcoef(a.ravel(), b.ravel())[0, 1]
        assert abs(corr) < 5 / np.sqrt(a.size), corr


def test_mask_is_reproducible_from_the_seed():
    shape = (2, 3, 17, 17)
    a, b = A.dropout_keep(99, 0.1, shape), A.dropout_keep(99, 0.1, shape)
    c = A.dropout_keep(100, 0.1, shape)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    d = A.dropout_mask(99, 0.1, shape)
    assert d.dtype == np.float32
    assert set(np.unique(d)) <= {np.float32(0), np.float32(1) / np.float32(0.9)}


def test_threshold_and_kernel_arguments():
    assert A.dropout_threshold(0.0) == 0
    assert A.dropout_threshold(0.5) == 1 << 31
    assert A.dropout_keep(5, 0.0, (1, 1, 3, 3)).all()  # threshold 0: everything kept
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        A.dropout_threshold(1.0)
    seed, thr, scale = A._dropout_args(0.5, 0xFFFFFFFF)
    assert type(seed) is np.int32 and type(thr) is np.int32 and type(scale) is np.float32
    assert np.array(seed).view(np.uint32) == 0xFFFFFFFF and np.array(thr).view(np.uint32) == 1 << 31
    assert scale == np.float32(2.0)
    assert A._dropout_args(0.0, 3)[1:] == (0, 1.0)


@settings(max_examples=30, deadline=None)
@given(B=st.integers(1, 3), nh=st.integers(1, 3), Tq=st.integers(1, 9), Tk=st.integers(1, 9),
       seed=st.integers(0, 2**32 - 1), p=st.floats(0.01, 0.95))
def test_mask_follows_the_counter_rule(B, nh, Tq, Tk, seed, p):
    """Element (b, h, i, j) is philox(x0=j, x1=(b*nh+h)*Tq+i, key=seed) >= floor(p 2^32); a
    shorter key axis is a prefix of a longer one (the column is the counter's own word)."""
    keep = A.dropout_keep(seed, p, (B, nh, Tq, Tk))
    b, h, i, j = B - 1, nh - 1, Tq - 1, Tk - 1
    word = A.philox2x32(np.array([j]), np.array([(b * nh + h) * Tq + i]), seed)[0][0]
    assert keep[b, h, i, j] == (int(word) >= int(p * 2**32))
    assert np.array_equal(A.dropout_keep(seed, p, (B, nh, Tq, Tk + 3))[..., :Tk], keep)


# ---- 2. the kernels against the reference, given the same mask ---------------------------------

class _MaskRng:
    """A stand-in generator whose draws reproduce a given keep mask in the reference Attention
    (it keeps an element iff its draw >= p: kept -> 1.0, dropped -> 0.0)."""

    def __init__(self, keep):
        self.keep = keep

    def random(self, shape, dtype=np.float64):
        assert tuple(shape) == self.keep.shape
        return self.keep.astype(dtype)


def _reference(q, k, v, g, causal, pm, p, keep):
    qt, kt, vt = (Tensor(a, requires_grad=True) for a in (q, k, v))
    out = Attention.apply(qt, kt, vt, causal=causal, padding_mask=pm, dropout_p=p,
                          rng=_MaskRng(keep))
    out.backward(g)
    return out.data, qt.grad, kt.grad, vt.grad


@pytest.fixture(scope="module")
def emu():
    if not emulate.have_compiler():
        pytest.skip("g++ is not on PATH")
    return emulate.EmulatedKernels(sanitizer="address")


DROPOUT_CASES = [
    # B, nh, Tq, Tk, hs, causal, padded, p
    (1, 2, 33, 33, 32, True, False, 0.1),
    (2, 1, 7, 7, 64, True, True, 0.5),     # padding incl. a fully padded batch entry
    (1, 1, 1, 1, 64, True, False, 0.5),    # T = 1
    (2, 1, 33, 33, 32, False, True, 0.1),  # non-causal
    (1, 1, 7, 40, 128, True, False, 0.1),  # cached decoding, hs = 128 (32-row tiles)
    (1, 2, 70, 70, 32, True, False, 0.1),  # two key tiles: 10's dQ partials are summed
    (1, 1, 33, 33, 64, True, True, 0.0),   # p = 0 through the dropout arguments
]


@requires_gxx
@pytest.mark.parametrize("variant", FLASH_VARIANTS)
@pytest.mark.parametrize("B,nh,Tq,Tk,hs,causal,padded,p", DROPOUT_CASES)
def test_emulated_kernels_with_dropout_match_reference(emu, variant, B, nh, Tq, Tk, hs, causal,
                                                       padded, p):
    rng = np.random.default_rng(Tq * 100 + Tk + hs + int(p * 10))
    q, k, v = (rng.standard_normal((B, nh, T, hs)) for T in (Tq, Tk, Tk))
    g = rng.standard_normal((B, nh, Tq, hs))
    pm = None
    if padded:
        pm = (rng.random((B, Tk)) > 0.3).astype(np.float64)
        pm[:, 0] = 1.0
        if B > 1:
            pm[0] = 0.0
    seed = int(rng.integers(0, 2**32))
    keep = A.dropout_keep(seed, p, (B, nh, Tq, Tk))
    if p > 0 and Tq * Tk > 20:
        assert 0 < keep.sum() < keep.size  # the case really drops something
    ref = _reference(q, k, v, g, causal, pm, p, keep)
    f32 = lambda a: a.astype(np.float32)  # noqa: E731
    with L.kernel_provider(emu), L.poison_outputs():
        o, lse = A.attention_forward(f32(q), f32(k), f32(v), causal, pm, variant, p, seed)
        grads = A.attention_backward(f32(q), f32(k), f32(v), o, lse, f32(g), causal, pm,
                                     variant, p, seed)
    for name, got, want in zip(("o", "dq", "dk", "dv"), (o, *grads), ref):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=3e-5, err_msg=f"{variant} {name}")


# one case per head size (32, 64, 128): every plain-load kernel of 04 and 10 runs at least once
NO_PREFETCH_CASES = [DROPOUT_CASES[0], DROPOUT_CASES[1], DROPOUT_CASES[4]]


def test_no_prefetch_cases_cover_every_head_size():
    assert sorted(case[4] for case in NO_PREFETCH_CASES) == sorted(A.FLASH_TILES)


@requires_gxx
@pytest.mark.parametrize("B,nh,Tq,Tk,hs,causal,padded,p", NO_PREFETCH_CASES)
def test_emulated_onepass_without_prefetch(emu, monkeypatch, B, nh, Tq, Tk, hs, causal, padded, p):
    """The plain-load kernels of 04/10 (FLASH_PREFETCH = False, kept for timing) agree too."""
    monkeypatch.setattr(A, "FLASH_PREFETCH", False)
    keys = (f"04_attention_flash_fwd.cu:flash_fwd_hs{hs}",
            f"10_attention_flash_bwd_onepass.cu:flash_bwd_onepass_hs{hs}")
    launched = lambda: [len(emu.kernels[k].launches) if k in emu.kernels else 0 for k in keys]  # noqa: E731
    before = launched()
    test_emulated_kernels_with_dropout_match_reference(emu, "flash_onepass", B, nh, Tq, Tk, hs,
                                                       causal, padded, p)
    assert all(a > b for a, b in zip(launched(), before))  # this case ran the plain-load kernels


@requires_gxx
@pytest.mark.parametrize("hs", [32, 64])
def test_emulated_prefetch_kernels_have_no_data_race(hs):
    """ThreadSanitizer over the cp.async kernels (emulated: the copy lands when issued), with
    dropout, padding and three tiles each way: a prefetch issued before every thread is done
    with the buffer it overwrites is reported as a race."""
    tsan = emulate.EmulatedKernels(sanitizer="thread")
    rng = np.random.default_rng(hs + 1)
    q, k, v, g = (rng.standard_normal((1, 1, 150, hs)).astype(np.float32) for _ in range(4))
    pm = np.ones((1, 150), np.float32)
    pm[0, 3] = 0
    with L.kernel_provider(tsan):
        o, lse = A.attention_forward(q, k, v, True, pm, "flash_onepass", 0.1, 3)
        dq, dk, dv = A.attention_backward(q, k, v, o, lse, g, True, pm, "flash_onepass", 0.1, 3)
    names = {key.split(":")[1] for key in tsan.kernels}
    assert {f"flash_fwd_pf_hs{hs}", f"flash_bwd_onepass_pf_hs{hs}"} <= names
    assert np.isfinite(o).all() and np.isfinite(dq).all() and np.isfinite(dk).all()


@requires_gxx
def test_emulated_dropout_depends_on_the_seed_only(emu):
    """The same seed gives the same bits (whichever backward); another seed another output."""
    rng = np.random.default_rng(2)
    q, k, v, g = (rng.standard_normal((1, 2, 20, 32)).astype(np.float32) for _ in range(4))
    with L.kernel_provider(emu):
        o1, lse1 = A.attention_forward(q, k, v, True, None, "flash", 0.3, 17)
        o2, lse2 = A.attention_forward(q, k, v, True, None, "flash", 0.3, 17)
        o3, _ = A.attention_forward(q, k, v, True, None, "flash", 0.3, 18)
        o0, lse0 = A.attention_forward(q, k, v, True, None, "flash", 0.0, 17)
        g1 = A.attention_backward(q, k, v, o1, lse1, g, True, None, "flash_onepass", 0.3, 17)
        g2 = A.attention_backward(q, k, v, o1, lse1, g, True, None, "flash_onepass", 0.3, 17)
    assert np.array_equal(o1, o2) and np.array_equal(lse1, lse2)
    assert not np.array_equal(o1, o3)
    assert np.array_equal(lse0, lse1)  # lse is that of the undropped probabilities
    for a, b in zip(g1, g2):
        assert np.array_equal(a, b)


@requires_gxx
def test_naive_variant_refuses_dropout(emu):
    q = np.zeros((1, 1, 4, 32), np.float32)
    with L.kernel_provider(emu), pytest.raises(ValueError, match="flash"):
        A.attention_forward(q, q, q, True, None, "naive", 0.1, 1)


# ---- 3. FusedAttention: seeds from minigpt's generator ---------------------------------------------

@requires_gxx
def test_fused_attention_dropout_reproducible_with_manual_seed(emu):
    rng = np.random.default_rng(8)
    q, k, v = (rng.standard_normal((1, 2, 9, 32)).astype(np.float32) for _ in range(3))
    g = rng.standard_normal(q.shape).astype(np.float32)

    def run():
        qt, kt, vt = (Tensor(a.copy(), requires_grad=True) for a in (q, k, v))
        with L.kernel_provider(emu):
            out = A.FusedAttention.apply(qt, kt, vt, causal=True, dropout_p=0.2)
            seed = out.creator.options["seed"]
            out.backward(g)
        return seed, out.data, qt.grad, kt.grad, vt.grad

    minigpt.manual_seed(5)
    first = run()
    minigpt.manual_seed(5)
    again = run()
    assert first[0] == again[0]
    for a, b in zip(first[1:], again[1:]):
        assert np.array_equal(a, b)
    # and it is the reference Attention with the mask rebuilt from that seed
    keep = A.dropout_keep(first[0], 0.2, (1, 2, 9, 9))
    ref = _reference(*(a.astype(np.float64) for a in (q, k, v, g)), True, None, 0.2, keep)
    for got, want in zip(first[1:], ref):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=3e-5)
    minigpt.manual_seed(6)
    assert run()[0] != first[0]


def test_supports_predicate_accepts_dropout(monkeypatch):
    """The "cuda" attention's dispatch predicate takes dropout (it is inside the kernels)."""
    q = np.zeros((1, 2, 4, 64), np.float32)
    assert not A.supports_attention(q, q, q, dropout_p=0.1)  # NumPy arrays: never the kernels
    monkeypatch.setattr(A, "can_fuse_attention", lambda q, k, v: True)
    assert A.supports_attention(q, q, q, causal=True, padding_mask=None, dropout_p=0.1, rng=None)
    assert not A.supports_attention(q, q, q, dropout_p=1.0)


def test_draw_dropout_seed_uses_minigpt_generator():
    minigpt.manual_seed(3)
    a = A.draw_dropout_seed(None)
    minigpt.manual_seed(3)
    assert A.draw_dropout_seed(object()) == a  # a non-NumPy generator: minigpt's NumPy one
    assert A.draw_dropout_seed(np.random.default_rng(1)) == A.draw_dropout_seed(np.random.default_rng(1))
    assert 0 <= a < 2**32


def test_reference_with_a_given_mask_gradchecks():
    """The comparison target above: the reference Attention with the kernels' mask is itself
    right (float64 central differences, random upstream gradients)."""
    from minigpt.gradcheck import gradcheck
    rng = np.random.default_rng(9)
    q, k, v = (Tensor(rng.standard_normal((1, 2, 5, 4)), requires_grad=True) for _ in range(3))
    keep = A.dropout_keep(21, 0.3, (1, 2, 5, 5))
    assert 0 < keep.sum() < keep.size
    assert gradcheck(lambda a, b, c: Attention.apply(a, b, c, causal=True, dropout_p=0.3,
                                                     rng=_MaskRng(keep)), [q, k, v])
