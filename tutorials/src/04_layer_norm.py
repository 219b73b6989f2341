# %% [markdown]
# # 4. LayerNorm
#
# GPT-1 normalises every position's vector on its own: subtract the row's mean, divide by its
# standard deviation, then scale and shift by learned $w$ and $b$:
#
# $$\mu = \tfrac1C\sum_i x_i,\quad \sigma^2 = \tfrac1C\sum_i (x_i-\mu)^2,\quad
#   r = (\sigma^2+\epsilon)^{-1/2},\quad \hat x = (x-\mu)\,r,\quad y = \hat x \odot w + b.$$
#
# ## The derivation of the backward
# With $g = \partial L/\partial y$, the parameter gradients are sums over rows:
# $\partial L/\partial w = \sum g \odot \hat x$, $\partial L/\partial b = \sum g$.
# For $x$, write $\hat g = g \odot w = \partial L/\partial \hat x$. Each $\hat x_j$ depends on
# $x_i$ directly and through $\mu$ and $r$:
#
# $$\frac{\partial \mu}{\partial x_i} = \frac1C,\qquad
#   \frac{\partial r}{\partial x_i} = -r^3\,\frac{x_i-\mu}{C} = -\frac{r^2 \hat x_i}{C},\qquad
#   \frac{\partial \hat x_j}{\partial x_i} = r\Big(\delta_{ij} - \frac1C - \frac{\hat x_i \hat x_j}{C}\Big).$$
#
# Contracting with $\hat g$ over $j$:
#
# $$\frac{\partial L}{\partial x} = r\,\Big(\hat g - \text{mean}(\hat g) - \hat x\,\text{mean}(\hat g \odot \hat x)\Big).$$
#
# Two facts follow at once, because $\sum_i \hat x_i = 0$ and $\sum_i \hat x_i^2 = C\,\sigma^2 r^2 \approx C$:
# **every row of $dx$ sums to zero**, and $dx$ is (almost) orthogonal to $\hat x$. The
# output does not change when the whole row shifts or (for $\epsilon \to 0$) scales, so the
# gradient has no component along those two directions.

# %%
import inspect
import numpy as np
import matplotlib.pyplot as plt
import minigpt
from minigpt import Tensor, gradcheck
import minigpt.functional as F
from minigpt.ops import LayerNorm

rng = np.random.default_rng(0)
minigpt.use("reference")  # run the reference ops of minigpt/ops/, the code shown here
plt.rcParams["figure.dpi"] = 120

# %% [markdown]
# ## The reference op: the formulas, line by line

# %%
print(inspect.getsource(LayerNorm))

# %% [markdown]
# ## Rows of dx sum to zero

# %%
N, C = 6, 16
x = Tensor(rng.standard_normal((N, C)) * rng.uniform(0.1, 10, (N, 1)) + rng.normal(0, 5, (N, 1)),
           requires_grad=True)
w = Tensor(1 + 0.2 * rng.standard_normal(C), requires_grad=True)
b = Tensor(0.1 * rng.standard_normal(C), requires_grad=True)
y = F.layer_norm(x, w, b)
g = rng.standard_normal(y.shape)
y.backward(g)
xhat = (x.data - x.data.mean(-1, keepdims=True)) / np.sqrt(x.data.var(-1, keepdims=True) + 1e-5)
row_sums = x.grad.sum(axis=1)
dots = (x.grad * xhat).sum(axis=1)
print("row sums of dx:        ", np.array2string(row_sums, precision=2))
print("dx . xhat per row:     ", np.array2string(dots, precision=2))
print("|dx| per row (for scale):", np.array2string(np.linalg.norm(x.grad, axis=1), precision=3))
print("gradcheck:", gradcheck(lambda x, w, b: F.layer_norm(x, w, b), [x, w, b]))

# %% [markdown]
# ## The Jacobian of one row
# $J = r\,(I - \tfrac1C \mathbf{1}\mathbf{1}^T - \tfrac1C \hat x \hat x^T)$ (with $w = 1$): a
# scaled projection. It removes the mean direction $\mathbf 1$ and the direction $\hat x$,
# so it has two (near-)zero eigenvalues and $C-2$ equal to $r$.

# %%
row = rng.standard_normal(C) * 3 + 1
ones, zeros = Tensor(np.ones(C)), Tensor(np.zeros(C))
J = np.zeros((C, C))
for j in range(C):          # one backward per output element: row j of the Jacobian
    xr = Tensor(row[None], requires_grad=True)
    e = np.zeros((1, C))
    e[0, j] = 1.0
    F.layer_norm(xr, ones, zeros).backward(e)
    J[j] = xr.grad[0]
