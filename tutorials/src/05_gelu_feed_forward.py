# %% [markdown]
# # 5. The GELU feed-forward network
#
# After attention has mixed information *between* positions, each position is transformed on
# its own by a two-layer network: $\text{MLP}(x) = \text{GELU}(x W_{fc} + b_{fc})\,W_{proj} + b_{proj}$,
# widening $C$ to $4C$ and back. GPT-1 uses GELU, $x\,\Phi(x)$ ($\Phi$ the standard normal
# CDF), in its tanh approximation:
#
# $$\text{GELU}(x) \approx \tfrac12 x\big(1 + \tanh(\sqrt{2/\pi}\,(x + 0.044715\,x^3))\big).$$
#
# Unlike ReLU it is smooth, lets a little negative signal through (its minimum is about
# $-0.17$ at $x \approx -0.75$), and its derivative is continuous.

# %%
import inspect
import math
import numpy as np
import matplotlib.pyplot as plt
import minigpt
from minigpt import Tensor, gradcheck
import minigpt.functional as F
from minigpt.ops import GELU

rng = np.random.default_rng(0)
minigpt.use("reference")  # run the reference ops of minigpt/ops/, the code shown here
plt.rcParams["figure.dpi"] = 120

# %% [markdown]
# ## The reference op
# The backward uses the product rule and the saved $\tanh$: no second transcendental call.

# %%
print(inspect.getsource(GELU))

# %% [markdown]
# ## GELU against ReLU, and their derivatives
# The derivatives come from autograd (`backward` with an all-ones upstream gradient gives
# $dy/dx$ elementwise); the exact GELU uses the error function.

# %%
xs = np.linspace(-4, 4, 801)
xt = Tensor(xs, requires_grad=True)
F.gelu(xt).backward(np.ones_like(xs))
gelu_y, gelu_d = F.gelu(Tensor(xs)).data, xt.grad
relu_y, relu_d = np.maximum(xs, 0), (xs > 0).astype(float)
erf = np.vectorize(math.erf)
exact_y = 0.5 * xs * (1 + erf(xs / math.sqrt(2)))

fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
axes[0].plot(xs, relu_y, label="ReLU", lw=1)
axes[0].plot(xs, gelu_y, label="GELU (tanh)", lw=2)
axes[0].plot(xs, exact_y, "--", label="GELU (erf)", lw=1)
axes[0].set_title("activation")
axes[0].set_ylabel("y")
axes[0].legend()
axes[1].plot(xs, relu_d, label="ReLU'", lw=1)
axes[1].plot(xs, gelu_d, label="GELU' (autograd)", lw=2)
axes[1].set_title("derivative")
axes[1].set_ylabel("dy/dx")
axes[1].legend()
for ax in axes:
    ax.set_xlabel("x")
    ax.axhline(0, color="gray", lw=0.5)
    ax.axvline(0, color="gray", lw=0.5)
plt.tight_layout()
plt.show()
i_min = int(np.argmin(gelu_y))
print(f"minimum {gelu_y[i_min]:.4f} at x = {xs[i_min]:.3f}")
print(f"max |tanh form - erf form| = {np.abs(gelu_y - exact_y).max():.2e}")
print(f"derivative: min {gelu_d.min():.3f} (negative: GELU is not monotone), max {gelu_d.max():.3f} (above 1)")
print("gradcheck:", gradcheck(F.gelu, [Tensor(rng.standard_normal((3, 7)) * 2, requires_grad=True)]))

# %% [markdown]
# ## The feed-forward block
# `minigpt.model.MLP` is `c_fc` ($C \to 4C$), GELU, `c_proj` ($4C \to C$) and dropout. Its
# parameter count is $C\cdot4C + 4C + 4C\cdot C + C = 8C^2 + 5C$: for GPT-1 ($C = 768$)
# 4,722,432 per block, two thirds of a block's parameters.

# %%
from minigpt.model import MLP
cfg = minigpt.GPTConfig(vocab_size=10, n_ctx=8, n_layer=1, n_embd=24, n_head=2,
                        resid_pdrop=0.0, dtype="float64")
mlp = MLP(cfg, np.random.default_rng(0))
for name, p in mlp.named_parameters():
    print(f"{name:16s} {p.shape}")
