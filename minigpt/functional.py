"""GPT-1's layer ops, each one `Function` with a hand-derived backward.  `import minigpt.functional as F`.

Conventions: B batch, T time (sequence), C channels (n_embd), V vocabulary, nh heads,
hs head size. Every op keeps its input dtype (float32 stays float32: scalars are Python
floats or cast to the array's dtype, never NumPy float64 scalars, which NumPy 2 would promote).
"""
from __future__ import annotations

import contextlib
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import dispatch
from . import kernels as _kernels
from .autograd import Function, Tensor, check_float
from .backend import get_array_module
from .fused import FusedAttention, FusedSoftmax

__all__ = ["embedding", "linear", "layer_norm", "gelu", "softmax", "log_softmax", "attention",
           "dropout", "cross_entropy", "attention_mask"]


def _data(x):
    return x.data if isinstance(x, Tensor) else x


def _num_threads() -> int:
    """Cores for elementwise work: MINIGPT_NUM_THREADS, else what BLAS is told, else all."""
    for var in ("MINIGPT_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").isdigit() and int(os.environ[var]) > 0:
            return int(os.environ[var])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_POOL: ThreadPoolExecutor | None = None
_PARALLEL_MIN = 1 << 17  # elements; below this, thread hand-offs cost more than they save


def _in_parallel(fn, n: int, unit: int = 1) -> None:
    """Call fn(slice) over blocks covering range(n), one block per core, concurrently.
    unit: elements per index (a row's length), to judge whether n is worth splitting.

    BLAS already spreads a matmul over the cores; NumPy's elementwise ops run on one. But NumPy
    releases the GIL inside its elementwise loops, so threads that each run the same in-place
    formula on their own block of the arrays do run in parallel. Small n runs inline.
    """
    global _POOL
    k = min(_num_threads(), n * unit // _PARALLEL_MIN, n)
    if k <= 1:
        fn(slice(0, n))
        return
    if _POOL is None or _POOL._max_workers < k - 1:
        _POOL = ThreadPoolExecutor(max_workers=k - 1, thread_name_prefix="minigpt")
    bounds = [n * i // k for i in range(k + 1)]
    futures = [_POOL.submit(fn, slice(bounds[i], bounds[i + 1])) for i in range(1, k)]
    fn(slice(bounds[0], bounds[1]))  # the first block on this thread
    for f in futures:
        f.result()


def _openblas_threads_api():
    """(get, set) of the thread count of NumPy's bundled OpenBLAS, through ctypes; None when
    NumPy uses another BLAS (nothing is changed then)."""
    import ctypes
    import glob
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs",
                                  "*openblas*"))
    for path in libs:
        for prefix, suffix in (("scipy_openblas_", "64_"), ("scipy_openblas_", ""), ("openblas_", "")):
            try:
                lib = ctypes.CDLL(path)
                get = getattr(lib, f"{prefix}get_num_threads{suffix}")
                set_ = getattr(lib, f"{prefix}set_num_threads{suffix}")
                return get, set_
            except (OSError, AttributeError):
                continue
    return None


_OPENBLAS = _openblas_threads_api()


@contextlib.contextmanager
def _blas_single_thread():
    """Inside: NumPy's OpenBLAS runs every call on the calling thread alone.

    For the small BLAS calls (matrix-vector products, attention's per-head matmuls): OpenBLAS
    splits *each* call over its threads, waking and joining them every time, and on a busy
    machine every wake-up waits for a free core. Measured here under load: two (2048, 384)
    matvecs 10-25 ms on average with 2 threads against 0.36 ms with one; 96 attention
    products (128, 64) @ (64, 128) 200 ms against 11 ms. Large matmuls keep all threads.
    """
    if _OPENBLAS is None:
        yield
        return
    get, set_ = _OPENBLAS
    before = get()
    set_(1)
    try:
        yield
    finally:
        set_(before)


def _in_parallel_blas(fn, n: int, unit: int = 1) -> None:
    """_in_parallel for blocks that call BLAS: our threads split the work, and each block's
    BLAS calls run single-threaded, so the threads synchronise once per op instead of once
    per small matmul (what PyTorch's bmm does)."""
    with _blas_single_thread():
        _in_parallel(fn, n, unit)


