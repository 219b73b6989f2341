"""kernels/07_bias_gelu.cu and the linear_gelu op, on the CPU.

1. The NumPy twin (minigpt.cuda.gelu.bias_gelu_reference / _backward_reference) equals the
   reference GELU op (minigpt.ops.gelu) on x + b, and the linear_gelu op equals
   gelu(linear(...)) with a float64 central-difference gradient check.
2. The kernels on the CPU (tools/cuda_emu, AddressSanitizer): y, dx and db against the float64
   twin for rows not a multiple of the 64-row chunk, columns not a multiple of the 64-column
   strip, no bias, N-D inputs; every output poisoned with NaN first; db bit-identical across
   runs (no atomics); ThreadSanitizer over the shared-memory db partial sums.
3. FusedGELU / FusedLinearGELU (the "cuda" gelu and linear_gelu) through the emulator against
   the reference ops' outputs and gradients.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import minigpt
from minigpt import Tensor
from minigpt import functional as F
from minigpt.cuda import gelu as G
from minigpt.cuda import loader as L
from minigpt.gradcheck import gradcheck

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools" / "cuda_emu"))
import emulate  # noqa: E402

requires_gxx = pytest.mark.skipif(not emulate.have_compiler(), reason="g++ is not on PATH: the "
                                  "CPU emulator of the CUDA kernels (tools/cuda_emu) needs it")


# ---- 1. the NumPy twin and the op --------------------------------------------------------------

def test_numpy_twin_is_the_reference_gelu_of_x_plus_b():
    rng = np.random.default_rng(0)
    x, b = rng.standard_normal((5, 8)) * 3, rng.standard_normal(8)
    g = rng.standard_normal((5, 8))
    xt = Tensor(x + b, requires_grad=True)
    with minigpt.use("reference"):
        y = F.gelu(xt)
    y.backward(g)
    np.testing.assert_allclose(G.bias_gelu_reference(x, b), y.data, rtol=1e-14, atol=1e-15)
    dx, db = G.bias_gelu_backward_reference(g, x, b)
    np.testing.assert_allclose(dx, xt.grad, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(db, xt.grad.sum(axis=0), rtol=1e-13, atol=1e-14)
    dx0, db0 = G.bias_gelu_backward_reference(g, x)
    assert db0 is None and np.allclose(G.bias_gelu_reference(x), 0.5 * x * (1 + np.tanh(
        np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))))


@pytest.mark.parametrize("mode", ["reference", "fast"])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_gelu_is_gelu_of_linear_and_gradchecks(mode, bias):
    rng = np.random.default_rng(1)
    x = Tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    W = Tensor(rng.standard_normal((4, 6)) * 0.5, requires_grad=True)
    b = Tensor(rng.standard_normal(6), requires_grad=True) if bias else None
    with minigpt.use(mode):
        y = F.linear_gelu(x, W, b)
        want = F.gelu(F.linear(x, W, b))
        np.testing.assert_array_equal(y.data, want.data)
        inputs = [x, W] + ([b] if bias else [])
        assert gradcheck(lambda *a: F.linear_gelu(*a), inputs)


def test_linear_gelu_shape_errors():
    x = Tensor(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="weight is \\(in, out\\)"):
        F.linear_gelu(x, Tensor(np.zeros((5, 6))))
    with pytest.raises(ValueError, match="bias shape"):
        F.linear_gelu(x, Tensor(np.zeros((4, 6))), Tensor(np.zeros(5)))


def test_cuda_implementations_refuse_numpy_and_odd_widths():
    x = np.zeros((3, 8), np.float32)
    assert not G.can_fuse_bias_gelu(x)
    with pytest.raises(ValueError, match="multiple of 4"):
        G.bias_gelu_forward(np.zeros((3, 6), np.float32))
    assert minigpt.dispatch.registered()["linear_gelu"]["cuda"] is G.FusedLinearGELU
    assert minigpt.dispatch.registered()["gelu"]["cuda"] is G.FusedGELU


# ---- 2. the kernels through the emulator -------------------------------------------------------

@pytest.fixture(scope="module")
def emu():
    if not emulate.have_compiler():
        pytest.skip("g++ is not on PATH")
    return emulate.EmulatedKernels(sanitizer="address")


@requires_gxx
@pytest.mark.parametrize("shape,bias", [
    ((1, 4), True),          # one row, one float4
    ((7, 12), True),         # a partial column strip
    ((130, 72), True),       # three row chunks, two strips (the second 8 columns wide)
    ((2, 33, 8), True),      # N-D input: 66 rows
    ((33, 16), False),       # the plain GELU (no bias, no db)
])
def test_emulated_bias_gelu(emu, shape, bias):
    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    b = rng.standard_normal(shape[-1]).astype(np.float32) if bias else None
    with L.kernel_provider(emu), L.poison_outputs():
        y = G.bias_gelu_forward(x, b)
        dx, db = G.bias_gelu_backward(g, x, b)
    f64 = lambda a: None if a is None else a.astype(np.float64)  # noqa: E731
    y_ref = G.bias_gelu_reference(f64(x), f64(b))
    dx_ref, db_ref = G.bias_gelu_backward_reference(f64(g), f64(x), f64(b))
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-6)
    if bias:
        np.testing.assert_allclose(db, db_ref, rtol=1e-5, atol=1e-5)
        launches = emu.kernels["07_bias_gelu.cu:bias_gelu_bwd"].launches
        grid = launches[-1][0]
        N = x.size // shape[-1]
        assert grid[:2] == (-(-shape[-1] // 64), -(-N // G.GELU_ROWS_PER_CHUNK))
    else:
        assert db is None


@requires_gxx
def test_emulated_db_is_deterministic(emu):
    rng = np.random.default_rng(3)
    x, g = (rng.standard_normal((150, 8)).astype(np.float32) for _ in range(2))
    b = rng.standard_normal(8).astype(np.float32)
    with L.kernel_provider(emu):
        first = G.bias_gelu_backward(g, x, b)
        again = G.bias_gelu_backward(g, x, b)
    for a, c in zip(first, again):
        assert np.array_equal(a, c)


@requires_gxx
def test_emulated_db_partial_sums_have_no_data_race():
    """ThreadSanitizer over bias_gelu_bwd's column sums in shared memory: a missing or misplaced
    barrier between the row lanes' writes and the fixed-order sum is reported as a race."""
    tsan = emulate.EmulatedKernels(sanitizer="thread")
    rng = np.random.default_rng(6)
    x, g = (rng.standard_normal((70, 72)).astype(np.float32) for _ in range(2))
    b = rng.standard_normal(72).astype(np.float32)
    with L.kernel_provider(tsan):
        dx, db = G.bias_gelu_backward(g, x, b)
    _, db_ref = G.bias_gelu_backward_reference(g.astype(np.float64), x.astype(np.float64),
                                               b.astype(np.float64))
    np.testing.assert_allclose(db, db_ref, rtol=1e-5, atol=1e-5)


