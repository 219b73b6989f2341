"""CPU-side tests of kernels/06_layernorm.cu, 08_softmax_xent.cu and 09_adam.cu: no GPU needed.

The real .cu files run on the CPU through tools/cuda_emu (g++, AddressSanitizer + UBSan; one
case under ThreadSanitizer for the block reductions' barriers), launched by the very code the
GPU uses (minigpt/cuda/layers.py, adam.py), and are compared with the reference ops evaluated
in float64 (LayerNorm, CrossEntropy) or, for Adam, bit for bit with optim.adam_update in
float32. Outputs are NaN-poisoned before each launch, so an element a kernel forgets to write
fails the comparison.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minigpt import Tensor, dispatch
from minigpt.cuda import adam as cuda_adam
from minigpt.cuda import layers
from minigpt.cuda import loader as L
from minigpt.ops.cross_entropy import CrossEntropy
from minigpt.ops.layer_norm import LayerNorm
from minigpt.optim import adam_update

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools" / "cuda_emu"))
import emulate  # noqa: E402  (tools/cuda_emu/emulate.py)

pytestmark = pytest.mark.skipif(not emulate.have_compiler(), reason="g++ is not on PATH: the "
                                "CPU emulator of the CUDA kernels (tools/cuda_emu) needs it")


@pytest.fixture(scope="module")
def emu():
    return emulate.EmulatedKernels(sanitizer="address")


def _ln_reference(x, w, b, g, eps=1e-5):
    """The reference LayerNorm (minigpt/ops/layer_norm.py) in float64: y, dx, dw, db."""
    f = LayerNorm()
    y = f.forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), eps=eps)
    return (y, *f.backward(g.astype(np.float64)))


def _close(got, want, name, rtol=1e-5, atol=1e-5):
    """|got - want| <= atol * max|want| + rtol * |want| (float32 kernel vs float64 reference)."""
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale, err_msg=name)


# ---- 06: LayerNorm ------------------------------------------------------------------------------

LN_CASES = [
    # shape, residual
    ((3, 7, 50), False),   # C not a multiple of 32, rows not a multiple of the 8 warps
    ((33, 96), True),      # three backward blocks of 16 rows, the last one short; residual add
    ((1, 1), False),       # one row of one element: xhat = 0, dx = 0
    ((2, 768), True),      # GPT-1's width: 24 lanes' strides, 24 reduce blocks
]


@pytest.mark.parametrize("shape,residual", LN_CASES)
def test_emulated_layernorm_matches_float64_reference(emu, shape, residual):
    rng = np.random.default_rng(sum(shape))
    C = shape[-1]
    x = (rng.standard_normal(shape) * 2 + 3).astype(np.float32)  # a mean far from 0
    r = rng.standard_normal(shape).astype(np.float32) if residual else None
    w = rng.standard_normal(C).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    with L.kernel_provider(emu), L.poison_outputs():
        y, s, mean, rstd = layers.layer_norm_forward(x, w, b, 1e-5, residual=r)
        dx, dw, db = layers.layer_norm_backward(s, w, mean, rstd, g)
    x_in = x.astype(np.float64) + (r if residual else 0)
    y_ref, dx_ref, dw_ref, db_ref = _ln_reference(x_in, w, b, g)
    if residual:
        np.testing.assert_array_equal(s, x + r)  # the saved input is exactly the float32 sum
    else:
        assert s is x
    x2 = x_in.reshape(-1, C)
    _close(mean, x2.mean(-1), "mean")
    _close(rstd, 1 / np.sqrt(x2.var(-1) + 1e-5), "rstd", atol=1e-4)
    _close(y, y_ref, "y")
    _close(dx, dx_ref, "dx", atol=2e-5)
    _close(dw, dw_ref, "dw")
    _close(db, db_ref, "db")


def test_emulated_layernorm_backward_is_deterministic(emu):
    rng = np.random.default_rng(1)
    x, g = (rng.standard_normal((40, 70)).astype(np.float32) for _ in range(2))
    w, b = (rng.standard_normal(70).astype(np.float32) for _ in range(2))
    with L.kernel_provider(emu):
        _, s, mean, rstd = layers.layer_norm_forward(x, w, b)
        first = layers.layer_norm_backward(s, w, mean, rstd, g)
        second = layers.layer_norm_backward(s, w, mean, rstd, g)
    for a, c in zip(first, second):
        assert np.array_equal(a, c)  # no atomics: the same bits every run


def test_layer_norm_grid():
    assert layers.layer_norm_grid(1) == (16, 1)
    assert layers.layer_norm_grid(33) == (16, 3)
    rows, blocks = layers.layer_norm_grid(8 * 512 * 40)  # more rows than 1024 blocks of 16
    assert blocks <= layers.LN_MAX_BLOCKS and rows * blocks >= 8 * 512 * 40


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(N=st.integers(1, 40), C=st.integers(1, 130), residual=st.booleans())
def test_emulated_layernorm_any_shape(emu, N, C, residual):
    rng = np.random.default_rng(N * 1000 + C)
    x, g = (rng.standard_normal((N, C)).astype(np.float32) for _ in range(2))
    r = rng.standard_normal((N, C)).astype(np.float32) if residual else None
    w, b = (rng.standard_normal(C).astype(np.float32) for _ in range(2))
    with L.kernel_provider(emu), L.poison_outputs():
        y, s, mean, rstd = layers.layer_norm_forward(x, w, b, residual=r)
        dx, dw, db = layers.layer_norm_backward(s, w, mean, rstd, g)
    ref = _ln_reference(x.astype(np.float64) + (r if residual else 0), w, b, g)
    for name, got, want in zip(("y", "dx", "dw", "db"), (y, dx, dw, db), ref):
        _close(got, want, name, atol=5e-5)


def test_emulated_layernorm_functions_through_autograd(emu):
    """FusedLayerNorm / FusedAddLayerNorm wiring: saved arrays, both residual gradients."""
    rng = np.random.default_rng(4)
    x, r, g = (rng.standard_normal((2, 5, 40)).astype(np.float32) for _ in range(3))
    w, b = (rng.standard_normal(40).astype(np.float32) for _ in range(2))
    xt, rt, wt, bt = (Tensor(a.copy(), requires_grad=True) for a in (x, r, w, b))
    with L.kernel_provider(emu):
        out = layers.FusedAddLayerNorm.apply(xt, rt, wt, bt, eps=1e-5)
        out.backward(g)
        xt2, wt2, bt2 = (Tensor(a.copy(), requires_grad=True) for a in (x, w, b))
        out2 = layers.FusedLayerNorm.apply(xt2, wt2, bt2, eps=1e-5)
        out2.backward(g)
    y_ref, dx_ref, dw_ref, db_ref = _ln_reference(x.astype(np.float64) + r, w, b, g)
    _close(out.data, y_ref, "y")
    _close(xt.grad, dx_ref, "dx", atol=2e-5)
    _close(rt.grad, dx_ref, "dr", atol=2e-5)
    _close(wt.grad, dw_ref, "dw")
    _close(bt.grad, db_ref, "db")
    y1, dx1, dw1, db1 = _ln_reference(x, w, b, g)
    for name, got, want in (("y", out2.data, y1), ("dx", xt2.grad, dx1), ("dw", wt2.grad, dw1),
                            ("db", bt2.grad, db1)):
        _close(got, want, name, atol=2e-5)


def test_layernorm_shape_errors(emu):
    x = np.zeros((2, 8), np.float32)
    with L.kernel_provider(emu):
        with pytest.raises(ValueError, match="does not match weight"):
            layers.layer_norm_forward(x, np.ones(7, np.float32), np.zeros(8, np.float32))
        with pytest.raises(ValueError, match="residual shape"):
            layers.layer_norm_forward(x, np.ones(8, np.float32), np.zeros(8, np.float32),
                                      residual=np.zeros((2, 4), np.float32))
        with pytest.raises(TypeError, match="float32"):
            layers.layer_norm_forward(x.astype(np.float64), np.ones(8), np.zeros(8))


# ---- 08: softmax + cross-entropy -------------------------------------------------------------

def _xent_reference(logits, targets, ignore_index, g=1.0):
    """The reference CrossEntropy (minigpt/ops/cross_entropy.py) in float64: loss, dlogits."""
    f = CrossEntropy()
    loss = f.forward(logits.astype(np.float64), targets=targets, ignore_index=ignore_index)
    (dz,) = f.backward(np.float64(g))
    return loss, dz


XENT_CASES = [
    # N, V, ignored rows, logit scale
    (6, 1000, (1, 4), 1.0),      # V not a multiple of 256; two ignored rows
    (3, 40478, (), 3.0),         # GPT-1's vocabulary
    (5, 300, (0, 1, 2, 3, 4), 1.0),  # every row ignored: loss 0, gradient 0
    (4, 257, (2,), 80.0),        # large logits: exp would overflow without the running max
]


@pytest.mark.parametrize("N,V,ignored,scale", XENT_CASES)
def test_emulated_softmax_xent_matches_float64_reference(emu, N, V, ignored, scale):
    rng = np.random.default_rng(N * V)
    logits = (rng.standard_normal((N, V)) * scale).astype(np.float32)
    targets = rng.integers(0, V, N)  # int64, as the data pipeline makes them
    targets[list(ignored)] = -100
    g = np.float32(0.7)
    with L.kernel_provider(emu), L.poison_outputs():
        losses, lse, stats = layers.xent_forward(logits, targets, -100)
        dz = layers.xent_backward(logits, targets, lse, stats, np.array(g), -100)
        *_, dz_one_pass = layers.xent_forward(logits, targets, -100,
                                              grad_scale=1.0 / max(N - len(ignored), 1))
    loss_ref, dz_ref = _xent_reference(logits, targets, -100, float(g))
    _, dz1_ref = _xent_reference(logits, targets, -100, 1.0)
    kept = targets != -100
    assert stats[2] == kept.sum()
    np.testing.assert_allclose(stats[0], loss_ref, rtol=2e-6, atol=1e-6)
    assert np.all(losses[~kept] == 0)
    _close(dz, dz_ref, "dz", atol=1e-6)
    _close(dz_one_pass, dz1_ref, "dz one pass", atol=1e-6)
    z = logits.astype(np.float64)
    m = z.max(-1, keepdims=True)
    _close(lse, (m + np.log(np.exp(z - m).sum(-1, keepdims=True)))[:, 0], "lse", rtol=2e-6)


def test_emulated_cross_entropy_function_through_autograd(emu):
    rng = np.random.default_rng(9)
    logits = rng.standard_normal((7, 90)).astype(np.float32)
    targets = rng.integers(0, 90, 7)
    targets[3] = -1
    zt = Tensor(logits.copy(), requires_grad=True)
    with L.kernel_provider(emu):
        loss = layers.FusedCrossEntropy.apply(zt, targets=targets, ignore_index=-1)
        (loss * 3.0).backward()  # a non-unit upstream gradient reaches xent_bwd through g
    loss_ref, dz_ref = _xent_reference(logits, targets, -1, 3.0)
    assert loss.data.shape == () and loss.data.dtype == np.float32
    np.testing.assert_allclose(float(loss.data), loss_ref, rtol=2e-6)
    _close(zt.grad, dz_ref, "dz", atol=1e-6)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(N=st.integers(1, 9), V=st.integers(1, 600), data=st.data())
def test_emulated_softmax_xent_any_shape_and_ignored_rows(emu, N, V, data):
    ignored = data.draw(st.lists(st.booleans(), min_size=N, max_size=N))
    rng = np.random.default_rng(N * 7919 + V)
    logits = (rng.standard_normal((N, V)) * 4).astype(np.float32)
    targets = rng.integers(0, V, N)
    targets[np.array(ignored)] = -100
    with L.kernel_provider(emu), L.poison_outputs():
        losses, lse, stats = layers.xent_forward(logits, targets)
        dz = layers.xent_backward(logits, targets, lse, stats, np.float32(1.0))
    loss_ref, dz_ref = _xent_reference(logits, targets, -100)
    np.testing.assert_allclose(stats[0], loss_ref, rtol=5e-6, atol=1e-6)
    _close(dz, dz_ref, "dz", atol=1e-6)


def test_xent_input_errors(emu):
    with L.kernel_provider(emu):
        with pytest.raises(TypeError, match="integer"):
            layers.xent_forward(np.zeros((2, 3), np.float32), np.zeros(2, np.float32))
        with pytest.raises(ValueError, match="do not fit"):
            layers.xent_forward(np.zeros((2, 3), np.float32), np.zeros(3, np.int64))
        with pytest.raises(ValueError, match=r"\(N, V\)"):
            layers.xent_forward(np.zeros((2, 3, 4), np.float32), np.zeros(2, np.int64))


def test_emulated_reductions_have_no_data_race():
    """ThreadSanitizer over the kernels with block-level reductions (a barrier in the wrong
    place shows up as a race on shared memory)."""
    tsan = emulate.EmulatedKernels(sanitizer="thread")
    rng = np.random.default_rng(2)
    x, g = (rng.standard_normal((20, 40)).astype(np.float32) for _ in range(2))
    w, b = (rng.standard_normal(40).astype(np.float32) for _ in range(2))
    targets = rng.integers(0, 40, 20)
    with L.kernel_provider(tsan):
        _, s, mean, rstd = layers.layer_norm_forward(x, w, b)
        dx, dw, db = layers.layer_norm_backward(s, w, mean, rstd, g)
        losses, lse, stats = layers.xent_forward(x, targets)
        norm = cuda_adam.grad_norm([x, g])
    assert np.isfinite(dw).all() and np.isfinite(stats).all()
    np.testing.assert_allclose(norm, np.sqrt((x.astype(np.float64) ** 2).sum()
                                             + (g.astype(np.float64) ** 2).sum()), rtol=1e-6)


# ---- 09: Adam --------------------------------------------------------------------------------

def _adam_case(rng, shapes):
    ps, gs, ms, vs = ([rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(4))
    vs = [np.abs(v) for v in vs]  # a second moment is never negative
    return ps, gs, ms, vs


@pytest.mark.parametrize("clip", [None, 0.37])
def test_emulated_adam_matches_optim_adam_update_bit_for_bit(emu, monkeypatch, clip):
    """Every tensor of several sizes (some spanning several chunks, one empty) updated in one
    launch gives exactly the bits optim.adam_update gives, tensor by tensor, in float32."""
    monkeypatch.setattr(cuda_adam, "CHUNK", 512)  # several chunks per tensor, small arrays
    rng = np.random.default_rng(0 if clip is None else 1)
    shapes = [(40, 30), (1300,), (7,), (0,), (3, 4, 5)]
    ps, gs, ms, vs = _adam_case(rng, shapes)
    wds = [0.01 if len(s) >= 2 else 0.0 for s in shapes]
    want = [[a.copy() for a in arrs] for arrs in (ps, gs, ms, vs)]
    # Python floats, as optim.Adam.step passes them (a NumPy float64 scalar would make the
    # reference compute in float64)
    lr_t, betas, eps = 2.5e-4 * math.sqrt(1 - 0.999 ** 3) / (1 - 0.9 ** 3), (0.9, 0.999), 1e-8
    for p, g, m, v, wd in zip(*want, wds):
        adam_update(p, g, m, v, lr_t=lr_t, betas=betas, eps=eps, weight_decay=wd, clip=clip)
    with L.kernel_provider(emu):
        cuda_adam.update_arrays(ps, gs, ms, vs, wds, lr_t, betas, eps, clip)
    for name, got, ref in zip(("p", "g", "m", "v"), (ps, gs, ms, vs), want):
        for a, r in zip(got, ref):
            assert np.array_equal(a, r), f"{name} differs: max {np.abs(a - r).max()}"
    assert not np.array_equal(ps[0], _adam_case(np.random.default_rng(0 if clip is None else 1),
                                                shapes)[0][0])  # the update did something


def test_emulated_grad_norm(emu, monkeypatch):
    monkeypatch.setattr(cuda_adam, "CHUNK", 256)
    rng = np.random.default_rng(3)
    grads = [rng.standard_normal(s).astype(np.float32) for s in [(30, 20), (5,), (0,), (700,)]]
    with L.kernel_provider(emu):
        norm = cuda_adam.grad_norm(grads)
        again = cuda_adam.grad_norm(grads)
    want = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads))
    np.testing.assert_allclose(norm, want, rtol=1e-6)
    assert norm == again
    assert cuda_adam.grad_norm([np.zeros(0, np.float32)]) == 0.0


def test_chunk_table():
    t = cuda_adam.chunk_table([5, 0, 12], 4)
    assert t.dtype == np.int32 and t.tolist() == [[0, 0], [0, 4], [2, 0], [2, 4], [2, 8]]
    assert cuda_adam.chunk_table([0], 4).shape == (0, 2)


def test_adam_kernel_is_chosen_only_for_cupy_float32_in_auto():
    """The one-launch update ("adam_all", cuda) never takes NumPy arrays or another mode: the
    CPU path runs optim.update_each."""
    from minigpt import optim
    p, g, m, v = (np.zeros(4, np.float32) for _ in range(4))
    assert dispatch.choose("adam_all", p, g, m, v) is optim.update_each
    assert dispatch.registered()["adam_all"]["cuda"] is cuda_adam.update_all
    assert not cuda_adam.can_fuse_adam([p])
    with dispatch.use("reference"):
        assert not cuda_adam.can_fuse_adam([p])


def test_update_arrays_rejects_bad_inputs(emu):
    a = np.zeros(4, np.float32)
    with L.kernel_provider(emu):
        with pytest.raises(TypeError, match="float32"):
            cuda_adam.update_arrays([a.astype(np.float64)], [a], [a], [a], [0.0], 1e-3,
                                    (0.9, 0.999), 1e-8)
        with pytest.raises(ValueError, match="differ"):
            cuda_adam.update_arrays([a], [np.zeros(3, np.float32)], [a], [a], [0.0], 1e-3,
                                    (0.9, 0.999), 1e-8)


# ---- the sources -------------------------------------------------------------------------------

def test_kernel_names_of_the_new_rungs():
    d = L.kernel_dir()
    names = {f: set(emulate.kernel_names((d / L.KERNEL_FILES[f]).read_text()))
             for f in ("layernorm", "softmax_xent", "adam")}
    assert names["layernorm"] == {"layernorm_fwd", "layernorm_bwd", "layernorm_bwd_reduce"}
    assert names["softmax_xent"] == {"xent_fwd", "xent_reduce", "xent_bwd"}
    assert names["adam"] == {"adam_sumsq", "adam_update"}


def test_cuda_implementations_are_registered_and_decline_numpy():
    reg = dispatch.registered()
    assert reg["layer_norm"]["cuda"] is layers.FusedLayerNorm
    assert reg["cross_entropy"]["cuda"] is layers.FusedCrossEntropy
    assert reg["grad_norm"]["cuda"] is cuda_adam.grad_norm
    x = np.zeros((2, 4), np.float32)
    assert not layers.can_fuse_layer_norm(x, x[0], x[0])
    assert not layers.can_fuse_cross_entropy(x, targets=np.zeros(2, np.int64))
    assert dispatch.choose("layer_norm", x, x[0], x[0], eps=1e-5) is not layers.FusedLayerNorm


def test_index_array_hygiene():
    t = L.as_index_array(np.array([3, -100, 7], dtype=np.int64), "targets")
    assert t.dtype == np.int32 and t.flags.c_contiguous and t.tolist() == [3, -100, 7]
    same = np.array([1, 2], dtype=np.int32)
    assert L.as_index_array(same) is same  # no needless copy
    with pytest.raises(TypeError, match="integer"):
        L.as_index_array(np.zeros(2, np.float32), "targets")
    with pytest.raises(OverflowError, match="32-bit"):
        L.as_index_array(np.array([2**31], dtype=np.int64), "targets")
    assert L.as_index_array(np.array([2**31], dtype=np.int64), check_range=False).dtype == np.int32


def test_emulator_pointer_table_rejects_what_the_gpu_could_not_take():
    with pytest.raises(TypeError, match="float32"):
        emulate.PointerTable([np.zeros(3, np.float64)])
    with pytest.raises(ValueError, match="empty"):
        emulate.PointerTable([])
