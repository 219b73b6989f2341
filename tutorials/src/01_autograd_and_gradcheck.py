# %% [markdown]
# # 1. Autograd and gradient checks
#
# minigpt's autograd is a few hundred lines (`minigpt/autograd.py`). A `Function` computes its
# output from plain arrays in `forward`, keeps what `backward` needs, and `backward` turns the
# gradient of the output into gradients of the inputs. This notebook builds one op by hand,
# breaks it on purpose, watches `minigpt.gradcheck` catch the mistake, and measures how the
# step size of a numerical derivative decides how far it can be trusted.

# %%
import numpy as np
import matplotlib.pyplot as plt
import minigpt
from minigpt import Tensor, Function, gradcheck, GradcheckError
import minigpt.functional as F

rng = np.random.default_rng(0)
minigpt.use("reference")  # run the reference ops of minigpt/ops/, the code shown here
plt.rcParams["figure.dpi"] = 120

# %% [markdown]
# ## A first graph
# Every op on a `Tensor` that requires a gradient records its `creator`. `backward()` walks the
# graph from the output back to the leaves and accumulates `.grad`.

# %%
x = Tensor(rng.standard_normal((3, 4)), requires_grad=True)
w = Tensor(rng.standard_normal((4, 2)), requires_grad=True)
y = (x @ w).tanh().sum()
y.backward()
# d/dw sum(tanh(x w)) = x^T (1 - tanh(x w)^2)
expected = x.data.T @ (1 - np.tanh(x.data @ w.data) ** 2)
print("w.grad matches the hand derivation:", np.allclose(w.grad, expected))
print("the graph:", type(y.creator).__name__, "<-", type(y.creator.inputs[0].creator).__name__,
      "<-", type(y.creator.inputs[0].creator.inputs[0].creator).__name__)

# %% [markdown]
# ## Writing an op: the sigmoid
# Forward: $y = 1 / (1 + e^{-x})$. Backward: $dy/dx = y (1 - y)$, so forward saves `y`.

# %%
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

# %% [markdown]
# ## Breaking it on purpose
# Forget the `(1 - y)` factor. `gradcheck` compares the analytic gradient with float64 central
# differences, $(f(x+\epsilon) - f(x-\epsilon)) / 2\epsilon$, under a *random* upstream
# gradient, and names the worst element.

# %%
class WrongSigmoid(Sigmoid):
    def backward(self, g):
        (y,) = self.saved
        return (g * y,)

try:
    gradcheck(lambda x: WrongSigmoid.apply(x), [x])
    wrong_sigmoid_caught = False
except GradcheckError as e:
    wrong_sigmoid_caught = True
    print(e)

# %% [markdown]
# ## Why the upstream gradient must be random
# Softmax rows sum to 1, so with an all-ones upstream gradient the true input gradient is
# exactly zero, and a backward that returns zeros would pass. A random upstream gradient
# exposes it.