def _run_blocks(xp, fn, n: int, unit: int = 1) -> None:
    """_in_parallel on the CPU; one call over everything for CuPy (already parallel)."""
    if xp is np:
        _in_parallel(fn, n, unit)
    else:
        fn(slice(0, n))


def _run_blocks_blas(xp, fn, n: int, unit: int = 1) -> None:
    """_in_parallel_blas on the CPU; one call over everything for CuPy."""
    if xp is np:
        _in_parallel_blas(fn, n, unit)
    else:
        fn(slice(0, n))


def _sum_rows(x2d):
    """Column sums of a (N, C) array as a matmul with a ones vector (several times faster
    than x.sum(0) in NumPy, since it runs on BLAS)."""
    xp = get_array_module(x2d)
    with _blas_single_thread():
        return xp.ones(x2d.shape[0], dtype=x2d.dtype) @ x2d  # (N,) @ (N, C) -> (C,)


# ---- embedding ---------------------------------------------------------------------------

class Embedding(Function):
    """y[b, t] = W[idx[b, t]].   idx int (B, T), W (V, C) -> y (B, T, C).

    dW[v] = sum of g[b, t] over every (b, t) with idx[b, t] == v  (scatter-add: a repeated id
    collects all of its gradients).  No gradient for idx.
    """

    def forward(self, weight, idx=None):
        self.idx, self.weight_shape = idx, weight.shape
        return weight[idx]  # (B, T, C)

    def backward(self, g):
        xp = get_array_module(g)
        dW = xp.zeros(self.weight_shape, dtype=g.dtype)  # (V, C)
        scatter_add_rows(dW, self.idx.reshape(-1), g.reshape(-1, self.weight_shape[1]))
        return (dW,)


def scatter_add_rows(out, ids, rows):
    """out[ids[n]] += rows[n] for every n, repeated ids summed.   out (V, C), ids (N,), rows (N, C).

    NumPy's `np.add.at` does exactly this but element by element (slow); sorting the ids and
    summing each run of equal ids with `np.add.reduceat` does the same in a few vector passes.
    """
    xp = get_array_module(out)
    if xp is not np:
        xp.add.at(out, ids, rows)
        return
    if ids.size == 0:  # an empty batch: nothing to add (reduceat needs at least one run)
        return
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])  # first of each run
    out[sorted_ids[starts]] += np.add.reduceat(rows[order], starts, axis=0)


def embedding(idx, weight: Tensor) -> Tensor:
    """Look up rows of `weight` (V, C) for integer ids `idx` (any shape) -> idx.shape + (C,)."""
    xp = get_array_module(_data(weight))
    idx = xp.asarray(_data(idx))  # ids live where the weight lives
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding ids must be integers, got dtype {idx.dtype}")
    V = weight.shape[0]
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= V:
            bad = lo if lo < 0 else hi
            raise ValueError(f"embedding id {bad} is outside the vocabulary [0, {V})")
    return dispatch.apply("embedding", weight, idx=idx)


# ---- linear ----------------------------------------------------------------------------------

