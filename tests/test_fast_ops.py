"""The two CPU tiers of every op agree: the reference (minigpt/ops/) and the tuned version
(minigpt/fast/) give the same outputs and gradients (float64 tightly, float32 closely), both
pass float64 gradient checks, a whole model's gradients and an Adam step agree under
use("reference") and use("fast"), dtypes are kept, and the reference files carry solution
markers that pair up."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigpt
import minigpt.functional as F
from minigpt import Tensor, dispatch, gradcheck
from minigpt.optim import Adam

TIERS = ["reference", "fast"]
seeds = st.integers(0, 2**32 - 1)
sizes = st.integers(1, 3)  # 1 always a candidate: T=1, hs=1, one head, one row
TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=2e-4, atol=2e-5)}


def run(mode, fn, arrays, upstream, rng_seed=None):
    """fn's output and the gradients of its inputs under `mode`, as NumPy arrays. The classes
    that built the graph are returned too, to check which tier really ran."""
    tensors = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    with minigpt.use(mode):
        rng = None if rng_seed is None else np.random.default_rng(rng_seed)
        out = fn(*tensors) if rng is None else fn(*tensors, rng=rng)
        out.backward(upstream.astype(out.dtype))
    grads = [t.grad if t.grad is not None else np.zeros_like(t.data) for t in tensors]
    return out.data, grads, type(out.creator)


def assert_tiers_agree(op, fn, arrays, dtype, rng_seed=None, upstream_seed=0):
    """Reference and fast give the same output and input gradients for random upstream grads."""
    arrays = [a.astype(dtype) for a in arrays]
    with minigpt.no_grad():
        tensors = [Tensor(a) for a in arrays]
        rng = () if rng_seed is None else (np.random.default_rng(rng_seed),)
        shape = fn(*tensors, *rng).shape  # the output's shape
    upstream = np.random.default_rng(upstream_seed).standard_normal(shape)
    y_ref, g_ref, cls_ref = run("reference", fn, arrays, upstream, rng_seed)
    y_fast, g_fast, cls_fast = run("fast", fn, arrays, upstream, rng_seed)
    impls = dispatch.registered()[op]
    assert cls_ref is impls["reference"]
    assert cls_fast is impls.get("fast", impls["reference"])
    assert y_ref.dtype == y_fast.dtype == dtype
    np.testing.assert_allclose(y_fast, y_ref, **TOL[dtype])
    for i, (a, b) in enumerate(zip(g_fast, g_ref)):
        assert a.dtype == b.dtype == dtype, f"gradient {i} of {op}"
        np.testing.assert_allclose(a, b, **TOL[dtype], err_msg=f"gradient {i} of {op}")


dtypes = st.sampled_from([np.float64, np.float32])


# ---- reference == fast, op by op ---------------------------------------------------------------

@given(st.integers(1, 5), sizes, sizes, st.integers(1, 4), dtypes, seeds)
def test_embedding_tiers_agree(V, C, B, T, dtype, seed):
    """Ids from a small vocabulary, so repeated ids (and unused rows) are common."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, V, size=(B, T))
    assert_tiers_agree("embedding", lambda W: F.embedding(idx, W),
                       [rng.standard_normal((V, C))], dtype, upstream_seed=seed)


@given(st.lists(sizes, max_size=2), sizes, sizes, st.booleans(), st.booleans(), dtypes, seeds)
def test_linear_tiers_agree(batch, n_in, n_out, with_bias, transposed, dtype, seed):
    """Any number of leading dims; a transposed weight view (the tied output layer) too."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*batch, n_in))
    W = rng.standard_normal((n_out, n_in)).T if transposed else rng.standard_normal((n_in, n_out))
    if with_bias:
        assert_tiers_agree("linear", F.linear, [x, W, rng.standard_normal(n_out)], dtype,
                           upstream_seed=seed)
    else:
        assert_tiers_agree("linear", F.linear, [x, W], dtype, upstream_seed=seed)


def test_linear_tied_weight_gradient_layout_is_a_fast_path_detail():
    """Through W_e^T (a transposed view) both tiers give the same dW_e; the fast one in the
    layout of W_e, so it adds to the embedding's gradient contiguously."""
    rng = np.random.default_rng(0)
    W_e = rng.standard_normal((7, 4))
    h = rng.standard_normal((2, 3, 4))
    g = rng.standard_normal((2, 3, 7))
    grads = {}
    for mode in TIERS:
        W = Tensor(W_e.copy(), requires_grad=True)
        with minigpt.use(mode):
            F.linear(Tensor(h), W.T).backward(g)
        grads[mode] = W.grad
    np.testing.assert_allclose(grads["fast"], grads["reference"], rtol=1e-12)
    assert grads["fast"].flags.c_contiguous


