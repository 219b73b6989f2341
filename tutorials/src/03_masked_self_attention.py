# %% [markdown]
# # 3. Masked self-attention
#
# Each position mixes the value vectors of the positions it may see:
# $O = \text{softmax}\big(\text{mask}(QK^T/\sqrt{d})\big)\,V$. In a language model a position
# may see itself and the past, never the future (the *causal* mask), and no position may see
# padding. This notebook draws the masks, checks the reference op against a few lines of
# NumPy, proves causality two ways (outputs and gradients), and shows the KV cache that makes
# generation cheap.

# %%
import inspect
import time
import numpy as np
import matplotlib.pyplot as plt
import minigpt
from minigpt import Tensor, gradcheck
import minigpt.functional as F
from minigpt.ops import Attention, attention_mask

rng = np.random.default_rng(0)
minigpt.use("reference")  # run the reference ops of minigpt/ops/, the code shown here
plt.rcParams["figure.dpi"] = 72

# %% [markdown]
# ## The mask rule
# One function in `minigpt/ops/attention.py` decides what each query sees; the reference op,
# the tuned CPU op and the CUDA kernels all follow it. A query at row $i$ of $T_q$ queries
# sits at absolute position $i + (T_k - T_q)$: with a KV cache the queries are the *last*
# $T_q$ positions of $T_k$ keys.

# %%
print(inspect.getsource(attention_mask))

# %%
T = 8
pad = np.ones((2, T), dtype=bool)
pad[1, 6:] = False                                # the second sequence ends with 2 pads
masks = {
    "causal (T=8)": attention_mask(T, T, causal=True),
    "padding, seq 2": np.broadcast_to(attention_mask(T, T, causal=False, padding_mask=pad)[1, 0],
                                      (T, T)),  # (1, T) for every query
    "causal + padding, seq 2": attention_mask(T, T, causal=True, padding_mask=pad)[1, 0],
    "cached: 3 new queries, 8 keys": attention_mask(3, T, causal=True),
}
fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
for ax, (title, m) in zip(axes, masks.items()):
    ax.imshow(m, cmap="Greens", vmin=0, vmax=1.3)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("key position")
    ax.set_yticks(range(m.shape[0]))
axes[0].set_ylabel("query row")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The reference op
# Hidden scores become $-\infty$ before the softmax, so their probability is exactly 0. The
# backward is the softmax's, $dS = P \odot (dP - \text{rowsum}(dP \odot P))$, then two matmuls.

# %%
print(inspect.getsource(Attention))

# %% [markdown]
# ## The same numbers in six lines of NumPy

# %%
B, nh, T, hs = 2, 3, 8, 4
q, k, v = (rng.standard_normal((B, nh, T, hs)) for _ in range(3))
S = q @ k.swapaxes(-1, -2) / np.sqrt(hs)                  # (B, nh, T, T)
S = np.where(attention_mask(T, T, True, pad), S, -np.inf)
P = np.exp(S - S.max(-1, keepdims=True))
P /= P.sum(-1, keepdims=True)
O_numpy = P @ v                                            # (B, nh, T, hs)
O_ref = F.attention(Tensor(q), Tensor(k), Tensor(v), causal=True, padding_mask=pad).data
print("max |numpy - reference| =", np.abs(O_numpy - O_ref).max())
print("probabilities on padded keys:", P[1, :, :, 6:].max())
print("gradcheck:", gradcheck(lambda a, b, c: F.attention(a, b, c, causal=True, padding_mask=pad),
                              [Tensor(q, requires_grad=True), Tensor(k, requires_grad=True),
                               Tensor(v, requires_grad=True)]))

# %% [markdown]
# ## Causality, two ways
# **Outputs:** change the token at position 5 of a small GPT's input; the logits at positions
# 0..4 must not move. **Gradients:** backpropagate from the output at position 4 only; no
# gradient may reach the keys or values of positions 5..7.