class Linear(Function):
    """y = x @ W + b.   x (..., in), W (in, out) as GPT-1/HF Conv1D store it, b (out,).

    dx = g @ W^T,  dW = x^T @ g (over all rows),  db = sum of g over all rows.
    """

    def forward(self, x, weight, bias=None):
        if x.shape[-1] != weight.shape[0]:
            raise ValueError(f"linear: input shape {x.shape} does not match weight shape "
                             f"{weight.shape} (weight is (in, out))")
        self.save(x, weight)
        # one 2-D matmul over all rows: (..., in) @ (in, out) would run one small GEMM per batch
        y = x.reshape(-1, x.shape[-1]) @ weight  # (N, in) @ (in, out) -> (N, out)
        if bias is not None:  # y += bias, rows split over the cores
            xp = get_array_module(y)
            _run_blocks(xp, lambda i: xp.add(y[i], bias, out=y[i]), *y.shape)
        return y.reshape(*x.shape[:-1], weight.shape[1])  # (..., out)

    def backward(self, g):
        x, weight = self.saved
        g2 = g.reshape(-1, g.shape[-1])  # (N, out)
        dx = (g2 @ weight.T).reshape(x.shape) if self.needs_input_grad[0] else None  # (N, in) -> (..., in)
        dW = None
        if self.needs_input_grad[1]:
            x2 = x.reshape(-1, x.shape[-1])  # (N, in)
            if weight.flags.f_contiguous and not weight.flags.c_contiguous:
                # weight is a transposed view (the tied output layer's W_e^T): compute dW in
                # the layout of the array behind it, so that it meets the embedding's own
                # gradient in a contiguous sum (a transposing sum of GPT-1's (V, C) took
                # 270 ms against 22 ms)
                dW = (g2.T @ x2).T  # (out, N) @ (N, in) -> (out, in), seen as (in, out)
            else:
                dW = x2.T @ g2  # (in, N) @ (N, out)
        if len(self.needs_input_grad) == 3:
            return dx, dW, _sum_rows(g2)
        return dx, dW


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    if bias is not None and bias.shape != (weight.shape[1],):
        raise ValueError(f"linear: bias shape {bias.shape} does not match weight shape {weight.shape}")
    if bias is None:
        return dispatch.apply("linear", x, weight)
    return dispatch.apply("linear", x, weight, bias)


# ---- layer norm ------------------------------------------------------------------------------

class LayerNorm(Function):
    """y = (x - mean) * rstd * w + b over the last axis, rstd = 1/sqrt(var + eps), biased var.

    With xhat = (x - mean) * rstd and gh = g * w:
      dx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat)),
      dw = sum over rows of g * xhat,   db = sum over rows of g.
    Shapes: x (..., C), w (C,), b (C,); rows N = x.size / C.
    Speed: the row means are matrix-vector products with a (C,) vector of 1/C (BLAS instead of
    NumPy's reduction loop), mean(gh) = g @ (w/C) and mean(gh * xhat) = (g * xhat) @ (w/C)
    reuse the product g * xhat that dw needs, the formulas run in place, and blocks of rows
    run on all cores (dw and db: one partial sum per block).
    """

    def forward(self, x, weight, bias, eps=1e-5):
        xp = get_array_module(x)
        C = x.shape[-1]
        if weight.shape != (C,) or bias.shape != (C,):
            raise ValueError(f"layer_norm: input shape {x.shape} does not match weight "
                             f"{weight.shape} / bias {bias.shape}")
        dt = x.dtype.type
        x2 = x.reshape(-1, C)                                # (N, C)
        N = x2.shape[0]
        inv_c = xp.full(C, 1.0 / C, dtype=x.dtype)           # (C,) of 1/C: a mean as a matvec
        xhat, y = xp.empty_like(x2), xp.empty_like(x2)
        rstd = xp.empty(N, dtype=x.dtype)

        def rows(i):  # every row is normalised on its own: blocks of rows i in parallel
            xh, yi = xhat[i], y[i]
            xp.subtract(x2[i], (x2[i] @ inv_c)[:, None], out=xh)  # x - mean
            xp.multiply(xh, xh, out=yi)                      # (x - mean)^2, in y's buffer
            var = yi @ inv_c                                 # biased variance, as GPT-1
            var += dt(eps)
            xp.divide(dt(1.0), xp.sqrt(var, out=var), out=rstd[i])  # 1/sqrt(var + eps)
            xh *= rstd[i, None]                              # xhat
            xp.multiply(xh, weight, out=yi)
            yi += bias                                       # y = xhat w + b

        _run_blocks_blas(xp, rows, N, C)
        self.save(xhat, rstd, weight)
        return y.reshape(x.shape)

    def backward(self, g):
        xp = get_array_module(g)
        xhat, rstd, weight = self.saved
        N, C = xhat.shape
        g2 = g.reshape(-1, C)                                # (N, C)
        w_c = weight / weight.dtype.type(C)                  # (C,) of w/C
        dx, gx = xp.empty_like(xhat), xp.empty_like(xhat)
        partial = {}                                         # first row -> (dw, db) of its block

        def rows(i):
            gi, xh, gxi, dxi = g2[i], xhat[i], gx[i], dx[i]
            xp.multiply(gi, xh, out=gxi)                     # g * xhat
            partial[i.start] = (_sum_rows(gxi), _sum_rows(gi))  # this block's dw, db
            mean_ghx = gxi @ w_c                             # mean(g w xhat) per row
            mean_gh = gi @ w_c                               # mean(g w) per row
            xp.multiply(gi, weight, out=dxi)                 # g w
            dxi -= mean_gh[:, None]
            dxi -= xp.multiply(xh, mean_ghx[:, None], out=gxi)  # reuse g*xhat's rows
            dxi *= rstd[i, None]                             # rstd (gh - mean(gh) - xhat mean(gh xhat))

        _run_blocks_blas(xp, rows, N, C)
        blocks = [partial[start] for start in sorted(partial)]  # a fixed order: deterministic
        dw = sum(b[0] for b in blocks)                       # (C,)
        db = sum(b[1] for b in blocks)
        return dx.reshape(g.shape), dw, db


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    return dispatch.apply("layer_norm", x, weight, bias, eps=eps)


