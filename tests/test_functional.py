"""GPT-1's layer ops (minigpt.functional): gradient checks on hypothesis-drawn shapes, numerical
stability, causality of attention, parity with PyTorch, bad input and dtype discipline.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigpt
import minigpt.functional as F
from minigpt import Tensor, gradcheck
from conftest import requires_torch, tensor64

seeds = st.integers(0, 2**32 - 1)
sizes = st.integers(1, 3)  # 1 is always a candidate: T=1, hs=1, one head, one row


def random_padding(rng, B, T, p_pad=0.4):
    """A (B, T) key mask of 1 = real token, 0 = padding; rows may be entirely padding."""
    return (rng.random((B, T)) >= p_pad).astype(np.int64)


# ---- gradient checks ----------------------------------------------------------------------

@given(st.integers(1, 5), sizes, sizes, st.integers(1, 4), seeds)
def test_gradcheck_embedding(V, C, B, T, seed):
    """dW scatter-adds g into the rows that were looked up (ids drawn from a small vocabulary,
    so repeated ids are common)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, V, size=(B, T))
    W = tensor64(rng, V, C)
    assert gradcheck(lambda W: F.embedding(idx, W), [W])


def test_embedding_of_an_empty_batch():
    """T=0 ids give a (B, 0, C) output and an all-zero weight gradient."""
    W = Tensor(np.ones((3, 2)), requires_grad=True)
    y = F.embedding(np.zeros((2, 0), dtype=np.int64), W)
    assert y.shape == (2, 0, 2)
    y.backward(np.ones(y.shape))
    np.testing.assert_array_equal(W.grad, np.zeros((3, 2)))


def test_embedding_repeated_ids_collect_every_gradient():
    """Id 1 used three times receives the sum of its three upstream rows; unused id 2 gets 0."""
    W = Tensor(np.zeros((3, 2)), requires_grad=True)
    idx = np.array([[1, 0, 1], [1, 0, 0]])
    g = np.arange(12.0).reshape(2, 3, 2)
    F.embedding(idx, W).backward(g)
    np.testing.assert_array_equal(W.grad[1], g[0, 0] + g[0, 2] + g[1, 0])
    np.testing.assert_array_equal(W.grad[0], g[0, 1] + g[1, 1] + g[1, 2])
    np.testing.assert_array_equal(W.grad[2], [0.0, 0.0])
    assert gradcheck(lambda W: F.embedding(idx, W), [Tensor(np.random.default_rng(0)
                                                           .standard_normal((3, 2)), True)])


@given(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3), sizes, sizes,
       st.booleans(), seeds)
def test_gradcheck_linear(batch, n_in, n_out, with_bias, seed):
    """y = x @ W + b with W stored (in, out), for inputs of any number of leading dims."""
    rng = np.random.default_rng(seed)
    x = tensor64(rng, *batch, n_in)
    W = tensor64(rng, n_in, n_out)
    if with_bias:
        b = tensor64(rng, n_out)
        assert gradcheck(lambda x, W, b: F.linear(x, W, b), [x, W, b])
    else:
        assert gradcheck(lambda x, W: F.linear(x, W), [x, W])


@given(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3), st.integers(1, 5),
       seeds)
def test_gradcheck_layer_norm(batch, C, seed):
    """LayerNorm (biased variance, eps inside the rsqrt) for x, weight and bias; C=1 included."""
    rng = np.random.default_rng(seed)
    x = tensor64(rng, *batch, C, scale=2.0)
    w = tensor64(rng, C)
    b = tensor64(rng, C)
    assert gradcheck(lambda x, w, b: F.layer_norm(x, w, b), [x, w, b])


@given(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3), seeds)
def test_gradcheck_gelu(shape, seed):
    """GELU's tanh form, on inputs spread over [-6, 6] where its curvature matters."""
    x = tensor64(np.random.default_rng(seed), *shape, scale=2.5)
    assert gradcheck(F.gelu, [x])


