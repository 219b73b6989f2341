"""Fast linear: one 2-D GEMM per product, its rows split over our threads; the tied-weight layout.

What changes vs ops/linear.py, and why:
- x (B, T, in) @ W runs as one (N, in) @ (in, out) matmul: NumPy would run one small GEMM per
  batch row for the 3-D product.
- Every product (y = x W, dx = g W^T, dW = x^T g) of a training step is split into blocks
  of output rows on minigpt's own threads, each block's BLAS single-threaded
  (runtime.run_blocks_blas), instead of on OpenBLAS's threads: those spin-wait after every
  call, and on 2 cores they took the core that our threads needed for the elementwise ops in
  between (benchmarks/NOTES.md, issue 14: small's step 1.14-1.18x faster on an idle
  machine). The products of fewer than ROWS_MIN *tokens* (sampling one token) stay one BLAS
  call each. The rule counts tokens, not the rows of the product: dW = x^T g has n_in rows,
  and counting those sent every weight gradient of a model narrower than 64 (and the tied
  output layer's of a vocabulary under 64) to one OpenBLAS-threaded call with a long
  reduction, 20x slower than the blocks (issue 26: 23 ms against 1.1 ms at n_embd 48).
- The bias is added to each block of y right after its product, while the block is in cache.
- db is a matvec with ones (runtime.sum_rows): BLAS instead of NumPy's reduction loop.
- Only the gradients that are needed are computed (needs_input_grad).
- When W is a transposed view (the tied output layer reads W_e^T), dW is computed in the
  layout of the array behind it, so that it meets the embedding's own gradient in a
  contiguous sum: a transposing sum of GPT-1's (V, C) took 270 ms against 22 ms.
"""
from __future__ import annotations

from .. import dispatch
from ..autograd import Function
from ..backend import get_array_module
from .runtime import run_blocks_blas, sum_rows

__all__ = ["FastLinear", "matmul_rows", "ROWS_MIN", "SMALL_PRODUCT", "MACS_PER_ELEMENT"]

ROWS_MIN = 64  # fewer tokens: one BLAS call on OpenBLAS's own threads (see matmul_rows)
# multiply-adds (N K M); a smaller product is one plain BLAS call too: OpenBLAS keeps
# products this small on the calling thread (its threshold, 65536 x GEMM_MULTITHREAD_THRESHOLD
# = 4 by default, is 2x higher), so the BLAS thread switch would only cost time
SMALL_PRODUCT = 1 << 17
# runtime.in_parallel splits work of PARALLEL_MIN *elements* of a NumPy pass per block; a
# multiply-add on BLAS is many times cheaper than such an element (~25-50 G/s per core
# against ~1-2 G/s), so a product counts MACS_PER_ELEMENT multiply-adds as one element: it is
# split only from 2 * PARALLEL_MIN * 8 = 2M multiply-adds. Counting each multiply-add as an
# element split (256, 16) @ (16, 64) over two threads, and the hand-off made forward +
# backward 3.6x slower than the reference (issue 26's sweep, loaded machine).
MACS_PER_ELEMENT = 8


def matmul_rows(a, b, bias=None, tokens=None):
    """a @ b (+ bias) for 2-D a (N, K) and b (K, M): blocks of the rows of a on our threads,
    BLAS single-threaded in each.

    tokens: how many tokens the product is over (default N, the rows of a: y = x W and
    dx = g W^T; for dW = x^T g it is K). A few tokens (one sampled token's step) go to BLAS
    whole, on its own threads: there the product is memory-bound and OpenBLAS's quick
    hand-off wins. Many tokens are split whatever N is (dW of a narrow layer has few rows
    but a long reduction, which OpenBLAS's threads run 20x slower than our blocks)."""
    if ((a.shape[0] if tokens is None else tokens) < ROWS_MIN
            or a.shape[0] * a.shape[1] * b.shape[1] < SMALL_PRODUCT):
        out = a @ b  # (N, K) @ (K, M)
        if bias is not None:
            out += bias
        return out
    xp = get_array_module(a)
    out = xp.empty((a.shape[0], b.shape[1]), dtype=a.dtype)  # (N, M)

    def rows(i):
        xp.matmul(a[i], b, out=out[i])  # (n_i, K) @ (K, M)
        if bias is not None:
            xp.add(out[i], bias, out=out[i])

    run_blocks_blas(xp, rows, a.shape[0], max(1, a.shape[1] * b.shape[1] // MACS_PER_ELEMENT))
    return out


class FastLinear(Function):
    """y = x @ W + b."""

    def forward(self, x, weight, bias=None):
        self.save(x, weight)
        y = matmul_rows(x.reshape(-1, x.shape[-1]), weight, bias)  # (N, in) @ (in, out)
        return y.reshape(*x.shape[:-1], weight.shape[1])  # (..., out)

    def backward(self, g):
        x, weight = self.saved
        g2 = g.reshape(-1, g.shape[-1])  # (N, out)
        dx = None
        if self.needs_input_grad[0]:
            dx = matmul_rows(g2, weight.T).reshape(x.shape)  # (N, out) @ (out, in) -> (..., in)
        dW = None
        if self.needs_input_grad[1]:
            x2 = x.reshape(-1, x.shape[-1])  # (N, in)
            N = x2.shape[0]  # tokens: the reduction of dW, not its rows
            if weight.flags.f_contiguous and not weight.flags.c_contiguous:
                # weight is a transposed view (the tied output layer's W_e^T)
                dW = matmul_rows(g2.T, x2, tokens=N).T  # (out, N) @ (N, in) -> (out, in), seen as (in, out)
            else:
                dW = matmul_rows(x2.T, g2, tokens=N)  # (in, N) @ (N, out)
        if len(self.needs_input_grad) == 3:
            return dx, dW, sum_rows(g2)
        return dx, dW


dispatch.register("linear", "fast", FastLinear)