# ---- GELU ------------------------------------------------------------------------------------

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


class GELU(Function):
    """y = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)   (GPT-1's tanh form).

    dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3*0.044715 x^2),   t = tanh(u),
    so backward needs only x and the saved t (no second tanh).
    Speed: x^3 is written x*x*x (`x**3` on float32 goes through powf, many times slower),
    each formula runs in place in one or two buffers (a fresh (N, 4C) temporary per
    sub-expression would cost a memory pass and page faults each), and on blocks of the
    elements, one block per core (`_in_parallel`).
    """

    def forward(self, x):
        xp = get_array_module(x)
        dt = x.dtype.type
        t, y = xp.empty_like(x), xp.empty_like(x)  # t ends as tanh(u); y is the output
        xf, tf, yf = x.reshape(-1), t.reshape(-1), y.reshape(-1)  # flat views (x: or a copy)

        def block(i):  # the formula on the elements i of the flat arrays
            xi, ti, yi = xf[i], tf[i], yf[i]
            xp.multiply(xi, xi, out=ti)     # x^2
            ti *= xi                        # x^3
            ti *= dt(0.044715)
            ti += xi                        # x + 0.044715 x^3
            ti *= dt(_SQRT_2_OVER_PI)       # u
            xp.tanh(ti, out=ti)             # t = tanh(u)
            xp.add(ti, dt(1.0), out=yi)     # 1 + t
            yi *= xi
            yi *= dt(0.5)                   # 0.5 x (1 + t)

        _run_blocks(xp, block, x.size)
        self.save(x, t)
        return y

    def backward(self, g):
        xp = get_array_module(g)
        x, t = self.saved
        dt = x.dtype.type
        d = xp.empty_like(t)
        s = xp.empty_like(t)
        xf, tf, gf, df, sf = x.reshape(-1), t.reshape(-1), g.reshape(-1), d.reshape(-1), s.reshape(-1)

        def block(i):
            xi, ti, di, si = xf[i], tf[i], df[i], sf[i]
            xp.multiply(xi, xi, out=di)     # x^2
            di *= dt(3 * 0.044715 * _SQRT_2_OVER_PI)
            di += dt(_SQRT_2_OVER_PI)       # du/dx = sqrt(2/pi) (1 + 3*0.044715 x^2)
            xp.multiply(ti, ti, out=si)
            si -= dt(1.0)                   # t^2 - 1 = -(1 - t^2)
            di *= si
            di *= xi                        # -x (1 - t^2) du/dx
            di -= ti
            di -= dt(1.0)                   # -(1 + t + x (1 - t^2) du/dx)
            di *= gf[i]
            di *= dt(-0.5)                  # g * dy/dx

        _run_blocks(xp, block, t.size)
        return (d,)


def gelu(x: Tensor) -> Tensor:
    return dispatch.apply("gelu", x)