@given(st.data(), hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), seeds)
def test_gradcheck_softmax_and_log_softmax(data, shape, seed):
    """softmax and log_softmax along any axis (rows of length 1 included)."""
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    x = tensor64(np.random.default_rng(seed), *shape, scale=3.0)
    assert gradcheck(lambda x: F.softmax(x, axis=axis), [x])
    assert gradcheck(lambda x: F.log_softmax(x, axis=axis), [x])


@given(st.data(), sizes, sizes, st.integers(1, 4), sizes, st.booleans(), st.booleans(), seeds)
def test_gradcheck_attention(data, B, nh, Tk, hs, causal, padded, seed):
    """Attention's hand-derived backward for q, k and v: causal or not, Tq <= Tk (KV-cache
    style queries), optional key padding (rows that see no key at all included)."""
    Tq = data.draw(st.integers(1, Tk), label="Tq")
    rng = np.random.default_rng(seed)
    q, k, v = tensor64(rng, B, nh, Tq, hs), tensor64(rng, B, nh, Tk, hs), tensor64(rng, B, nh, Tk, hs)
    pad = random_padding(rng, B, Tk) if padded else None
    assert gradcheck(lambda q, k, v: F.attention(q, k, v, causal=causal, padding_mask=pad),
                     [q, k, v])


def test_attention_fully_padded_row_outputs_zeros():
    """A batch row whose keys are all padding outputs exactly zeros and passes no gradient;
    the other row is unaffected."""
    rng = np.random.default_rng(1)
    q, k, v = (tensor64(rng, 2, 2, 3, 2) for _ in range(3))
    pad = np.array([[0, 0, 0], [1, 1, 0]])
    out = F.attention(q, k, v, causal=False, padding_mask=pad)
    np.testing.assert_array_equal(out.data[0], 0.0)
    assert np.all(np.isfinite(out.data))
    out.backward(rng.standard_normal(out.shape))
    for t in (q, k, v):
        np.testing.assert_array_equal(t.grad[0], 0.0)
        assert np.all(np.isfinite(t.grad))
    np.testing.assert_array_equal(k.grad[1, :, 2], 0.0)  # the padded key of row 1
    np.testing.assert_array_equal(v.grad[1, :, 2], 0.0)
    assert gradcheck(lambda q, k, v: F.attention(q, k, v, causal=True, padding_mask=pad),
                     [q, k, v])


@given(st.integers(1, 5), st.integers(1, 4), st.sampled_from([-100, -1]), seeds)
def test_gradcheck_cross_entropy_with_ignored_targets(N, V, ignore_index, seed):
    """Mean cross-entropy over the kept targets; ignored rows get zero gradient (all rows may
    be ignored: the loss is then 0)."""
    rng = np.random.default_rng(seed)
    logits = tensor64(rng, N, V, scale=2.0)
    targets = rng.integers(0, V, size=N)
    targets[rng.random(N) < 0.3] = ignore_index
    assert gradcheck(lambda z: F.cross_entropy(z, targets, ignore_index=ignore_index), [logits])
    logits.grad = None
    F.cross_entropy(logits, targets, ignore_index=ignore_index).backward()
    np.testing.assert_array_equal(logits.grad[targets == ignore_index], 0.0)


def test_cross_entropy_values_3d_logits_and_all_ignored():
    """(B, T, V) logits: the loss equals the mean of -log softmax at the kept targets; with every
    target ignored the loss is 0 with zero gradient."""
    rng = np.random.default_rng(2)
    logits = tensor64(rng, 2, 3, 4)
    targets = np.array([[0, 3, -100], [2, -100, 1]])
    loss = F.cross_entropy(logits, targets)
    z = logits.data
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    kept = [(0, 0, 0), (0, 1, 3), (1, 0, 2), (1, 2, 1)]
    np.testing.assert_allclose(loss.item(), -np.mean([logp[i] for i in kept]), rtol=1e-13)
    assert gradcheck(lambda z: F.cross_entropy(z, targets), [logits])
    logits.grad = None
    none_kept = F.cross_entropy(logits, np.full((2, 3), -100))
    assert none_kept.item() == 0.0
    none_kept.backward()
    np.testing.assert_array_equal(logits.grad, 0.0)