@given(st.lists(sizes, max_size=2), st.integers(1, 5), dtypes, seeds)
def test_layer_norm_tiers_agree(batch, C, dtype, seed):
    rng = np.random.default_rng(seed)
    assert_tiers_agree("layer_norm", F.layer_norm,
                       [rng.standard_normal((*batch, C)) * 3 + 1, rng.standard_normal(C),
                        rng.standard_normal(C)], dtype, upstream_seed=seed)


@given(st.lists(sizes, max_size=3), dtypes, seeds)
def test_gelu_tiers_agree(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    assert_tiers_agree("gelu", F.gelu, [rng.standard_normal(shape) * 3], dtype,
                       upstream_seed=seed)


def test_gelu_tiers_agree_on_blocks_split_over_threads():
    """Large enough for runtime.in_parallel to split the elements over threads."""
    rng = np.random.default_rng(1)
    assert_tiers_agree("gelu", F.gelu, [rng.standard_normal((300, 1000))], np.float64)


@given(sizes, sizes, sizes, sizes, st.integers(1, 4), st.booleans(), st.booleans(), dtypes,
       seeds)
def test_attention_tiers_agree(B, nh, Tq, hs, extra_keys, causal, padded, dtype, seed):
    """T=1, hs=1, cached decoding (Tq < Tk), padding masks with fully padded rows."""
    rng = np.random.default_rng(seed)
    Tk = Tq + extra_keys - 1
    pad = (rng.random((B, Tk)) >= 0.4).astype(np.int64) if padded else None
    if padded:
        pad[0] = 0  # a sequence that is all padding: its rows output zeros

    def fn(q, k, v):
        return F.attention(q, k, v, causal=causal, padding_mask=pad)

    arrays = [rng.standard_normal((B, nh, Tq, hs)), rng.standard_normal((B, nh, Tk, hs)),
              rng.standard_normal((B, nh, Tk, hs))]
    assert_tiers_agree("attention", fn, arrays, dtype, upstream_seed=seed)


@given(sizes, sizes, st.integers(1, 4), sizes, st.sampled_from([0.1, 0.5]), dtypes, seeds)
def test_attention_dropout_tiers_agree_with_the_same_seed(B, nh, T, hs, p, dtype, seed):
    """The same generator seed gives the same dropout mask in both tiers."""
    rng = np.random.default_rng(seed)

    def fn(q, k, v, rng):
        return F.attention(q, k, v, causal=True, dropout_p=p, rng=rng)

    arrays = [rng.standard_normal((B, nh, T, hs)) for _ in range(3)]
    assert_tiers_agree("attention", fn, arrays, dtype, rng_seed=seed, upstream_seed=seed)


def test_fully_masked_attention_rows_are_zero_in_both_tiers():
    rng = np.random.default_rng(0)
    q, k, v = (Tensor(rng.standard_normal((2, 2, 3, 4))) for _ in range(3))
    pad = np.array([[0, 0, 0], [1, 1, 0]])
    for mode in TIERS:
        with minigpt.use(mode):
            out = F.attention(q, k, v, causal=False, padding_mask=pad).data
        np.testing.assert_array_equal(out[0], 0.0)
        assert np.all(np.isfinite(out))


@given(st.integers(1, 6), st.integers(1, 5), st.floats(0.0, 1.0), dtypes, seeds)
def test_cross_entropy_tiers_agree(N, V, p_ignore, dtype, seed):
    """Ignored targets (sometimes every one of them: loss 0, gradient 0)."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, V, size=N)
    targets[rng.random(N) < p_ignore] = -100
    assert_tiers_agree("cross_entropy", lambda z: F.cross_entropy(z, targets),
                       [rng.standard_normal((N, V)) * 3], dtype, upstream_seed=seed)


@given(st.lists(sizes, min_size=1, max_size=3), dtypes, seeds)
def test_softmax_log_softmax_and_dropout_tiers_agree(shape, dtype, seed):
    """No fast version: both modes run the reference (and say so)."""
    rng = np.random.default_rng(seed)
    x = [rng.standard_normal(shape)]
    assert_tiers_agree("softmax", F.softmax, x, dtype, upstream_seed=seed)
    assert_tiers_agree("log_softmax", F.log_softmax, x, dtype, upstream_seed=seed)
    assert_tiers_agree("dropout", lambda x, rng: F.dropout(x, 0.3, True, rng=rng), x, dtype,
                       rng_seed=seed, upstream_seed=seed)


# ---- float64 gradient checks of both tiers -------------------------------------------------------

@pytest.mark.parametrize("mode", TIERS)
@given(sizes, sizes, sizes, sizes, st.integers(1, 3), st.booleans(), seeds)
def test_gradcheck_every_op_in_both_tiers(mode, B, nh, Tq, hs, extra_keys, padded, seed):
    """minigpt.gradcheck (random non-uniform upstream gradient) on every op, in each tier."""
    rng = np.random.default_rng(seed)
    t = lambda *shape: Tensor(rng.standard_normal(shape), requires_grad=True)  # noqa: E731
    C, V, N = nh * hs, 4, B * Tq
    Tk = Tq + extra_keys - 1
    pad = (rng.random((B, Tk)) >= 0.4).astype(np.int64) if padded else None
    idx = rng.integers(0, V, size=(B, Tq))
    targets = rng.integers(0, V, size=N)
    targets[rng.random(N) < 0.3] = -100
    with minigpt.use(mode):
        assert gradcheck(lambda W: F.embedding(idx, W), [t(V, C)])
        assert gradcheck(F.linear, [t(B, Tq, C), t(C, 3), t(3)])
        assert gradcheck(F.layer_norm, [t(B, Tq, C), t(C), t(C)])
        assert gradcheck(F.gelu, [t(B, Tq, C)])
        assert gradcheck(F.softmax, [t(B, Tq, C)])
        assert gradcheck(F.log_softmax, [t(B, Tq, C)])
        assert gradcheck(lambda q, k, v: F.attention(q, k, v, causal=True, padding_mask=pad),
                         [t(B, nh, Tq, hs), t(B, nh, Tk, hs), t(B, nh, Tk, hs)])
        assert gradcheck(lambda z: F.cross_entropy(z, targets), [t(N, V)])


@pytest.mark.parametrize("mode", TIERS)
def test_gradcheck_attention_dropout_in_both_tiers(mode):
    """With a fixed generator per call the dropout mask is a constant: gradcheck applies."""
    rng = np.random.default_rng(3)
    q, k, v = (Tensor(rng.standard_normal((2, 2, 3, 2)), requires_grad=True) for _ in range(3))
    fn = lambda q, k, v: F.attention(q, k, v, dropout_p=0.3,  # noqa: E731
                                     rng=np.random.default_rng(7))
    with minigpt.use(mode):
        assert gradcheck(fn, [q, k, v])


# ---- dtype discipline of the reference ----------------------------------------------------------

def test_reference_ops_keep_float32():
    """Every reference forward and backward stays float32 (no float64 scalar promotes it)."""
    rng = np.random.default_rng(0)
    f32 = lambda *shape: Tensor(rng.standard_normal(shape).astype(np.float32),  # noqa: E731
                                requires_grad=True)
    x, W, b, q, k, v, z = f32(2, 3, 4), f32(4, 4), f32(4), *(f32(1, 2, 3, 2) for _ in range(3)), f32(6, 5)
    with minigpt.use("reference"):
        outs = [F.embedding(np.array([[0, 1]]), W), F.linear(x, W, b), F.layer_norm(x, b, b),
                F.gelu(x), F.softmax(x), F.log_softmax(x), F.dropout(x, 0.5, True),
                F.attention(q, k, v, dropout_p=0.2), F.cross_entropy(z, np.arange(6) % 5)]
        for y in outs:
            assert y.dtype == np.float32, type(y.creator).__name__
            y.backward(np.ones(y.shape, np.float32))
    for t in (x, W, b, q, k, v, z):
        assert t.grad.dtype == np.float32


# ---- the whole model, and Adam --------------------------------------------------------------------

def tiny_gpt_gradients(mode, dropout: bool):
    cfg = minigpt.GPTConfig(vocab_size=11, n_ctx=8, n_layer=2, n_embd=8, n_head=2,
                            dtype="float64", embd_pdrop=0.1 * dropout, attn_pdrop=0.1 * dropout,
                            resid_pdrop=0.1 * dropout)
    model = minigpt.GPT(cfg, seed=1)
    rng = np.random.default_rng(2)
    idx = rng.integers(0, 11, size=(3, 6))
    targets = rng.integers(0, 11, size=(3, 6))
    targets[0, :2] = -100
    pad = np.ones((3, 6), dtype=np.int64)
    pad[2, 4:] = 0
    minigpt.manual_seed(5)  # the same dropout draws in both runs
    with minigpt.use(mode):
        loss = model.loss(idx, targets, padding_mask=pad)
        loss.backward()
    return float(loss.data), {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("dropout", [False, True])
def test_whole_model_gradients_agree_between_the_tiers(dropout):
    loss_ref, g_ref = tiny_gpt_gradients("reference", dropout)
    loss_fast, g_fast = tiny_gpt_gradients("fast", dropout)
    assert loss_fast == pytest.approx(loss_ref, rel=1e-12)
    assert g_ref.keys() == g_fast.keys()
    for name in g_ref:
        np.testing.assert_allclose(g_fast[name], g_ref[name], rtol=1e-9, atol=1e-12,
                                   err_msg=name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adam_step_agrees_between_the_tiers(dtype):
    """Three steps with clipping and weight decay; big enough for chunks on several threads."""
    rng = np.random.default_rng(0)
    shapes = [(300, 700), (700,), (5, 3)]
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) * 3 for s in shapes] for _ in range(3)]
    results = {}
    for mode in TIERS:
        params = [Tensor(a.copy(), requires_grad=True) for a in init]
        opt = Adam(params, lr=1e-2, weight_decay=0.1, max_grad_norm=1.0)
        with minigpt.use(mode):
            for step in grads:
                for p, g in zip(params, step):
                    p.grad = g.copy()
                opt.step()
        results[mode] = ([p.data for p in params], [p.grad for p in params], opt.last_grad_norm)
    tol = TOL[dtype]
    for a, b in zip(results["fast"][0] + results["fast"][1],
                    results["reference"][0] + results["reference"][1]):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, **tol)
    assert results["fast"][2] == pytest.approx(results["reference"][2], rel=1e-5)


# ---- the solution markers of the reference files -------------------------------------------------

REFERENCE_FILES = sorted((Path(minigpt.__file__).parent / "ops").glob("*.py")) + \
    [Path(minigpt.__file__).parent / "optim.py"]


@pytest.mark.parametrize("path", REFERENCE_FILES, ids=lambda p: p.name)
def test_reference_files_have_solution_markers_that_pair_up(path):
    """### BEGIN SOLUTION / ### END SOLUTION on their own lines, same indentation, in order,
    never nested; one pair around each reference forward and backward body."""
    lines = path.read_text().splitlines()
    open_at = None
    pairs = 0
    for n, line in enumerate(lines, 1):
        marker = re.fullmatch(r"(\s*)### (BEGIN|END) SOLUTION", line)
        if "SOLUTION" in line and not marker:
            pytest.fail(f"{path.name}:{n}: a marker must be alone on its line: {line!r}")
        if not marker:
            continue
        indent, kind = marker.groups()
        if kind == "BEGIN":
            assert open_at is None, f"{path.name}:{n}: BEGIN inside the block opened at {open_at}"
            open_at, open_indent = n, indent
            next_code = lines[n].lstrip() if n < len(lines) else ""
            assert next_code and len(lines[n]) - len(next_code) == len(indent), \
                f"{path.name}:{n}: BEGIN's indentation differs from the code after it"
        else:
            assert open_at is not None, f"{path.name}:{n}: END without BEGIN"
            assert indent == open_indent, f"{path.name}:{n}: END indented unlike its BEGIN"
            open_at = None
            pairs += 1
    assert open_at is None, f"{path.name}: BEGIN at line {open_at} is never closed"
    if path.name == "__init__.py":
        assert pairs == 0
    elif path.name == "optim.py":  # the reference Adam update, at least
        adam = re.search(r"^def adam_update\(.*?(?=^def )", path.read_text(), re.M | re.S)
        assert adam and "### BEGIN SOLUTION" in adam.group() and "### END SOLUTION" in adam.group()
    else:
        # a forward and a backward in each Function (an op composed of other ops has none)
        n_functions = len(re.findall(r"^class \w+\(Function\):", path.read_text(), re.M))
        assert pairs == 2 * n_functions


# ---- the reference on CuPy arrays (GPU machines only) -------------------------------------------

def _cupy():
    from minigpt.backend import BackendError, cupy_module
    try:
        return cupy_module()
    except BackendError:
        return None


@pytest.mark.skipif(_cupy() is None, reason="needs CuPy and an NVIDIA GPU")
def test_reference_ops_on_cupy_equal_the_numpy_reference():
    """The reference is plain `xp` code: on CuPy arrays (float64, mode "reference") every op's
    output and gradients equal the NumPy run."""
    cp = _cupy()
    rng = np.random.default_rng(0)
    idx, pad = rng.integers(0, 5, size=(2, 3)), np.array([[1, 1, 0], [0, 0, 0]])
    targets = np.array([1, -100, 4, 0, 2, -100])
    cases = {
        "embedding": (lambda W: F.embedding(idx, W), [(5, 4)]),
        "linear": (F.linear, [(2, 3, 4), (4, 6), (6,)]),
        "layer_norm": (F.layer_norm, [(2, 3, 4), (4,), (4,)]),
        "gelu": (F.gelu, [(2, 3, 4)]),
        "softmax": (F.softmax, [(2, 3, 4)]),
        "log_softmax": (F.log_softmax, [(2, 3, 4)]),
        "attention": (lambda q, k, v: F.attention(q, k, v, padding_mask=pad),
                      [(2, 2, 3, 4)] * 3),
        "cross_entropy": (lambda z: F.cross_entropy(z, targets), [(6, 5)]),
    }
    for op, (fn, shapes) in cases.items():
        arrays = [rng.standard_normal(s) for s in shapes]
        results = []
        for xp in (np, cp):
            ts = [Tensor(xp.asarray(a), requires_grad=True) for a in arrays]
            with minigpt.use("reference"):
                y = fn(*ts)
                y.backward(xp.asarray(np.random.default_rng(1).standard_normal(y.shape)))
            assert type(y.creator) is dispatch.registered()[op]["reference"]
            results.append([minigpt.backend.to_numpy(a) for a in [y.data] + [t.grad for t in ts]])
        for a, b in zip(*results):
            np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12, err_msg=op)



@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("shape, n_split", [((2, 300, 64, 128), 4),  # (B, T, in, out): y twice
                                            ((2, 1200, 48, 20), 4),  # narrow: dW has < 64 rows
                                            ((1, 3, 256, 6000), 0)])  # 3 tokens: all whole
def test_linear_tiers_agree_on_blocks_split_over_threads(shape, n_split, transposed, monkeypatch):
    """Large enough for the products (y, dx, dW) to be split over two threads in blocks of
    rows; with only a few tokens (one sampled token's step) every product is one BLAS call.
    The rule counts tokens: a narrow layer's dW = x^T g has few rows (n_in, or n_out for the
    tied layout) over many tokens, and must be split too (issue 26's cliff: one
    OpenBLAS-threaded call there was 20x slower)."""
    from minigpt.fast import runtime
    split = []  # per in_parallel call: how many blocks it ran
    in_parallel = runtime.in_parallel

    def counting(fn, n, unit=1):
        blocks = []
        in_parallel(lambda s: (blocks.append(s), fn(s)), n, unit)
        split.append(len(blocks))

    monkeypatch.setattr(runtime, "in_parallel", counting)
    monkeypatch.setenv("MINIGPT_NUM_THREADS", "2")
    rng = np.random.default_rng(2)
    B, T, n_in, n_out = shape
    x = rng.standard_normal((B, T, n_in))
    W = rng.standard_normal((n_out, n_in)).T if transposed else rng.standard_normal((n_in, n_out))
    for dtype in (np.float64, np.float32):
        assert_tiers_agree("linear", F.linear, [x, W, rng.standard_normal(n_out)], dtype)
    # per dtype: y (once for its shape, once in the run), dx and dW; the reference splits none
    assert sum(k == 2 for k in split) == 2 * n_split, split


@pytest.mark.parametrize("B, nh, padded, dropout", [(4, 1, True, False), (1, 4, False, True),
                                                    (3, 2, True, True)])
def test_attention_tiers_agree_on_blocks_split_over_threads(B, nh, padded, dropout, monkeypatch):
    """Large enough for the blocks to be split over two threads: along the batch when it has
    more entries than the heads (a one-head model must not run on one core), else along the
    heads; with a padding mask (B, 1, Tq, Tk) and attention dropout too."""
    from minigpt.fast import runtime
    split = []
    in_parallel = runtime.in_parallel

    def counting(fn, n, unit=1):
        blocks = []
        in_parallel(lambda s: (blocks.append(s), fn(s)), n, unit)
        split.append((n, len(blocks)))

    monkeypatch.setattr(runtime, "in_parallel", counting)
    monkeypatch.setenv("MINIGPT_NUM_THREADS", "2")
    rng = np.random.default_rng(3)
    T, hs = 300, 8
    pad = (rng.random((B, T)) >= 0.3).astype(np.int64) if padded else None
    p = 0.2 if dropout else 0.0

    def fn(q, k, v, rng=None):
        return F.attention(q, k, v, causal=True, padding_mask=pad, dropout_p=p, rng=rng)

    arrays = [rng.standard_normal((B, nh, T, hs)) for _ in range(3)]
    assert_tiers_agree("attention", fn, arrays, np.float64, rng_seed=5 if dropout else None)
    assert split and all(k == 2 and n == max(B, nh) for n, k in split), split


# ---- the engine's slice gradients (autograd bookkeeping, issue 26) -----------------------------

class _Silent:
    """An observer that looks at nothing: its presence sends every op down the plain path."""

    def forward(self, fn, inputs, output):
        pass

    def backward(self, fn, grad_output, grads):
        pass


@given(st.integers(2, 6), st.integers(1, 4), st.lists(st.tuples(st.integers(0, 5), st.integers(0, 6)),
                                                       min_size=1, max_size=4),
       st.booleans(), st.booleans(), seeds)
def test_slice_gradients_added_in_place_equal_getitem_backward(n, m, slices, also_whole, retain,
                                                               seed):
    """The engine adds a basic-index GetItem's gradient straight into its input's sum (the
    q/k/v split of the packed qkv); overlapping slices, an int index, the input used whole
    too, retain_graph: the gradients equal GetItem.backward's zero-padded arrays summed (the
    path taken when an observer watches), bit for bit."""
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((n, m))
    w = [rng.standard_normal((n, m)) for _ in range(len(slices) + 2)]

    def grads(observers):
        x = Tensor(x0.copy(), requires_grad=True)
        with minigpt.using(observers=observers):
            h = x * Tensor(w[0])
            total = (h[1] * Tensor(w[1][0])).sum()  # an int index
            for i, (a, b) in enumerate(slices):
                lo, hi = min(a, b) % n, max(a, b) % n + 1
                total = total + (h[lo:hi] * Tensor(w[i + 2][lo:hi])).sum()
            if also_whole:
                total = total + h.sum()
            total.backward(retain_graph=retain)
        return x.grad

    np.testing.assert_array_equal(grads([]), grads([_Silent()]))
