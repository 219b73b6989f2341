"""GPU tests of kernels 06 (LayerNorm), 08 (softmax + cross-entropy) and 09 (Adam), and of a
GPT trained on CuPy with every kernel in use: skip without CuPy + GPU.

Each kernel is compared with the reference op in float64 on the host (|got - ref| <= atol +
rtol |ref|), with output buffers NaN-poisoned before the launch; reductions must give the same
bits on every run; Adam must equal optim.adam_update on NumPy float32 bit for bit (IEEE sqrt and
division, no FMA contraction). The end-to-end test trains a small GPT for 30 steps on NumPy and
on CuPy from the same weights and batches and counts the launches of every kernel.

Run: python3 -m pytest tests/test_gpu_layers.py   (tools/gpu_check.py runs it too)
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from minigpt import Tensor, dispatch
from minigpt.backend import BackendError, cupy_module
from minigpt.cuda import adam as cuda_adam
from minigpt.cuda import layers
from minigpt.cuda import loader as L
from minigpt.ops.cross_entropy import CrossEntropy
from minigpt.ops.layer_norm import LayerNorm
from minigpt.optim import adam_update

try:
    cp = cupy_module()
    _REASON = ""
except BackendError as e:
    cp, _REASON = None, str(e)

pytestmark = pytest.mark.skipif(cp is None, reason=f"GPU tests need CuPy and an NVIDIA GPU: {_REASON}")


def _host(a):
    return cp.asnumpy(a) if isinstance(a, cp.ndarray) else np.asarray(a)


def _close(name, got, ref, atol, rtol):
    got = _host(got).astype(np.float64)
    assert got.shape == ref.shape, (name, got.shape, ref.shape)
    assert np.isfinite(got).all(), f"{name}: non-finite values (an unwritten element?)"
    err = np.abs(got - ref)
    bound = atol + rtol * np.abs(ref)
    if (err > bound).any():
        i = int(np.argmax(err - bound))
        raise AssertionError(f"{name}: {int((err > bound).sum())} of {err.size} out of "
                             f"tolerance; worst |err| {err.flat[i]:.3g} > {bound.flat[i]:.3g}")


def _ln_reference(x, w, b, g, eps=1e-5):
    f = LayerNorm()
    y = f.forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), eps=eps)
    return (y, *f.backward(g.astype(np.float64)))


# ---- 06: LayerNorm ------------------------------------------------------------------------------

@pytest.mark.parametrize("N,C,residual", [(2048, 768, False), (4096, 768, True), (7, 50, False),
                                          (1, 1, True), (300, 1024, True)])
def test_layernorm_kernels(N, C, residual):
    rng = np.random.default_rng(N + C)
    x = rng.standard_normal((N, C)) * 2 + 1
    r = rng.standard_normal((N, C)) if residual else None
    w, b = rng.standard_normal(C), rng.standard_normal(C)
    g = rng.standard_normal((N, C))
    f32 = lambda a: cp.asarray(a.astype(np.float32))  # noqa: E731
    with L.poison_outputs():
        y, s, mean, rstd = layers.layer_norm_forward(f32(x), f32(w), f32(b), 1e-5,
                                                     residual=None if r is None else f32(r))
        dx, dw, db = layers.layer_norm_backward(s, f32(w), mean, rstd, f32(g))
    xin = x.astype(np.float32).astype(np.float64)
    if residual:
        xin = (x.astype(np.float32) + r.astype(np.float32)).astype(np.float64)
    y_ref, dx_ref, dw_ref, db_ref = _ln_reference(xin, w.astype(np.float32),
                                                  b.astype(np.float32), g.astype(np.float32))
    _close("y", y, y_ref, 1e-5, 1e-5)
    _close("dx", dx, dx_ref, 2e-5, 1e-4)
    _close("dw", dw, dw_ref, 1e-4 * math.sqrt(N), 1e-4)  # sums over N rows
    _close("db", db, db_ref, 1e-4 * math.sqrt(N), 1e-4)


def test_layernorm_backward_is_deterministic():
    rng = np.random.default_rng(5)
    x, g = (cp.asarray(rng.standard_normal((4096, 768)).astype(np.float32)) for _ in range(2))
    w, b = (cp.asarray(rng.standard_normal(768).astype(np.float32)) for _ in range(2))
    _, s, mean, rstd = layers.layer_norm_forward(x, w, b)
    first = [cp.asnumpy(a) for a in layers.layer_norm_backward(s, w, mean, rstd, g)]
    for _ in range(2):
        again = [cp.asnumpy(a) for a in layers.layer_norm_backward(s, w, mean, rstd, g)]
        for a, c in zip(first, again):
            assert np.array_equal(a, c)


def test_layer_norm_dispatches_to_the_kernel():
    x = Tensor(cp.ones((2, 3, 8), np.float32), requires_grad=True)
    w = Tensor(cp.ones(8, np.float32), requires_grad=True)
    b = Tensor(cp.zeros(8, np.float32), requires_grad=True)
    from minigpt import functional as F
    assert isinstance(F.layer_norm(x, w, b).creator, layers.FusedLayerNorm)
    with L.use_fused(False):
        assert not isinstance(F.layer_norm(x, w, b).creator, layers.FusedLayerNorm)
    with dispatch.use("reference"):
        assert not isinstance(F.layer_norm(x, w, b).creator, layers.FusedLayerNorm)


# ---- 08: softmax + cross-entropy -------------------------------------------------------------

def _xent_reference(z, t, ignore_index, g=1.0):
    f = CrossEntropy()
    loss = f.forward(z.astype(np.float64), targets=t, ignore_index=ignore_index)
    return loss, f.backward(np.float64(g))[0]


@pytest.mark.parametrize("N,V,scale", [(512, 40478, 3.0), (33, 1000, 30.0), (1, 7, 1.0)])
def test_softmax_xent_kernels(N, V, scale):
    rng = np.random.default_rng(N + V)
    z = (rng.standard_normal((N, V)) * scale).astype(np.float32)
    t = rng.integers(0, V, N)
    t[::5] = -100  # every fifth row ignored
    zd, td = cp.asarray(z), cp.asarray(t)
    with L.poison_outputs():
        losses, lse, stats = layers.xent_forward(zd, td)
        dz = layers.xent_backward(zd, td, lse, stats, cp.asarray(np.float32(0.5)))
        *_, dz1 = layers.xent_forward(zd, td, grad_scale=1.0 / max(int((t != -100).sum()), 1))
    loss_ref, dz_ref = _xent_reference(z, t, -100, 0.5)
    _, dz1_ref = _xent_reference(z, t, -100, 1.0)
    _close("loss", stats[0], np.float64(loss_ref), 1e-5, 1e-5)
    # |dz| is at most 1/n_kept; most elements are far smaller: a relative tolerance does the work
    _close("dz", dz, dz_ref, 1e-10, 1e-4)
    _close("dz one pass", dz1, dz1_ref, 1e-10, 1e-4)
    assert int(stats[2]) == int((t != -100).sum())


def test_cross_entropy_function_on_cupy_matches_reference_and_is_deterministic():
    from minigpt import functional as F
    rng = np.random.default_rng(8)
    z = rng.standard_normal((4, 64, 500)).astype(np.float32)
    t = rng.integers(0, 500, (4, 64))
    t[0, :10] = -100
    zt = Tensor(cp.asarray(z), requires_grad=True)
    loss = F.cross_entropy(zt, cp.asarray(t))
    assert isinstance(loss.creator, layers.FusedCrossEntropy)
    loss.backward()
    loss_ref, dz_ref = _xent_reference(z.reshape(-1, 500), t.reshape(-1), -100)
    _close("loss", loss.data, np.float64(loss_ref), 1e-6, 1e-5)
    _close("dz", zt.grad.reshape(-1, 500), dz_ref, 1e-10, 1e-4)
    again = F.cross_entropy(Tensor(cp.asarray(z)), cp.asarray(t))
    assert float(again.data) == float(loss.data)


# ---- 09: Adam --------------------------------------------------------------------------------

GPT1_SHAPES = [(40478, 768), (512, 768)] + [s for _ in range(2) for s in [
    (768, 2304), (2304,), (768, 768), (768,), (768,), (768,), (768, 3072), (3072,), (3072, 768),
    (768,), (768,), (768,)]]


@pytest.mark.parametrize("clip", [None, 0.25])
def test_adam_kernel_equals_optim_adam_update_bit_for_bit(clip):
    rng = np.random.default_rng(1 if clip else 0)
    host = [[rng.standard_normal(s).astype(np.float32) for s in GPT1_SHAPES] for _ in range(4)]
    host[3] = [np.abs(v) * 1e-3 for v in host[3]]
    wds = [0.01 if len(s) >= 2 else 0.0 for s in GPT1_SHAPES]
    dev = [[cp.asarray(a) for a in arrs] for arrs in host]
    lr_t = 6.25e-5 * math.sqrt(1 - 0.999 ** 7) / (1 - 0.9 ** 7)
    for p, g, m, v, wd in zip(*host, wds):
        adam_update(p, g, m, v, lr_t=lr_t, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd,
                    clip=clip)
    cuda_adam.update_arrays(*dev, wds, lr_t, (0.9, 0.999), 1e-8, clip)
    for name, d, h in zip("pgmv", dev, host):
        for i, (a, b) in enumerate(zip(d, h)):
            got = cp.asnumpy(a)
            assert np.array_equal(got, b), (f"{name}[{i}] {GPT1_SHAPES[i]}: "
                                            f"{int((got != b).sum())} elements differ")


def test_grad_norm_kernel():
    rng = np.random.default_rng(2)
    grads = [rng.standard_normal(s).astype(np.float32) for s in GPT1_SHAPES[:6]]
    dev = [cp.asarray(g) for g in grads]
    want = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads))
    got = cuda_adam.grad_norm(dev)
    assert abs(got - want) <= 1e-6 * want
    assert cuda_adam.grad_norm(dev) == got  # the same bits every run


def test_optimizer_step_uses_one_launch_and_matches_numpy():
    from minigpt.nn import Parameter
    from minigpt.optim import Adam
    rng = np.random.default_rng(3)
    shapes = [(64, 32), (32,), (10, 3, 4)]
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(3)]
    results = {}
    prov = _CountingProvider()
    # the CPU side runs optim.adam_update itself (mode "reference"; the "fast" CPU version
    # rounds g^2 (1 - b2) in another order), the GPU side the kernel (mode "auto")
    for device, mode in (("cpu", "reference"), ("cuda", "auto")):
        ps = [Parameter(a.copy() if device == "cpu" else cp.asarray(a)) for a in arrays]
        opt = Adam(ps, lr=1e-2, weight_decay=0.01, max_grad_norm=None)
        with dispatch.use(mode), L.kernel_provider(prov):
            for step in grads:
                for p, g in zip(ps, step):
                    p.grad = g.copy() if device == "cpu" else cp.asarray(g)
                opt.step()
        results[device] = [_host(p.data) for p in ps]
    assert prov.counts.get("adam_update") == len(grads), prov.counts  # one launch per step
    for a, b in zip(results["cpu"], results["cuda"]):
        assert np.array_equal(a, b)


# ---- end to end: a GPT on CuPy with every kernel ---------------------------------------------

class _CountingProvider:
    """The real CuPy provider, counting the launches of each kernel by name."""

    def __init__(self):
        self.inner = L.CupyKernels()
        self.counts = {}

    def get_function(self, filename, name):
        fn = self.inner.get_function(filename, name)
        counts = self.counts

        class Counted:
            def __call__(self, *args, **kwargs):
                counts[name] = counts.get(name, 0) + 1
                return fn(*args, **kwargs)

            def __getattr__(self, attr):
                return getattr(fn, attr)

            def __setattr__(self, attr, value):
                setattr(fn, attr, value)

        return Counted()

    def __getattr__(self, attr):
        return getattr(self.inner, attr)


def test_model_trains_on_cupy_with_every_kernel_like_numpy():
    from minigpt.model import GPT, GPTConfig
    from minigpt.optim import Adam
    cfg = GPTConfig(vocab_size=65, n_ctx=64, n_layer=2, n_embd=128, n_head=4,
                    embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0)
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, 65, (4, 1)) + rng.integers(1, 4, (4, 1)) * np.arange(65)[None])
               % 65 for _ in range(30)]
    losses = {}
    prov = _CountingProvider()
    for device in ("cpu", "cuda"):
        model = GPT(cfg, seed=0)
        if device == "cuda":
            model.to("cuda")
        opt = Adam(model.parameters(), lr=1e-3)
        run = []
        with L.kernel_provider(prov):
            for b in batches:
                xb = b if device == "cpu" else cp.asarray(b)
                loss = model.loss(xb[:, :-1], xb[:, 1:])
                loss.backward()
                opt.step()
                opt.zero_grad()
                run.append(float(loss.item()))
        losses[device] = np.array(run)
    n = len(batches)
    for name, at_least in (("layernorm_fwd", 2 * cfg.n_layer * n), ("layernorm_bwd", 2 * cfg.n_layer * n),
                           ("xent_fwd", n), ("xent_bwd", n), ("adam_update", n), ("adam_sumsq", n)):
        assert prov.counts.get(name, 0) >= at_least, (name, prov.counts)
    assert any(k.startswith("flash_fwd") for k in prov.counts), prov.counts
    cpu, gpu = losses["cpu"], losses["cuda"]
    print("loss cpu", cpu[[0, 9, n - 1]], "gpu", gpu[[0, 9, n - 1]], "launches", prov.counts)
    np.testing.assert_allclose(gpu[0], cpu[0], rtol=1e-5)   # same weights, same batch
    np.testing.assert_allclose(gpu, cpu, rtol=5e-4)         # after 30 steps: float32 drift only