@given(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3),
       st.sampled_from([0.1, 0.5, 0.9]), seeds)
def test_gradcheck_dropout_with_fixed_mask(shape, p, seed):
    """Dropout is differentiable for a fixed mask: a generator re-seeded on every call gives
    the same mask each time gradcheck re-runs the function."""
    x = tensor64(np.random.default_rng(seed), *shape)
    assert gradcheck(lambda x: F.dropout(x, p, True, np.random.default_rng(seed)), [x])


@given(sizes, sizes, st.integers(1, 4), sizes, st.booleans(), seeds)
def test_gradcheck_attention_with_attention_dropout(B, nh, T, hs, causal, seed):
    """Dropout on the attention probabilities (attn_pdrop): the backward applies the same mask."""
    rng = np.random.default_rng(seed)
    q, k, v = (tensor64(rng, B, nh, T, hs) for _ in range(3))
    assert gradcheck(lambda q, k, v: F.attention(q, k, v, causal=causal, dropout_p=0.4,
                                                 rng=np.random.default_rng(seed)), [q, k, v])


# ---- numerical stability ----------------------------------------------------------------

BIG = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_and_log_softmax_of_huge_logits_are_finite(dtype):
    """Logits of +-1e4 (exp overflows without the max trick): finite values, rows of softmax
    sum to 1, log_softmax is exact, and the gradients are finite."""
    x = Tensor(BIG.astype(dtype), requires_grad=True)
    y = F.softmax(x)
    assert np.all(np.isfinite(y.data))
    np.testing.assert_allclose(y.data.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(y.data[0], [1.0, 0.0, 0.0])
    y.backward(np.ones(BIG.shape, dtype=dtype) * np.arange(3, dtype=dtype))
    assert np.all(np.isfinite(x.grad))
    x.grad = None
    ls = F.log_softmax(x)
    np.testing.assert_allclose(ls.data[0], [0.0, -2e4, -1e4])
    np.testing.assert_allclose(ls.data[1], [-math.log(3)] * 3, rtol=1e-6)
    ls.backward(np.ones(BIG.shape, dtype=dtype))
    assert np.all(np.isfinite(x.grad))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_of_huge_logits_is_finite(dtype):
    """Cross-entropy on logits of +-1e4 uses logsumexp: the loss (here (0 + 2e4 + 2e4+log2)/3)
    and its gradient are finite."""
    x = Tensor(BIG.astype(dtype), requires_grad=True)
    loss = F.cross_entropy(x, np.array([0, 1, 2]))
    np.testing.assert_allclose(loss.item(), (0.0 + math.log(3) + 2e4 + math.log(2)) / 3,
                               rtol=1e-6)
    loss.backward()
    assert np.all(np.isfinite(x.grad))
    np.testing.assert_allclose(x.grad.sum(-1), 0.0, atol=1e-6)  # softmax - onehot sums to 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_norm_of_a_constant_row_is_finite(dtype):
    """A constant row has zero variance: eps keeps rsqrt finite, the output is the bias, and
    the gradient is finite."""
    x = Tensor(np.full((2, 4), 7.0, dtype=dtype), requires_grad=True)
    w = Tensor(np.array([1.0, 2.0, 3.0, 4.0], dtype=dtype), requires_grad=True)
    b = Tensor(np.array([0.5, -0.5, 0.0, 1.0], dtype=dtype), requires_grad=True)
    y = F.layer_norm(x, w, b)
    np.testing.assert_array_equal(y.data, np.broadcast_to(b.data, (2, 4)))
    y.backward(np.arange(8, dtype=dtype).reshape(2, 4))
    for t in (x, w, b):
        assert np.all(np.isfinite(t.grad))


# ---- causality ------------------------------------------------------------------------------

@given(st.data(), sizes, sizes, st.integers(1, 5), sizes, st.booleans(), seeds)
def test_attention_is_causal(data, B, nh, Tk, hs, padded, seed):
    """Changing q, k or v at any position after t leaves the output at positions <= t exactly
    unchanged (also with Tq < Tk, where query i sits at absolute position i + Tk - Tq)."""
    Tq = data.draw(st.integers(1, Tk), label="Tq")
    t = data.draw(st.integers(0, Tq - 1), label="t")  # a query row
    offset = Tk - Tq
    rng = np.random.default_rng(seed)
    q, k, v = rng.standard_normal((B, nh, Tq, hs)), *rng.standard_normal((2, B, nh, Tk, hs))
    pad = random_padding(rng, B, Tk) if padded else None
    before = F.attention(Tensor(q), Tensor(k), Tensor(v), padding_mask=pad).data
    q2, k2, v2 = q.copy(), k.copy(), v.copy()
    q2[:, :, t + 1:] = rng.standard_normal(q2[:, :, t + 1:].shape) * 10
    k2[:, :, t + offset + 1:] = rng.standard_normal(k2[:, :, t + offset + 1:].shape) * 10
    v2[:, :, t + offset + 1:] = rng.standard_normal(v2[:, :, t + offset + 1:].shape) * 10
    after = F.attention(Tensor(q2), Tensor(k2), Tensor(v2), padding_mask=pad).data
    np.testing.assert_array_equal(after[:, :, :t + 1], before[:, :, :t + 1])


def test_non_causal_attention_sees_the_future():
    """The causality test can fail: without the causal mask a later key changes row 0."""
    rng = np.random.default_rng(3)
    q, k, v = rng.standard_normal((3, 1, 1, 4, 2))
    k2 = k.copy()
    k2[:, :, 3] += 1.0
    for causal, changed in ((False, True), (True, False)):
        a = F.attention(Tensor(q), Tensor(k), Tensor(v), causal=causal).data[:, :, 0]
        b = F.attention(Tensor(q), Tensor(k2), Tensor(v), causal=causal).data[:, :, 0]
        assert (not np.array_equal(a, b)) == changed


@given(sizes, sizes, st.integers(1, 5), sizes, seeds, st.data())
def test_cached_queries_match_the_full_sequence(B, nh, T, hs, seed, data):
    """Causal attention of the last Tq queries against all T keys (KV-cache decoding) equals
    the last Tq rows of full causal self-attention."""
    Tq = data.draw(st.integers(1, T), label="Tq")
    rng = np.random.default_rng(seed)
    q, k, v = (Tensor(rng.standard_normal((B, nh, T, hs))) for _ in range(3))
    full = F.attention(q, k, v).data
    cached = F.attention(q[:, :, T - Tq:], k, v).data
    np.testing.assert_allclose(cached, full[:, :, T - Tq:], rtol=1e-12, atol=1e-14)


# ---- parity with PyTorch (float64) ------------------------------------------------------

def assert_parity(torch, ours, theirs, arrays, seed=0, rtol=1e-10, atol=1e-12):
    """Run our op and PyTorch's on the same float64 arrays, backpropagate the same random
    upstream gradient, and compare outputs and every input gradient."""
    xs = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = ours(*xs)
    upstream = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(upstream)
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    ref = theirs(*ts)
    ref.backward(torch.tensor(upstream, dtype=torch.float64))
    np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=rtol, atol=atol)
    for i, (x, t) in enumerate(zip(xs, ts)):
        np.testing.assert_allclose(x.grad, t.grad.numpy(), rtol=rtol, atol=atol,
                                   err_msg=f"gradient of input {i}")


