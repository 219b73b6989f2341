"""Writes the tutorial notebooks from the cell lists below: `python tutorials/_build.py`.

Notebooks are JSON; keeping their source here as plain Python strings makes them easy to
review and diff. tests/test_tutorials.py runs every code cell, so the tutorials stay true.
"""
import json
from pathlib import Path

HERE = Path(__file__).parent


def md(text):
    return {"cell_type": "markdown", "metadata": {}, "source": text.strip("\n").splitlines(True)}


def code(text):
    return {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
            "source": text.strip("\n").splitlines(True)}


AUTOGRAD = [
    md("""
# 1. Autograd and gradient checks

minigpt's autograd is about 300 lines (`minigpt/autograd.py`). A `Function` computes its output
from plain arrays in `forward`, keeps what `backward` needs, and `backward` turns the gradient
of the output into gradients of the inputs. This notebook builds one op by hand, breaks it on
purpose, and watches `minigpt.gradcheck` catch the mistake.
"""),
    code("""
import numpy as np
import minigpt
from minigpt import Tensor, Function, gradcheck, GradcheckError
import minigpt.functional as F
rng = np.random.default_rng(0)
"""),
    md("""
## A first graph
Every op on a `Tensor` that requires a gradient records its `creator`. `backward()` walks the
graph from the output back to the leaves and accumulates `.grad`.
"""),
    code("""
x = Tensor(rng.standard_normal((3, 4)), requires_grad=True)
w = Tensor(rng.standard_normal((4, 2)), requires_grad=True)
y = (x @ w).tanh().sum()
y.backward()
# d/dw sum(tanh(x w)) = x^T (1 - tanh(x w)^2)
expected = x.data.T @ (1 - np.tanh(x.data @ w.data) ** 2)
print(np.allclose(w.grad, expected))
"""),
    md("""
## Writing an op: the sigmoid
Forward: $y = 1 / (1 + e^{-x})$. Backward: $dy/dx = y (1 - y)$, so forward saves `y`.
"""),
    code("""
class Sigmoid(Function):
    def forward(self, x):
        y = 1.0 / (1.0 + np.exp(-x))
        self.save(y)
        return y

    def backward(self, g):
        (y,) = self.saved
        return (g * y * (1.0 - y),)

x = Tensor(rng.standard_normal((2, 5)), requires_grad=True)
print(gradcheck(lambda x: Sigmoid.apply(x), [x]))
"""),
    md("""
## Breaking it on purpose
Forget the `(1 - y)` factor. `gradcheck` compares the analytic gradient with float64 central
differences, $(f(x+\\epsilon) - f(x-\\epsilon)) / 2\\epsilon$, under a *random* upstream gradient,
and names the worst element.
"""),
    code("""
class WrongSigmoid(Sigmoid):
    def backward(self, g):
        (y,) = self.saved
        return (g * y,)

try:
    gradcheck(lambda x: WrongSigmoid.apply(x), [x])
except GradcheckError as e:
    print(e)
"""),
    md("""
## Why the upstream gradient must be random
Softmax rows sum to 1, so with an all-ones upstream gradient the true input gradient is exactly
zero, and a backward that returns zeros would pass. A random upstream gradient exposes it.
"""),
    code("""
class LazySoftmax(Function):
    def forward(self, x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    def backward(self, g):
        return (np.zeros_like(g),)

z = Tensor(rng.standard_normal((2, 6)), requires_grad=True)
out = LazySoftmax.apply(z)
out.backward(np.ones(out.shape))
print("all-ones upstream: gradient matches the true one (zero)?", np.allclose(z.grad, 0))
try:
    gradcheck(lambda z: LazySoftmax.apply(z), [z])
except GradcheckError as e:
    print("random upstream:", str(e)[:90], "...")
"""),
    md("""
## Every GPT-1 layer passes
The same check runs on each op in `minigpt.functional`, and in the test suite on shapes drawn
by hypothesis.
"""),
    code("""
B, nh, T, hs = 2, 2, 5, 3
q, k, v = (Tensor(rng.standard_normal((B, nh, T, hs)), requires_grad=True) for _ in range(3))
print("attention ", gradcheck(lambda q, k, v: F.attention(q, k, v, causal=True), [q, k, v]))
h = Tensor(rng.standard_normal((B, T, 8)), requires_grad=True)
g = Tensor(1 + 0.1 * rng.standard_normal(8), requires_grad=True)
b = Tensor(0.1 * rng.standard_normal(8), requires_grad=True)
print("layer_norm", gradcheck(lambda h, g, b: F.layer_norm(h, g, b), [h, g, b]))
print("gelu      ", gradcheck(lambda h: F.gelu(h), [h]))
logits = Tensor(rng.standard_normal((6, 7)), requires_grad=True)
targets = np.array([1, 2, -100, 3, 6, 0])
print("cross_entropy", gradcheck(lambda z: F.cross_entropy(z, targets), [logits]))
"""),
]