r = 1 / np.sqrt(row.var() + 1e-5)
xh = (row - row.mean()) * r
J_formula = r * (np.eye(C) - 1 / C - np.outer(xh, xh) / C)
eig = np.sort(np.linalg.eigvalsh((J + J.T) / 2))
fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
im = axes[0].imshow(J, cmap="RdBu", vmin=-abs(J).max(), vmax=abs(J).max())
axes[0].set_title("J[j, i] = dy_j / dx_i for one row", fontsize=10)
axes[0].set_xlabel("input i")
axes[0].set_ylabel("output j")
plt.colorbar(im, ax=axes[0], label="derivative")
axes[1].plot(eig / r, "o")
axes[1].set_title("eigenvalues of J / r (sorted)", fontsize=10)
axes[1].set_xlabel("index")
axes[1].set_ylabel("eigenvalue / r")
plt.tight_layout()
plt.show()
print("J from autograd == formula:", np.allclose(J, J_formula), "| two smallest eigenvalues / r:",
      np.round(eig[:2] / r, 6), "| the rest:", np.round(eig[2:].min() / r, 6), "..", np.round(eig.max() / r, 6))

# %% [markdown]
# ## What it does to activations
# Rows with very different scales and offsets come out with mean 0 and standard deviation
# just under 1 (the $\epsilon$ inside the square root), then $w$ and $b$ set the scale the
# network wants.

# %%
before = x.data
after = F.layer_norm(Tensor(before), ones, zeros).data
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
for i in range(N):
    axes[0].plot(before[i], ".-", alpha=0.7)
    axes[1].plot(after[i], ".-", alpha=0.7)
axes[0].set_title("rows before")
axes[1].set_title("rows after LayerNorm (w=1, b=0)")
for ax in axes:
    ax.set_xlabel("feature i of the row")
    ax.set_ylabel("value")
plt.tight_layout()
plt.show()
print("means after:", np.round(after.mean(1), 8))
print("stds after: ", np.round(after.std(1), 5))

# %% [markdown]
# ## Exercise: the backward from what the forward saved
# Write $dx$ from the upstream gradient $g$, the saved $\hat x$, $r$ and $w$, with the
# formula derived at the top. The check compares with the library's gradient of the same
# inputs and prints the relative error. (Graded version: task `layers.layer_norm_backward`
# of `minigpt assignments`; notebook 12 uses it inside a whole block.)

# %%
def layer_norm_dx(g, xhat, r, w):
    """dL/dx of y = xhat * w + b, rows on the last axis; r = 1/sqrt(var + eps), shape (N, 1)."""
    # TODO: gh = g * w, then r * (gh - mean(gh) - xhat * mean(gh * xhat)) per row
    ### BEGIN SOLUTION
    gh = g * w
    return r * (gh - gh.mean(-1, keepdims=True) - xhat * (gh * xhat).mean(-1, keepdims=True))
    ### END SOLUTION

r_rows = 1 / np.sqrt(x.data.var(-1, keepdims=True) + 1e-5)
dx_mine = layer_norm_dx(g, xhat, r_rows, w.data)
x_lib = Tensor(x.data, requires_grad=True)             # the library's dx for the same g
F.layer_norm(x_lib, Tensor(w.data), Tensor(b.data)).backward(g)
ln_error = np.abs(dx_mine - x_lib.grad).max() / np.abs(x_lib.grad).max()
print(f"relative error against the library: {ln_error:.1e} (should be below 1e-12)")

# %% [markdown]
# ## More exercises
# 1. Derive $\partial L/\partial w$ and $\partial L/\partial b$ for inputs of shape (B, T, C):
#    why does the reference reshape to (B·T, C) before summing?
# 2. Set $\epsilon = 0$ and feed a constant row. What happens in the forward? In the backward?
# 3. The saved arrays are $\hat x$, $r$ and $w$. Could the backward recompute $\hat x$ from
#    $y$, $w$ and $b$ instead? When would that fail?

# %%
assert np.abs(row_sums).max() < 1e-10 * np.abs(x.grad).max() * C
assert np.allclose(J, J_formula, atol=1e-10)
assert ln_error < 1e-12
assert np.abs(eig[:2] / r).max() < 1e-4 and np.allclose(eig[2:] / r, 1, atol=1e-9)
assert np.abs(after.mean(1)).max() < 1e-10 and np.all(after.std(1) < 1) and np.all(after.std(1) > 0.99)
print("all claims hold")