@requires_torch
@given(st.integers(1, 6), sizes, st.integers(1, 3), st.integers(1, 4), seeds)
def test_parity_embedding(V, C, B, T, seed):
    """F.embedding = torch.nn.functional.embedding (forward and scatter-added weight grad)."""
    import torch
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, V, size=(B, T))
    assert_parity(torch, lambda W: F.embedding(idx, W),
                  lambda W: torch.nn.functional.embedding(torch.from_numpy(idx), W),
                  [rng.standard_normal((V, C))], seed)


@requires_torch
@given(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3), sizes, sizes, seeds)
def test_parity_linear(batch, n_in, n_out, seed):
    """F.linear(x, W, b) with W (in, out) = torch's linear(x, W.T, b)."""
    import torch
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((*batch, n_in)), rng.standard_normal((n_in, n_out)),
              rng.standard_normal(n_out)]
    assert_parity(torch, F.linear, lambda x, W, b: torch.nn.functional.linear(x, W.T, b),
                  arrays, seed)
    assert_parity(torch, F.linear, lambda x, W: torch.nn.functional.linear(x, W.T),
                  arrays[:2], seed)


@requires_torch
@given(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3), st.integers(1, 6),
       seeds)
def test_parity_layer_norm(batch, C, seed):
    """F.layer_norm = torch's layer_norm over the last axis with eps=1e-5."""
    import torch
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((*batch, C)) * 3 + 1, rng.standard_normal(C),
              rng.standard_normal(C)]
    assert_parity(torch, F.layer_norm,
                  lambda x, w, b: torch.nn.functional.layer_norm(x, (C,), w, b, eps=1e-5),
                  arrays, seed)