# %%
class LazySoftmax(Function):
    def forward(self, x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    def backward(self, g):
        return (np.zeros_like(g),)

z = Tensor(rng.standard_normal((2, 6)), requires_grad=True)
out = LazySoftmax.apply(z)
out.backward(np.ones(out.shape))
true_grad_zero = np.allclose(F.softmax(Tensor(z.data), axis=-1).data.sum(-1), 1.0)
print("all-ones upstream: the lazy gradient equals the true one (zero)?", np.allclose(z.grad, 0))
try:
    gradcheck(lambda z: LazySoftmax.apply(z), [z])
    lazy_caught = False
except GradcheckError as e:
    lazy_caught = True
    print("random upstream:", str(e)[:90], "...")

# %% [markdown]
# ## How small should $\epsilon$ be?
# The central difference has two errors. Its *truncation* error is
# $\frac{\epsilon^2}{6} f'''(x)$: it shrinks with $\epsilon$. Its *rounding* error is about
# $u\,|f(x)|/\epsilon$, with $u$ the unit roundoff ($1.1\cdot10^{-16}$ in float64,
# $6\cdot10^{-8}$ in float32): it grows as $\epsilon$ shrinks. The sum is smallest near
# $\epsilon \approx u^{1/3}$: about $5\cdot10^{-6}$ in float64 (gradcheck uses $10^{-6}$), and
# about $4\cdot10^{-3}$ in float32, where the best error is still large. That is why every
# gradient check in minigpt runs in float64.

# %%
def central_difference_error(dtype, eps, x0=0.7):
    f = lambda x: 1.0 / (1.0 + np.exp(-x))  # the sigmoid, computed in dtype
    x = dtype(x0)
    e = dtype(eps)
    numeric = (f(x + e) - f(x - e)) / (2 * e)
    exact = f(np.float64(x0)) * (1 - f(np.float64(x0)))
    return abs(float(numeric) - exact)

epsilons = np.logspace(-12, -1, 45)
err64 = [central_difference_error(np.float64, e) for e in epsilons]
err32 = [central_difference_error(np.float32, e) for e in epsilons]
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.loglog(epsilons, err64, "o-", ms=3, label="float64")
ax.loglog(epsilons, err32, "s-", ms=3, label="float32")
ax.axvline(1e-6, color="gray", ls=":", label="gradcheck's eps")
ax.set_xlabel("eps")
ax.set_ylabel("|numeric - exact|")
ax.set_title("central difference of the sigmoid at x = 0.7")
ax.legend(fontsize=9)
plt.tight_layout()
plt.show()
best64 = epsilons[int(np.argmin(err64))]
best32 = epsilons[int(np.argmin(err32))]
print(f"best eps: float64 {best64:.1e} (error {min(err64):.1e}), "
      f"float32 {best32:.1e} (error {min(err32):.1e})")

# %% [markdown]
# ## Every GPT-1 layer passes
# The same check runs on each reference op in `minigpt.ops` (and in the test suite on shapes
# drawn by hypothesis). Here is what one of them looks like: the linear layer, its forward and
# its backward on one screen.

# %%
import inspect
from minigpt.ops.linear import Linear
print(inspect.getsource(Linear))

# %%
B, nh, T, hs = 2, 2, 5, 3
q, k, v = (Tensor(rng.standard_normal((B, nh, T, hs)), requires_grad=True) for _ in range(3))
results = {}
results["attention"] = gradcheck(lambda q, k, v: F.attention(q, k, v, causal=True), [q, k, v])
h = Tensor(rng.standard_normal((B, T, 8)), requires_grad=True)
g = Tensor(1 + 0.1 * rng.standard_normal(8), requires_grad=True)
b = Tensor(0.1 * rng.standard_normal(8), requires_grad=True)
results["layer_norm"] = gradcheck(lambda h, g, b: F.layer_norm(h, g, b), [h, g, b])
results["gelu"] = gradcheck(lambda h: F.gelu(h), [h])
W = Tensor(0.3 * rng.standard_normal((8, 4)), requires_grad=True)
results["linear"] = gradcheck(lambda h, W: F.linear(h, W), [h, W])
logits = Tensor(rng.standard_normal((6, 7)), requires_grad=True)
targets = np.array([1, 2, -100, 3, 6, 0])
results["cross_entropy"] = gradcheck(lambda z: F.cross_entropy(z, targets), [logits])
for name, ok in results.items():
    print(f"{name:14s} {ok}")

# %% [markdown]
# ## Exercise: an op of your own
# Write `Exp` as a `Function`: forward $y = e^x$, backward $dL/dx = g\,e^x$. Save what the
# backward needs (the output is enough: $dy/dx = y$). The check runs gradcheck and prints the
# relative error of your gradient against the finite difference. (The graded exercises on
# autograd itself are the `autograd` assignment of `minigpt assignments`: broadcasting,
# products, reductions and gradcheck's central difference.)

# %%
class Exp(Function):
    def forward(self, x):
        # TODO: compute y = exp(x) and save what backward needs
        ### BEGIN SOLUTION
        y = np.exp(x)
        self.save(y)
        return y
        ### END SOLUTION

    def backward(self, g):
        # TODO: return a tuple with dL/dx
        ### BEGIN SOLUTION
        (y,) = self.saved
        return (g * y,)
        ### END SOLUTION

xe = Tensor(rng.standard_normal((3, 4)), requires_grad=True)
ge = rng.standard_normal((3, 4))
Exp.apply(xe).backward(ge)
h_ = 1e-6
numeric = ge * (np.exp(xe.data + h_) - np.exp(xe.data - h_)) / (2 * h_)
exp_error = np.abs(xe.grad - numeric).max() / np.abs(numeric).max()
print(f"relative error against the central difference: {exp_error:.1e} (should be below 1e-8)")
print("gradcheck:", gradcheck(lambda x: Exp.apply(x), [Tensor(xe.data, requires_grad=True)]))

# %% [markdown]
# ## More exercises
# 1. Save the *input* instead of the output in `Exp`. Which version keeps less memory alive
#    when the next op needs `exp(x)` anyway?
# 2. Run the sigmoid gradcheck with float32 inputs and `eps=1e-6`. Explain the failure with the
#    curve above.
# 3. `x[[0, 0, 1]]` uses row 0 twice. Check that `x.grad[0]` receives both upstream rows.
#
# The checks below hold this notebook to its claims.

# %%
assert wrong_sigmoid_caught and lazy_caught
assert np.allclose(z.grad, 0) and true_grad_zero  # the all-ones test was fooled
assert all(results.values())
assert exp_error < 1e-8
assert 1e-8 < best64 < 1e-4 and min(err64) < 1e-9      # u^(1/3) ~ 5e-6 for float64
assert min(err32) > 100 * min(err64) and best32 > best64  # float32: larger eps, larger error
print("all claims hold")