ATTENTION = [
    md("""
# 2. Attention: naive, then tiled with an online softmax

`F.attention` materialises the whole score matrix $S = QK^T/\\sqrt{d}$ of shape (T, T).
The CUDA kernel in `kernels/04_attention_flash_fwd.cu` never does: it walks over tiles of keys
and keeps a running maximum and a running sum per query row. `minigpt/cuda/tiled_attention.py` is
the same algorithm in NumPy. This notebook checks that the two agree, and shows the one idea
that makes tiling possible: rescaling a partial softmax when a larger maximum appears.
"""),
    code("""
import numpy as np
import minigpt.functional as F
from minigpt import Tensor
from minigpt.cuda import tiled_attention
rng = np.random.default_rng(0)
"""),
    md("""
## The online softmax
For scores $s_1..s_n$ seen in two chunks, keep $m$ (max so far) and $\\ell = \\sum e^{s_j - m}$.
When a new chunk raises the max to $m'$, the old sum is rescaled by $e^{m - m'}$.
"""),
    code("""
s = rng.standard_normal(10) * 3
m, l = -np.inf, 0.0
for chunk in (s[:4], s[4:]):
    m_new = max(m, chunk.max())
    l = l * np.exp(m - m_new) + np.exp(chunk - m_new).sum()
    m = m_new
print(np.isclose(m + np.log(l), np.log(np.exp(s).sum())))   # the log-sum-exp, exactly
"""),
    md("""
## Tiled attention against the naive op
Any T works, including one that is not a multiple of the tile size.
"""),
    code("""
B, nh, T, hs = 2, 3, 100, 16                       # T = 100: one full tile of 64 and a partial one
q, k, v = (rng.standard_normal((B, nh, T, hs)) for _ in range(3))
pad = np.ones((B, T), dtype=bool); pad[1, 90:] = False  # the second sequence ends with padding
naive = F.attention(Tensor(q), Tensor(k), Tensor(v), causal=True, padding_mask=pad).data
o, lse = tiled_attention.flash_attention_forward(q, k, v, causal=True, padding_mask=pad,
                                                 block_q=64, block_k=64)
print("max |tiled - naive| =", np.abs(o - naive).max())
"""),
    md("""
## What the forward saves: O and one number per row
The naive backward needs the whole probability matrix P. The tiled backward recomputes each
tile of P from Q, K and the saved row log-sum-exp: $P_{ij} = e^{s_{ij} - \\mathrm{lse}_i}$.
Memory drops from O(T^2) to O(T) per head.
"""),
    code("""
g = rng.standard_normal(o.shape)                   # a random upstream gradient dO
dq, dk, dv = tiled_attention.flash_attention_backward(q, k, v, o, lse, g, causal=True,
                                                      padding_mask=pad)
tq, tk, tv = (Tensor(a, requires_grad=True) for a in (q, k, v))
F.attention(tq, tk, tv, causal=True, padding_mask=pad).backward(g)
for name, a, b in (("dq", dq, tq.grad), ("dk", dk, tk.grad), ("dv", dv, tv.grad)):
    print(name, "max difference", np.abs(a - b).max())
print("naive P would hold", B * nh * T * T, "numbers; lse holds", lse.size)
"""),
]


def write(name, cells):
    nb = {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3",
                                                      "language": "python", "name": "python3"},
                                       "language_info": {"name": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    (HERE / name).write_text(json.dumps(nb, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write("01_autograd_and_gradcheck.ipynb", AUTOGRAD)
    write("02_attention_tiled.ipynb", ATTENTION)