# %%
cfg = minigpt.GPTConfig(vocab_size=20, n_ctx=16, n_layer=2, n_embd=16, n_head=2,
                        dtype="float64")
model = minigpt.GPT(cfg, seed=1).eval()
idx = rng.integers(0, 20, (1, 8))
changed = idx.copy()
changed[0, 5] = (idx[0, 5] + 1) % 20
a, b = model(idx).data, model(changed).data
moved = np.abs(a - b).max(axis=-1)[0]
print("largest logit change per position:", np.round(moved, 6))

qt, kt, vt = (Tensor(x[:, :, :8], requires_grad=True) for x in (q, k, v))
out = F.attention(qt, kt, vt, causal=True)
G = np.zeros(out.shape)
G[:, :, 4] = rng.standard_normal((B, nh, hs))               # dL/dO only at position 4
out.backward(G)
print("|dK| per key position:", np.round(np.abs(kt.grad).sum(axis=(0, 1, 3)), 4))

# %% [markdown]
# ## The KV cache
# When generating, position $t$ needs the keys and values of positions $0..t$. Those of the
# earlier positions do not change (causality!), so the model keeps them: each new token runs
# through the network alone, with a query of length 1 against the cached keys (the "cached"
# mask above). `GPT.hidden_states(idx, cache=...)` fills a list with one `{"k", "v"}` per layer.

# %%
prompt = rng.integers(0, 20, (1, 4))
cache = []
with minigpt.no_grad():
    logits = [model(prompt, cache=cache).data[:, -1]]
    seq = prompt
    for step in range(4):
        nxt = np.array([[int(np.argmax(logits[-1]))]])
        seq = np.concatenate([seq, nxt], axis=1)
        logits.append(model(nxt, cache=cache).data[:, -1])      # one token in, one row out
        print(f"step {step}: cache k {cache[0]['k'].shape} (B, nh, T so far, hs)")
    full = model(seq).data                                      # everything recomputed
cached_vs_full = max(np.abs(l - full[:, i]).max()
                     for l, i in zip(logits, range(3, seq.shape[1])))
print("max |cached - recomputed logits| =", cached_vs_full)

# %% [markdown]
# The work per new token drops from the whole window to one position; the cost is the memory
# of the cache, $2 \cdot n_{layer} \cdot T \cdot C$ numbers per sequence.

# %%
from minigpt.sample import generate
big = minigpt.GPT(minigpt.GPTConfig(vocab_size=65, n_ctx=128, n_layer=2, n_embd=64, n_head=4), seed=0).eval()
timings = {}
for use_cache in (True, False):
    t0 = time.perf_counter()
    generate(big, [1, 2, 3], 100, temperature=0, use_cache=use_cache)
    timings[use_cache] = time.perf_counter() - t0
print(f"100 tokens: with cache {timings[True]:.2f} s, without {timings[False]:.2f} s")

# %% [markdown]
# ## Exercises
# 1. Draw `attention_mask(3, 8, causal=True, padding_mask=pad)[1, 0]`: which rule wins where
#    they disagree?
# 2. A query row whose keys are all hidden would divide 0 by 0. Find the line of the
#    reference op that keeps such a row at 0, and build an input that needs it.
# 3. Why must a padded *query* row still produce a finite output, although its value is never
#    used by a loss?

# %%
assert np.abs(O_numpy - O_ref).max() < 1e-12
assert P[1, :, :, 6:].max() == 0.0
assert moved[:5].max() < 1e-12 and moved[5:].min() > 1e-6
assert not kt.grad[:, :, 5:].any() and not vt.grad[:, :, 5:].any()
assert np.abs(kt.grad[:, :, :5]).sum() > 0
assert cached_vs_full < 1e-10
assert masks["cached: 3 new queries, 8 keys"].sum(axis=1).tolist() == [6, 7, 8]
print("all claims hold")