def test_parity_layer_norm_constant_row(torch):
    """On a constant row (zero variance) the gradients still match PyTorch's (the `torch`
    fixture skips this test when torch is absent)."""
    x = np.full((2, 5), -3.0)
    x[1] = np.arange(5.0)
    rng = np.random.default_rng(0)
    assert_parity(torch, F.layer_norm,
                  lambda x, w, b: torch.nn.functional.layer_norm(x, (5,), w, b, eps=1e-5),
                  [x, rng.standard_normal(5), rng.standard_normal(5)], rtol=1e-9)


@requires_torch
@given(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), seeds)
def test_parity_gelu(shape, seed):
    """F.gelu = torch's gelu(approximate='tanh') (GPT-1's form)."""
    import torch
    x = np.random.default_rng(seed).standard_normal(shape) * 3
    assert_parity(torch, F.gelu, lambda x: torch.nn.functional.gelu(x, approximate="tanh"),
                  [x], seed)


@requires_torch
@given(st.data(), hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), seeds)
def test_parity_softmax_and_log_softmax(data, shape, seed):
    """F.softmax / F.log_softmax = torch's along any axis, including logits of +-1e4."""
    import torch
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * data.draw(st.sampled_from([1.0, 1e4]), label="scale")
    assert_parity(torch, lambda x: F.softmax(x, axis=axis),
                  lambda x: torch.softmax(x, dim=axis), [x], seed)
    assert_parity(torch, lambda x: F.log_softmax(x, axis=axis),
                  lambda x: torch.log_softmax(x, dim=axis), [x], seed)


def torch_attention(torch, q, k, v, causal, padding_mask):
    """Reference attention in PyTorch: explicit masked softmax (query i at absolute position
    i + Tk - Tq), rows with no visible key output zeros."""
    Tq, Tk, hs = q.shape[2], k.shape[2], q.shape[3]
    visible = torch.ones(Tq, Tk, dtype=torch.bool)
    if causal:
        visible = torch.ones(Tq, Tk, dtype=torch.bool).tril(diagonal=Tk - Tq)
    visible = visible[None, None]
    if padding_mask is not None:
        visible = visible & torch.from_numpy(padding_mask.astype(bool))[:, None, None, :]
    S = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
    S = S.masked_fill(~visible, float("-inf"))
    any_visible = visible.any(dim=-1, keepdim=True)
    P = torch.softmax(torch.where(any_visible, S, torch.zeros_like(S)), dim=-1) * any_visible
    return P @ v