# ---- softmax ---------------------------------------------------------------------------------

class Softmax(Function):
    """y = exp(x - max) / sum(exp(x - max)) along `axis`.   dx = y * (g - sum(g * y)).

    Subtracting the row max changes nothing mathematically and keeps exp() from overflowing.
    """

    def forward(self, x, axis=-1):
        xp = get_array_module(x)
        e = xp.exp(x - x.max(axis=axis, keepdims=True))
        y = e / e.sum(axis=axis, keepdims=True)
        self.axis = axis
        self.save(y)
        return y

    def backward(self, g):
        (y,) = self.saved
        return (y * (g - (g * y).sum(axis=self.axis, keepdims=True)),)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    return dispatch.apply("softmax", x, axis=axis)


def _log_softmax(x, axis):
    """x - logsumexp(x), computed as (x - max) - log(sum(exp(x - max))).

    Both terms stay small, so nothing is lost to rounding when the max is large: the textbook
    x - (max + log(sum)) loses ~1e-3 in float32 on logits of 1e4 (a float32 near 1e4 is only
    resolved to ~1e-3).
    """
    xp = get_array_module(x)
    shifted = x - x.max(axis=axis, keepdims=True)  # <= 0, the max entry exactly 0
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


class LogSoftmax(Function):
    """y = x - logsumexp(x) along `axis`.   dx = g - softmax(x) * sum(g),  softmax = exp(y)."""

    def forward(self, x, axis=-1):
        y = _log_softmax(x, axis)
        self.axis = axis
        self.save(y)
        return y

    def backward(self, g):
        xp = get_array_module(g)
        (y,) = self.saved
        return (g - xp.exp(y) * g.sum(axis=self.axis, keepdims=True),)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    return dispatch.apply("log_softmax", x, axis=axis)


# ---- attention -------------------------------------------------------------------------------

def attention_mask(Tq: int, Tk: int, causal: bool, padding_mask=None, xp=np):
    """Boolean mask of the keys each query may see: (Tq, Tk) or (B, 1, Tq, Tk); True = visible.

    Causal: query i sits at absolute position i + (Tk - Tq) (so cached decoding, Tq < Tk, works)
    and sees keys j <= that position. padding_mask (B, Tk): 1/True = real token, 0 = padding,
    never attended to.
    """
    mask = None
    if causal:
        offset = Tk - Tq
        mask = xp.arange(Tk)[None, :] <= (xp.arange(Tq)[:, None] + offset)  # (Tq, Tk)
    if padding_mask is not None:
        keys = padding_mask.astype(bool)[:, None, None, :]  # (B, 1, 1, Tk)
        mask = keys if mask is None else (mask[None, None] & keys)  # (B, 1, Tq, Tk)
    return mask


