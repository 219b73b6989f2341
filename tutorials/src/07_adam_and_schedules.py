# %% [markdown]
# # 7. Adam and the learning-rate schedules
#
# GPT-1 trains with Adam, gradient clipping at global norm 1, a decoupled weight decay of 0.01
# on matrices only, and two schedules: linear warm-up then cosine decay for pretraining, and
# the release's `warmup_linear` for fine-tuning. This notebook plots the schedules, shows why
# Adam needs its bias correction, reproduces `minigpt.optim.Adam` by hand, and lists which
# tensors are decayed.

# %%
import inspect
import math
import numpy as np
import matplotlib.pyplot as plt
import minigpt
from minigpt import optim

rng = np.random.default_rng(0)
minigpt.use("reference")  # run the reference update, the code shown here
plt.rcParams["figure.dpi"] = 120

# %% [markdown]
# ## The update, as the reference code writes it

# %%
print(optim.__doc__)
print(inspect.getsource(optim.adam_update))

# %% [markdown]
# ## The schedules
# The learning rate at update $t$ is `lr * schedule(t)`. Pretraining (the paper): linear
# warm-up over 2,000 updates, then a cosine to 0. Fine-tuning (the release): with
# $x = t/\text{total}$, $(x/w \text{ if } x < w \text{ else } 1)\cdot(1 - x)$, warm-up over
# $w = 0.2\%$ of training, then a straight line to 0.

# %%
print(inspect.getsource(optim.warmup_cosine))
print(inspect.getsource(optim.warmup_linear))

# %%
total_pre, total_ft = 20_000, 1_000
pre = optim.warmup_cosine(2000, total_pre)
ft = optim.warmup_linear(total_ft, warmup=0.002)
t_pre = np.arange(total_pre + 1)
t_ft = np.arange(total_ft + 1)
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].plot(t_pre, [2.5e-4 * pre(t) for t in t_pre])
axes[0].set_title("pretraining: warm-up 2000, cosine (lr 2.5e-4)")
axes[0].set_ylabel("learning rate")
axes[1].plot(t_ft, [6.25e-5 * ft(t) for t in t_ft])
axes[1].set_title("fine-tuning: warmup_linear (lr 6.25e-5)")
axes[1].set_ylabel("learning rate")
for ax in axes:
    ax.set_xlabel("update t")
plt.tight_layout()
plt.show()
print("pretraining factor at t = 0, 1000, 2000, 11000, 20000:",
      [round(pre(t), 4) for t in (0, 1000, 2000, 11000, 20000)])
print("fine-tuning factor at t = 0, 1, 2, 500, 1000:", [round(ft(t), 4) for t in (0, 1, 2, 500, 1000)])

# %% [markdown]
# ## Bias correction
# $m$ and $v$ start at 0, so early on they are biased towards 0: with a constant gradient
# $g$, $m_t = (1-\beta_1^t)\,g$ and $v_t = (1-\beta_2^t)\,g^2$. Dividing by $(1-\beta^t)$
# removes the bias. Without it the first updates would be
# $\frac{1-\beta_1^t}{\sqrt{1-\beta_2^t}}$ times the intended size: at $t=1$,
# $0.1/\sqrt{0.001} \approx 3.2$ times too large. GPT-1's release folds both corrections into
# one step size, $lr_t = lr\,\sqrt{1-\beta_2^t}/(1-\beta_1^t)$.

# %%
b1, b2 = 0.9, 0.999
t = np.arange(1, 3001)
m_raw = 1 - b1 ** t                        # g = 1
v_raw = 1 - b2 ** t
ratio_raw = m_raw / np.sqrt(v_raw)         # the update without correction (lr = 1)
ratio_corr = (m_raw / (1 - b1 ** t)) / np.sqrt(v_raw / (1 - b2 ** t))
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].semilogx(t, m_raw, label="m (raw)")
axes[0].semilogx(t, v_raw, label="v (raw)")
axes[0].axhline(1, color="gray", ls=":")
axes[0].set_title("moments for a constant gradient g = 1")
axes[0].set_ylabel("m, v (raw)")
axes[0].legend()
axes[1].semilogx(t, ratio_raw, label="m / sqrt(v), raw")
axes[1].semilogx(t, ratio_corr, label="bias-corrected")
axes[1].set_title("update size / lr")
axes[1].set_ylabel("|update| / lr")
axes[1].legend()
for ax in axes:
    ax.set_xlabel("update t")
plt.tight_layout()
plt.show()
print(f"update / lr at t=1: raw {ratio_raw[0]:.3f}, corrected {ratio_corr[0]:.3f}; "
      f"raw is largest ({ratio_raw.max():.2f}) at t={t[np.argmax(ratio_raw)]}")