@requires_torch
@given(st.data(), sizes, sizes, st.integers(1, 5), sizes, st.booleans(), st.booleans(), seeds)
def test_parity_attention(data, B, nh, Tk, hs, causal, padded, seed):
    """F.attention = masked softmax(q k^T / sqrt(hs)) v in PyTorch, forward and q/k/v grads,
    with causal masks for Tq <= Tk and key padding (fully padded rows included)."""
    import torch
    Tq = data.draw(st.integers(1, Tk), label="Tq")
    rng = np.random.default_rng(seed)
    pad = random_padding(rng, B, Tk) if padded else None
    arrays = [rng.standard_normal((B, nh, Tq, hs)), rng.standard_normal((B, nh, Tk, hs)),
              rng.standard_normal((B, nh, Tk, hs))]
    assert_parity(torch, lambda q, k, v: F.attention(q, k, v, causal=causal, padding_mask=pad),
                  lambda q, k, v: torch_attention(torch, q, k, v, causal, pad), arrays, seed)


@requires_torch
@given(sizes, sizes, st.integers(1, 5), sizes, st.booleans(), seeds)
def test_parity_attention_with_torch_sdpa(B, nh, T, hs, causal, seed):
    """F.attention = torch's scaled_dot_product_attention for self-attention (Tq = Tk)."""
    import torch
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((B, nh, T, hs)) for _ in range(3)]
    assert_parity(torch, lambda q, k, v: F.attention(q, k, v, causal=causal),
                  lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(
                      q, k, v, is_causal=causal), arrays, seed)


@requires_torch
@given(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=4), st.integers(1, 5),
       st.sampled_from([-100, -1, 0]), seeds)
def test_parity_cross_entropy(batch, V, ignore_index, seed):
    """F.cross_entropy = torch's cross_entropy(ignore_index=...) mean over kept targets,
    for (N, V) and (B, T, V) logits, including logits of +-1e4."""
    import torch
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, V, size=batch)
    targets[rng.random(batch) < 0.3] = ignore_index
    if np.all(targets == ignore_index):  # torch gives NaN when nothing is kept; ours 0
        assume(V > 1 or ignore_index != 0)
        targets.flat[0] = 1 if ignore_index == 0 else 0
    scale = 1e4 if seed % 3 == 0 else 2.0
    logits = rng.standard_normal((*batch, V)) * scale
    t_targets = torch.from_numpy(targets.reshape(-1))
    assert_parity(torch, lambda z: F.cross_entropy(z, targets, ignore_index=ignore_index),
                  lambda z: torch.nn.functional.cross_entropy(
                      z.reshape(-1, V), t_targets, ignore_index=ignore_index), [logits], seed)


# ---- dropout --------------------------------------------------------------------------------

def test_dropout_is_reproducible_from_a_seeded_generator():
    """Same seed, same mask; another seed, another mask; the global generator follows
    minigpt.manual_seed."""
    x = Tensor(np.ones((8, 16)))
    a = F.dropout(x, 0.5, True, np.random.default_rng(42)).data
    b = F.dropout(x, 0.5, True, np.random.default_rng(42)).data
    c = F.dropout(x, 0.5, True, np.random.default_rng(43)).data
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    minigpt.manual_seed(7)
    d = F.dropout(x, 0.5, True).data
    minigpt.manual_seed(7)
    np.testing.assert_array_equal(F.dropout(x, 0.5, True).data, d)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_is_inverted_and_preserves_the_mean(p):
    """Kept values are scaled by exactly 1/(1-p), a fraction ~p is zeroed, the mean stays ~1."""
    n = 200_000
    y = F.dropout(Tensor(np.ones(n)), p, True, np.random.default_rng(0)).data
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1.0 / (1.0 - p), rtol=1e-15)
    sigma = math.sqrt(p * (1 - p) / n)  # std of the dropped fraction
    assert abs((1 - kept.mean()) - p) < 5 * sigma
    assert abs(y.mean() - 1.0) < 5 * sigma / (1 - p)


def test_dropout_is_identity_in_eval_mode_and_for_p_zero():
    """training=False (and p=0) returns the input itself: no mask, no scaling."""
    x = Tensor(np.random.default_rng(0).standard_normal((3, 4)), requires_grad=True)
    assert F.dropout(x, 0.5, False) is x
    assert F.dropout(x, 0.0, True) is x