class Attention(Function):
    """Masked scaled dot-product attention, one op with a hand-derived backward.

      S = (q * scale) @ k^T     (B, nh, Tq, hs) @ (B, nh, hs, Tk) -> (B, nh, Tq, Tk)
      P = softmax(S) over keys, masked keys get probability 0
      O = P @ v                 (B, nh, Tq, Tk) @ (B, nh, Tk, hs) -> (B, nh, Tq, hs)

    Backward, with g = dO:
      dv = P^T @ g,   dP = g @ v^T,   dS = P * (dP - rowsum(dP * P)),
      dq = scale * dS @ k,   dk = scale * dS^T @ q.
    rowsum(dP * P) equals rowsum(g * O) (sum_j P_ij g_i.v_j = g_i.O_i), a (Tq, hs) product
    instead of a (Tq, Tk) one, as FlashAttention computes it.
    A query row that sees no key at all (every key padded) outputs zeros.

    Attention dropout (GPT-1's attn_pdrop) multiplies P by a mask D (0 or 1/(1-p)) before
    the product with v:  O = (P * D) @ v,  so  dv = (P * D)^T @ g  and  dP = (g @ v^T) * D
    (the rowsum identity still holds: sum_j P_ij D_ij g_i.v_j = g_i.O_i).

    Speed: the scale is folded into q (smaller than S), the mask is added (0 or -inf) instead
    of selected with `where`, softmax runs in place in S's buffer, its row sums are
    matrix-vector products with ones (BLAS), and O is written straight into a (B, Tq, nh, hs)
    buffer, so the caller's transpose back to (B, Tq, C) is a free view rather than a copy.
    """

    def forward(self, q, k, v, causal=True, padding_mask=None, dropout_p=0.0, rng=None):
        xp = get_array_module(q)
        B, nh, Tq, hs = q.shape
        Tk, dt = k.shape[2], q.dtype.type
        mask = attention_mask(Tq, Tk, causal, padding_mask, xp)
        scale = dt(1.0 / math.sqrt(hs))
        add_mask = None if mask is None else xp.where(mask, dt(0), dt(-np.inf))  # 0 or -inf
        D = None
        if dropout_p > 0.0:  # drawn up front: one generator, the same draws as one big call
            keep = xp.asarray(rng.random((B, nh, Tq, Tk), dtype=q.dtype)) >= dt(dropout_p)
            D = keep.astype(q.dtype) * dt(1.0 / (1.0 - dropout_p))
        qs = xp.empty_like(q)
        S = xp.empty((B, nh, Tq, Tk), dtype=q.dtype)  # scores, then probabilities in place
        out = xp.empty((B, Tq, nh, hs), dtype=q.dtype)  # heads side by side, as the caller wants
        O = out.transpose(0, 2, 1, 3)  # (B, nh, Tq, hs), a strided view of out
        ones = xp.ones(Tk, dtype=q.dtype)

        def heads(h):  # everything below for the heads h only (S[:, h] etc.)
            xp.multiply(q[:, h], scale, out=qs[:, h])  # fold the scale into q (smaller than S)
            xp.matmul(qs[:, h], k[:, h].swapaxes(-1, -2), out=S[:, h])  # (Tq, hs) @ (hs, Tk)
            Sh = S[:, h]
            if add_mask is not None:
                Sh += add_mask  # additive mask: (Tq, Tk) or (B, 1, Tq, Tk)
            m = Sh.max(axis=-1, keepdims=True)  # (B, h, Tq, 1)
            m[~xp.isfinite(m)] = 0  # fully masked rows: exp(-inf - 0) = 0 everywhere
            Sh -= m
            xp.exp(Sh, out=Sh)  # unnormalised probabilities
            den = Sh @ ones  # row sums as a matvec: (B, h, Tq)
            den[den == 0] = 1  # rows with no visible key stay all zeros
            Sh *= (dt(1.0) / den)[..., None]  # P
            xp.matmul(Sh if D is None else Sh * D[:, h], v[:, h], out=O[:, h])  # (Tq, Tk) @ (Tk, hs)

        _run_blocks_blas(xp, heads, nh, B * Tq * Tk)
        self.save(qs, k, v, S, D, O)
        self.scale = scale
        return O

    def backward(self, g):
        xp = get_array_module(g)
        qs, k, v, P, D, O = self.saved
        dq, dk, dv = xp.empty_like(qs), xp.empty_like(k), xp.empty_like(v)
        dS = xp.empty_like(P)
        ones = xp.ones(O.shape[-1], dtype=O.dtype)
        B, nh, Tq, Tk = P.shape

        def heads(h):
            PD = P[:, h] if D is None else P[:, h] * D[:, h]
            xp.matmul(PD.swapaxes(-1, -2), g[:, h], out=dv[:, h])  # dv = PD^T g: (Tk, Tq) @ (Tq, hs)
            dSh = dS[:, h]
            xp.matmul(g[:, h], v[:, h].swapaxes(-1, -2), out=dSh)  # dP = g v^T: (Tq, hs) @ (hs, Tk)
            if D is not None:
                dSh *= D[:, h]
            r = (g[:, h] * O[:, h]) @ ones  # rowsum(dP * P) = rowsum(g * O), (B, h, Tq)
            dSh -= r[..., None]
            dSh *= P[:, h]  # dS = P * (dP - rowsum(dP * P))
            xp.matmul(dSh, k[:, h], out=dq[:, h])  # (Tq, Tk) @ (Tk, hs)
            dq[:, h] *= self.scale
            xp.matmul(dSh.swapaxes(-1, -2), qs[:, h], out=dk[:, h])  # qs carries the scale

        _run_blocks_blas(xp, heads, nh, B * Tq * Tk)
        return dq, dk, dv


def attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = True, padding_mask=None,
              dropout_p: float = 0.0, rng=None) -> Tensor:
    """Attention over heads. q (B, nh, Tq, hs), k and v (B, nh, Tk, hs) -> (B, nh, Tq, hs).

    padding_mask: optional (B, Tk) of 1/True for real tokens, 0/False for padding (keys).
    dropout_p: dropout on the attention probabilities (pass 0 in eval mode); rng as F.dropout.
    """
    if k.shape != v.shape or q.ndim != 4 or k.ndim != 4 or q.shape[:2] != k.shape[:2] \
            or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"attention: q {q.shape}, k {k.shape}, v {v.shape} do not fit "
                         "(B, nh, Tq, hs), (B, nh, Tk, hs), (B, nh, Tk, hs)")
    B, _, Tq, _ = q.shape
    Tk = k.shape[2]
    if causal and Tq > Tk:
        raise ValueError(f"attention: causal attention needs Tq <= Tk, got {Tq} > {Tk}")
    xp = get_array_module(_data(q))
    if padding_mask is not None:
        padding_mask = xp.asarray(_data(padding_mask))
        if padding_mask.shape != (B, Tk):
            raise ValueError(f"attention: padding_mask shape {padding_mask.shape} should be "
                             f"(B, Tk) = {(B, Tk)}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"attention dropout probability must be in [0, 1), got {dropout_p}")
    if dropout_p > 0.0 and rng is None:
        from .random import get_rng
        rng = get_rng(xp)
    return dispatch.apply("attention", q, k, v, causal=causal, padding_mask=padding_mask,
                          dropout_p=dropout_p, rng=rng)


# ---- dropout ---------------------------------------------------------------------------------

class Dropout(Function):
    """Inverted dropout: y = x * m / (1 - p), m ~ Bernoulli(1 - p).   dx = g * m / (1 - p)."""

    def forward(self, x, p=0.1, rng=None):
        xp = get_array_module(x)
        keep = xp.asarray(rng.random(x.shape, dtype=x.dtype)) >= x.dtype.type(p)
        mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
        self.save(mask)
        return x * mask

    def backward(self, g):
        (mask,) = self.saved
        return (g * mask,)


def dropout(x: Tensor, p: float, training: bool, rng=None) -> Tensor:
    """Zero each element with probability p while training (scaling the rest by 1/(1-p)).

    rng: a `numpy.random.Generator` (or CuPy's) so runs are reproducible; defaults to minigpt's
    global generator (`minigpt.manual_seed`).
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    if rng is None:
        from .random import get_rng
        rng = get_rng(get_array_module(_data(x)))
    return dispatch.apply("dropout", x, p=p, rng=rng)


# ---- cross-entropy ---------------------------------------------------------------------------

class CrossEntropy(Function):
    """loss = mean over kept rows n of (logsumexp(z_n) - z_n[y_n]);  rows with y = ignore skipped.

    dz_n = g * (softmax(z_n) - onehot(y_n)) / N_kept for kept rows, 0 for ignored ones.
    Shapes: logits (N, V), targets int (N,). With no kept row the loss is 0 (no gradient).
    Computed stably as logsumexp(z) - z[y] = log(sum(exp(z - max))) - (z[y] - max): both
    terms stay small. Speed: exp(z - max) is kept for backward (softmax = e / sum(e)), the
    row sums are a matvec with ones, and the full log-softmax array is never formed: with
    GPT-1's 40478-word vocabulary each (N, V) pass costs as much as a small layer.
    """

    def forward(self, logits, targets=None, ignore_index=-100):
        xp = get_array_module(logits)
        N, V = logits.shape
        keep = targets != ignore_index  # (N,)
        n_kept = int(keep.sum())
        safe = xp.where(keep, targets, 0)  # ignored rows read class 0, then are zeroed
        m = logits.max(axis=-1)  # (N,)
        rows = xp.arange(N)
        picked = logits[rows, safe] - m  # z[y] - max, (N,)
        e = xp.empty_like(logits)
        s = xp.empty(N, dtype=logits.dtype)
        ones = xp.ones(V, dtype=logits.dtype)

        def rows(i):  # e = exp(z - max) on rows i (z - max <= 0: no overflow), s = row sums
            xp.subtract(logits[i], m[i, None], out=e[i])
            xp.exp(e[i], out=e[i])
            xp.matmul(e[i], ones, out=s[i])  # sum(exp(z - max)) >= 1 as a matvec

        _run_blocks_blas(xp, rows, N, V)
        losses = (xp.log(s) - picked) * keep
        self.save(e, s, safe, keep)
        self.n_kept = n_kept
        return losses.sum() / logits.dtype.type(max(n_kept, 1))

    def backward(self, g):
        xp = get_array_module(g)
        e, s, safe, keep = self.saved
        if self.n_kept == 0:
            return (xp.zeros_like(e),)
        coef = keep.astype(e.dtype) * (g / e.dtype.type(self.n_kept))  # (N,): g / N_kept or 0
        dz = xp.empty_like(e)
        c = (coef / s)[:, None]
        _run_blocks(xp, lambda i: xp.multiply(e[i], c[i], out=dz[i]), *e.shape)  # coef * softmax
        dz[xp.arange(dz.shape[0]), safe] -= coef  # - coef * onehot(y)
        return (dz,)


def cross_entropy(logits: Tensor, targets, ignore_index: int = -100) -> Tensor:
    """Mean cross-entropy of logits (..., V) against integer targets (...)."""
    targets = _data(targets)
    xp = get_array_module(_data(logits))
    targets = xp.asarray(targets)
    if targets.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy targets must be integers, got dtype {targets.dtype}")
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"cross_entropy: logits shape {logits.shape} does not match targets "
                         f"shape {targets.shape} (expected logits = targets.shape + (V,))")
    V = logits.shape[-1]
    flat_t = targets.reshape(-1)
    bad = (flat_t != ignore_index) & ((flat_t < 0) | (flat_t >= V))
    if bool(bad.any()):
        raise ValueError(f"cross_entropy target {int(flat_t[bad][0])} is outside [0, {V}) "
                         f"and is not ignore_index={ignore_index}")
    flat = logits.reshape(-1, V) if logits.ndim != 2 else logits
    return dispatch.apply("cross_entropy", flat, targets=flat_t, ignore_index=ignore_index)


# ---- registration (until minigpt/ops and minigpt/fast land, these classes serve both) -------

for _op, _cls in (("embedding", Embedding), ("linear", Linear), ("layer_norm", LayerNorm),
                  ("gelu", GELU), ("softmax", Softmax), ("log_softmax", LogSoftmax),
                  ("attention", Attention), ("dropout", Dropout),
                  ("cross_entropy", CrossEntropy)):
    dispatch.register(_op, "reference", _cls)
    dispatch.register(_op, "fast", _cls)


# ---- CUDA kernels: TEMPORARY, until minigpt/cuda/ registers its own Functions ---------------
# CuPy float32: softmax over the last axis in one launch (kernels/02_softmax_warp.cu), and
# attention with head size 32/64/128 and no attention dropout on the flash kernels (04, 05);
# minigpt.kernels.use_fused(False) / MINIGPT_FUSED=0 turns them off.

class _KernelAttention(FusedAttention):
    def forward(self, q, k, v, causal=True, padding_mask=None, dropout_p=0.0, rng=None):
        return super().forward(q, k, v, causal=causal, padding_mask=padding_mask)


dispatch.register("attention", "cuda", _KernelAttention,
                  supports=lambda q, k, v, dropout_p=0.0, **_: dropout_p == 0.0
                  and _kernels.can_fuse_attention(q, k, v))
dispatch.register("softmax", "cuda", FusedSoftmax,
                  supports=lambda x, axis=-1: _kernels.can_fuse_softmax(x, axis))