C = cfg.n_embd
print("parameters:", mlp.num_parameters(), "= 8C^2 + 5C =", 8 * C * C + 5 * C)
print("GPT-1 (C=768):", 8 * 768 ** 2 + 5 * 768)
x = Tensor(rng.standard_normal((2, 5, C)), requires_grad=True)
by_hand = F.linear(F.gelu(F.linear(x, mlp.c_fc.weight, mlp.c_fc.bias)), mlp.c_proj.weight, mlp.c_proj.bias)
print("MLP == linear, gelu, linear:", np.allclose(mlp(x).data, by_hand.data))
print("gradcheck through the block:", gradcheck(lambda x: mlp(x), [x]))

# %% [markdown]
# ## How many units are "on"?
# With ReLU a unit with a negative input passes nothing and gets no gradient. GELU's units
# with moderately negative inputs still pass a little gradient, so fewer units are dead.

# %%
h = F.linear(x, mlp.c_fc.weight, mlp.c_fc.bias).data * 40    # pre-activations, widened
frac_relu = ((h > 0)).mean()
frac_gelu = (np.abs(np.interp(h, xs, gelu_d)) > 1e-3).mean()
print(f"units passing gradient: ReLU {frac_relu:.2f}, GELU {frac_gelu:.2f}")

# %% [markdown]
# ## Exercise: the exact GELU
# Write the exact GELU, $x\,\Phi(x)$, as a `Function`; its derivative is
# $\Phi(x) + x\,\varphi(x)$ with $\varphi$ the standard normal density. The check runs
# gradcheck, prints the relative error of your derivative against a central difference, and
# how far it is from the tanh form's. (Graded: tasks `layers.gelu_forward` and
# `layers.gelu_backward` of `minigpt assignments`, for the tanh form.)

# %%
from minigpt import Function

class ExactGELU(Function):
    def forward(self, x):
        # TODO: Phi(x) with the `erf` above: Phi(x) = (1 + erf(x / sqrt 2)) / 2; save for backward
        ### BEGIN SOLUTION
        Phi = 0.5 * (1 + erf(x / math.sqrt(2)))
        self.save(x, Phi)
        return x * Phi
        ### END SOLUTION

    def backward(self, g):
        # TODO: g * (Phi(x) + x phi(x)), phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
        ### BEGIN SOLUTION
        x, Phi = self.saved
        phi = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        return (g * (Phi + x * phi),)
        ### END SOLUTION

xg = Tensor(xs.copy(), requires_grad=True)
ExactGELU.apply(xg).backward(np.ones_like(xs))
fx = lambda x: ExactGELU.apply(Tensor(x)).data
exact_numeric = (fx(xs + 1e-6) - fx(xs - 1e-6)) / 2e-6
gelu_exact_error = np.abs(xg.grad - exact_numeric).max() / np.abs(exact_numeric).max()
print(f"relative error against the central difference: {gelu_exact_error:.1e} (below 1e-8)")
print("gradcheck:", gradcheck(lambda x: ExactGELU.apply(x), [Tensor(rng.standard_normal((3, 7)) * 2, requires_grad=True)]))
print(f"largest |exact derivative - tanh form's| on [-4, 4]: {np.abs(xg.grad - gelu_d).max():.1e}")

# %% [markdown]
# ## More exercises
# 1. Where is GELU's derivative largest? Solve numerically and compare with the plot.
# 2. Why widen to $4C$ at all? Count the multiply-adds of the MLP and of attention for one
#    position of GPT-1 with $T = 512$.

# %%
assert abs(gelu_y[i_min] + 0.17) < 0.005 and abs(xs[i_min] + 0.75) < 0.02
assert np.abs(gelu_y - exact_y).max() < 1e-3
assert gelu_d.min() < 0 and gelu_d.max() > 1
assert mlp.num_parameters() == 8 * C * C + 5 * C and 8 * 768 ** 2 + 5 * 768 == 4_722_432
assert frac_gelu > frac_relu
assert gelu_exact_error < 1e-8 and np.abs(xg.grad - gelu_d).max() < 0.03
print("all claims hold")