def test_dropout_gradient_uses_the_same_mask():
    """dx = g * mask / (1-p): zero exactly where the output was dropped, 1/(1-p) elsewhere."""
    rng = np.random.default_rng(5)
    x = Tensor(rng.uniform(0.5, 1.5, (50, 20)), requires_grad=True)
    y = F.dropout(x, 0.3, True, np.random.default_rng(9))
    y.backward(np.ones(y.shape))
    kept = y.data != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_array_equal(x.grad, kept / 0.7)
    np.testing.assert_allclose(y.data, x.data * x.grad, rtol=1e-15)


def test_attention_dropout_reproducible_and_zero_p_is_plain_attention():
    """attention(dropout_p) is reproducible from a seeded generator, and dropout_p=0 gives
    exactly the attention without dropout."""
    rng = np.random.default_rng(0)
    q, k, v = (Tensor(rng.standard_normal((2, 2, 4, 3))) for _ in range(3))
    a = F.attention(q, k, v, dropout_p=0.5, rng=np.random.default_rng(1)).data
    b = F.attention(q, k, v, dropout_p=0.5, rng=np.random.default_rng(1)).data
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, F.attention(q, k, v).data)
    np.testing.assert_array_equal(F.attention(q, k, v, dropout_p=0.0).data,
                                  F.attention(q, k, v).data)


# ---- bad input ------------------------------------------------------------------------------

def test_shape_mismatches_raise_value_error_naming_both_shapes():
    """Every F op that takes several shapes names them in its ValueError."""
    x = Tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        F.linear(x, Tensor(np.ones((4, 5))))
    with pytest.raises(ValueError, match=r"\(4,\).*\(3, 5\)"):
        F.linear(x, Tensor(np.ones((3, 5))), Tensor(np.ones(4)))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        F.layer_norm(x, Tensor(np.ones(4)), Tensor(np.ones(4)))
    q = Tensor(np.ones((1, 2, 3, 4)))
    with pytest.raises(ValueError, match=r"\(1, 2, 3, 4\).*\(1, 2, 3, 5\)"):
        F.attention(q, Tensor(np.ones((1, 2, 3, 5))), Tensor(np.ones((1, 2, 3, 5))))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(1, 3\)"):
        F.attention(q, q, q, padding_mask=np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"5 > 3"):
        F.attention(Tensor(np.ones((1, 2, 5, 4))), q, q, causal=True)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3,\)"):
        F.cross_entropy(x, np.array([0, 1, 2]))


def test_out_of_range_ids_and_targets_are_named():
    """An embedding id outside [0, V) names the id and V; so does a bad cross-entropy target."""
    W = Tensor(np.ones((5, 2)))
    with pytest.raises(ValueError, match=r"id 7.*\[0, 5\)"):
        F.embedding(np.array([[1, 7, 2]]), W)
    with pytest.raises(ValueError, match=r"id -1.*\[0, 5\)"):
        F.embedding(np.array([-1, 0]), W)
    with pytest.raises(ValueError, match=r"id 5.*\[0, 5\)"):  # V itself is one past the end
        F.embedding(np.array([4, 5]), W)
    with pytest.raises(ValueError, match=r"target 3.*\[0, 3\)"):
        F.cross_entropy(Tensor(np.ones((2, 3))), np.array([0, 3]))


def test_non_integer_ids_and_targets_raise_type_error():
    """Float ids or targets are a TypeError, not a silent cast."""
    with pytest.raises(TypeError, match="float64"):
        F.embedding(np.array([0.0, 1.0]), Tensor(np.ones((3, 2))))
    with pytest.raises(TypeError, match="float64"):
        F.cross_entropy(Tensor(np.ones((2, 3))), np.array([0.0, 1.0]))