# ---- 3. the autograd Functions -----------------------------------------------------------------

@requires_gxx
@pytest.mark.parametrize("bias", [True, False])
def test_emulated_fused_linear_gelu_matches_reference(emu, bias):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    W = (rng.standard_normal((8, 12)) * 0.3).astype(np.float32)
    b = rng.standard_normal(12).astype(np.float32) if bias else None
    g = rng.standard_normal((2, 5, 12)).astype(np.float32)
    ins = [x, W] + ([b] if bias else [])
    ref = [Tensor(a.astype(np.float64), requires_grad=True) for a in ins]
    with minigpt.use("reference"):
        y_ref = F.linear_gelu(*ref)
    y_ref.backward(g.astype(np.float64))
    got = [Tensor(a.copy(), requires_grad=True) for a in ins]
    with L.kernel_provider(emu):
        y = G.FusedLinearGELU.apply(*got)
        y.backward(g)
    assert y.shape == (2, 5, 12)
    np.testing.assert_allclose(y.data, y_ref.data, rtol=1e-5, atol=1e-5)
    for t, r in zip(got, ref):
        np.testing.assert_allclose(t.grad, r.grad, rtol=1e-4, atol=1e-5)


@requires_gxx
def test_emulated_fused_gelu_matches_reference(emu):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((3, 4, 8)) * 2).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    xr = Tensor(x.astype(np.float64), requires_grad=True)
    with minigpt.use("reference"):
        yr = F.gelu(xr)
    yr.backward(g.astype(np.float64))
    xt = Tensor(x.copy(), requires_grad=True)
    with L.kernel_provider(emu):
        y = G.FusedGELU.apply(xt)
        y.backward(g)
    np.testing.assert_allclose(y.data, yr.data, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xt.grad, xr.grad, rtol=1e-5, atol=1e-6)