# %% [markdown]
# ## Exercise: `minigpt.optim.Adam` against the formula by hand
# Three updates of a tiny model with clipping, decay and a schedule, replayed with NumPy.
# Write one parameter's update the way GPT-1's release does it: the moments, then the step
# with the folded bias correction `lr_t` and the decoupled weight decay. The check prints the
# largest difference from `optim.Adam` after three updates. (Graded version: task
# `optim.adam` of `minigpt assignments`.)

# %%
def adam_by_hand(p, g, m, v, lr_t, wd, b1=0.9, b2=0.999, eps=1e-8):
    """One update of one parameter; returns the new (p, m, v)."""
    # TODO: m, v moving averages of g and g^2; p - lr_t * (m / (sqrt(v) + eps) + wd * p)
    ### BEGIN SOLUTION
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    return p - lr_t * (m / (np.sqrt(v) + eps) + wd * p), m, v
    ### END SOLUTION

# %%
cfg = minigpt.GPTConfig(vocab_size=11, n_ctx=8, n_layer=1, n_embd=8, n_head=2,
                        embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0, dtype="float64")
model = minigpt.GPT(cfg, seed=0)
named = list(model.named_parameters())
opt = optim.Adam(named, lr=1e-2, weight_decay=0.01, max_grad_norm=0.5,
                 schedule=optim.warmup_cosine(2, 10))
P = {n: p.data.copy() for n, p in named}
M = {n: np.zeros_like(p.data) for n, p in named}
Vv = {n: np.zeros_like(p.data) for n, p in named}
sched = optim.warmup_cosine(2, 10)
for step in range(1, 4):
    idx, tgt = rng.integers(0, 11, (2, 6)), rng.integers(0, 11, (2, 6))
    opt.zero_grad()
    model.loss(idx, tgt).backward()
    grads = {n: p.grad.copy() for n, p in named}
    opt.step()
    norm = math.sqrt(sum((g ** 2).sum() for g in grads.values()))
    scale = 0.5 / (norm + 1e-6) if norm > 0.5 else 1.0
    lr_t = 1e-2 * sched(step) * math.sqrt(1 - b2 ** step) / (1 - b1 ** step)
    for n, p in named:
        wd = 0.01 if p.ndim >= 2 else 0.0
        P[n], M[n], Vv[n] = adam_by_hand(P[n], grads[n] * scale, M[n], Vv[n], lr_t, wd)
    print(f"step {step}: gradient norm {norm:.3f} (clipped to 0.5: {norm > 0.5}), lr {opt.last_lr:.2e}")
max_diff = max(np.abs(P[n] - p.data).max() for n, p in named)
print("max |by hand - optim.Adam| after 3 updates:", max_diff)

# %% [markdown]
# ## Which tensors are decayed
# The rule is by rank: matrices and embeddings (rank 2) are decayed, vectors (biases,
# LayerNorm gains and shifts) are not: shrinking a LayerNorm gain towards 0 would switch the
# layer off, not regularise it.

# %%
decayed = [(n, p.shape) for n, p in named if p.ndim >= 2]
kept = [(n, p.shape) for n, p in named if p.ndim < 2]
print("decayed:    ", ", ".join(n for n, _ in decayed))
print("not decayed:", ", ".join(n for n, _ in kept))
big = minigpt.GPT(minigpt.GPTConfig.preset("small"))
n_dec = sum(p.size for p in big.parameters() if p.ndim >= 2)
print(f"'small' preset: {n_dec / big.num_parameters():.2%} of the parameters are decayed")

# %% [markdown]
# ## Exercises
# 1. With `weight_decay=0.01` and a zero gradient, how much does a matrix shrink per update at
#    `lr = 2.5e-4`? How many updates halve it?
# 2. Replace the release's folded bias correction by the textbook form
#    $\hat m/(\sqrt{\hat v}+\epsilon)$. Which updates differ, and by how much?
# 3. Plot `warmup_linear` with `warmup=0.2`. Why does GPT-1's fine-tuning use such a short
#    warm-up?

# %%
assert pre(0) == 0 and pre(2000) == 1 and abs(pre(11000) - 0.5) < 1e-12 and pre(20000) < 1e-12
assert ft(0) == 0 and ft(1000) == 0 and abs(ft(2) - (1 - 0.002)) < 1e-12
assert abs(ratio_raw[0] - 0.1 / math.sqrt(0.001)) < 1e-9 and np.allclose(ratio_corr, 1)
assert max_diff < 1e-12
assert {n for n, _ in kept} == {n for n, p in named if n.endswith("bias") or ".ln_" in n}
print("all claims hold")