def f_ops(dtype):
    """One call of every F op on `dtype` inputs, by name (inputs drawn from a fixed seed)."""
    rng = np.random.default_rng(0)

    def t(*shape):
        return Tensor(rng.standard_normal(shape).astype(dtype), requires_grad=dtype != np.int64)

    x, W, b, g, beta = t(2, 3, 4), t(4, 5), t(5), t(4), t(4)
    q, k, v, z = t(2, 2, 3, 4), t(2, 2, 3, 4), t(2, 2, 3, 4), t(6, 5)
    pad = np.array([[1, 1, 0], [1, 0, 0]])
    return {
        "embedding": ([W], lambda: F.embedding(np.array([[0, 3, 3]]), W)),
        "linear": ([x, W, b], lambda: F.linear(x, W, b)),
        "layer_norm": ([x, g, beta], lambda: F.layer_norm(x, g, beta)),
        "gelu": ([x], lambda: F.gelu(x)),
        "softmax": ([x], lambda: F.softmax(x, axis=1)),
        "log_softmax": ([x], lambda: F.log_softmax(x)),
        "attention": ([q, k, v], lambda: F.attention(q, k, v, padding_mask=pad)),
        "attention_dropout": ([q, k, v], lambda: F.attention(q, k, v, dropout_p=0.2,
                                                             rng=np.random.default_rng(0))),
        "dropout": ([x], lambda: F.dropout(x, 0.3, True, np.random.default_rng(0))),
        "cross_entropy": ([z], lambda: F.cross_entropy(z, np.array([0, 4, -100, 1, 2, 3]))),
    }


@pytest.mark.parametrize("name", list(f_ops(np.float32)))
def test_float32_stays_float32_through_every_f_op(name):
    """Forward output and every input gradient of each F op stay float32 (no float64 scalar
    sneaks in and promotes)."""
    inputs, op = f_ops(np.float32)[name]
    y = op()
    assert y.dtype == np.float32
    y.backward(np.ones(y.shape, dtype=np.float32))
    for i, t in enumerate(inputs):
        assert t.grad is not None and t.grad.dtype == np.float32, f"input {i}"


def test_f_ops_reject_int_and_float16_data():
    """Integer or float16 data where float math is needed raises TypeError naming the dtype."""
    for dtype in (np.int64, np.float16):
        x = Tensor(np.ones((2, 4), dtype=dtype))
        w = Tensor(np.ones(4, dtype=dtype))
        q = Tensor(np.ones((1, 1, 2, 4), dtype=dtype))
        for op in (lambda: F.gelu(x), lambda: F.softmax(x), lambda: F.log_softmax(x),
                   lambda: F.layer_norm(x, w, w), lambda: F.linear(x, Tensor(np.ones((4, 2), dtype=dtype))),
                   lambda: F.attention(q, q, q), lambda: F.cross_entropy(x, np.array([0, 1])),
                   lambda: F.embedding(np.array([0]), x),
                   lambda: F.dropout(x, 0.5, True, np.random.default_rng(0))):
            with pytest.raises(TypeError, match=np.dtype(dtype).name):
                op()


def test_f_ops_reject_mixed_float32_and_float64():
    """A float32 input beside a float64 weight raises TypeError instead of promoting."""
    x32 = Tensor(np.ones((2, 4), dtype=np.float32))
    w64 = Tensor(np.ones((4, 3)))
    with pytest.raises(TypeError, match="float32.*float64"):
        F.linear(x32, w64)
    with pytest.raises(TypeError, match="float32.*float64"):
        F.layer_norm(x32, Tensor(np.ones(4)), Tensor(np.ones(4)))
    q32 = Tensor(np.ones((1, 1, 2, 4), dtype=np.float32))
    with pytest.raises(TypeError, match="float32.*float64"):
        F.attention(q32, q32, Tensor(np.ones((1, 1, 2, 4))))


def test_dropout_probability_out_of_range():
    """p must lie in [0, 1) for F.dropout and attention dropout."""
    x = Tensor(np.ones(3))
    for p in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="dropout probability"):
            F.dropout(x, p, True)
    q = Tensor(np.ones((1, 1, 2, 2)))
    with pytest.raises(ValueError, match="dropout probability"):
        F.attention(q, q, q, dropout_p=1.0)
