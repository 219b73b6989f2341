# %% [markdown]
# # 3. Masked self-attention
#
# Each position mixes the value vectors of the positions it may see:
# $O = \text{softmax}\big(\text{mask}(QK^T/\sqrt{d})\big)\,V$. In a language model a position
# may see itself and the past, never the future (the *causal* mask), and no position may see
# padding. This notebook starts from what attention is for (a soft dictionary lookup),
# measures why the scores are divided by $\sqrt{d}$, splits the width into heads, draws the
# masks, checks the reference op against your own NumPy, checks causality on many inputs and
# in the Jacobian, and shows the KV cache that makes generation cheap.

# %%
import inspect
import numpy as np
import matplotlib.pyplot as plt
import minigpt
from minigpt import Tensor, gradcheck
import minigpt.functional as F
from minigpt.ops import Attention, attention_mask

rng = np.random.default_rng(0)
minigpt.use("reference")  # run the reference ops of minigpt/ops/, the code shown here
plt.rcParams["figure.dpi"] = 120

# %% [markdown]
# ## A soft dictionary lookup
# A Python dict maps a query to the value whose key *equals* it. Attention relaxes both halves:
# the query is compared with every key by a dot product (a similarity, not an equality), the
# similarities become weights by a softmax (positive, summing to 1), and the answer is the
# weighted average of the values. When one key matches far better than the others the
# weights approach one-hot and attention *is* the dict lookup; otherwise it blends. Every
# position of a sequence asks its own query, against keys and values computed from the
# positions it may see.

# %%
keys = np.array([[4.0, 0.0], [0.0, 4.0], [-4.0, 0.0]])      # three entries of a "dictionary"
values = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
for query in (np.array([3.0, 0.0]), np.array([1.0, 1.0]), np.array([0.0, 0.0])):
    scores = keys @ query                                     # (3,): one similarity per key
    w = np.exp(scores - scores.max())
    w /= w.sum()                                              # softmax: weights summing to 1
    print(f"query {query}: weights {np.round(w, 3)}, answer {np.round(w @ values, 3)}")
lookup_weights = np.exp(keys @ [3.0, 0.0] - (keys @ [3.0, 0.0]).max())
lookup_weights /= lookup_weights.sum()

# %% [markdown]
# ## Why divide by $\sqrt{d}$
# If the entries of $q$ and $k$ are independent with mean 0 and variance 1, then
# $q\cdot k = \sum_{i=1}^{d} q_i k_i$ is a sum of $d$ terms of variance 1: its variance is
# $d$. With $d = 64$ (GPT-1's head size) the scores spread over $\pm 16$, the softmax puts
# almost all weight on one key and its gradient vanishes. Dividing by $\sqrt d$ brings the
# variance back to 1 whatever the head size. Measured:

# %%
dims = [4, 16, 64, 256]
var_raw, var_scaled, top_raw, top_scaled = [], [], [], []
for d in dims:
    qs, ks = rng.standard_normal((2, 4000, 16, d))           # 4000 queries, 16 keys each
    sc = np.einsum("nd,nkd->nk", qs[:, 0], ks)               # (4000, 16) raw scores
    var_raw.append(sc.var())
    var_scaled.append((sc / np.sqrt(d)).var())
    for scores, out in ((sc, top_raw), (sc / np.sqrt(d), top_scaled)):
        p = np.exp(scores - scores.max(1, keepdims=True))
        out.append((p / p.sum(1, keepdims=True)).max(1).mean())   # mean largest weight
for d, a, b_, c_, e in zip(dims, var_raw, var_scaled, top_raw, top_scaled):
    print(f"d = {d:3d}: var(q.k) = {a:6.1f}, var(q.k / sqrt d) = {b_:.2f};  "
          f"largest softmax weight over 16 keys: {c_:.2f} raw, {e:.2f} scaled")
fig, ax = plt.subplots(figsize=(5.5, 3.2))
ax.loglog(dims, var_raw, "o-", label="var(q . k)")
ax.loglog(dims, var_scaled, "s-", label="var(q . k / sqrt(d))")
ax.loglog(dims, dims, ":", color="gray", label="d")
ax.set_xlabel("head size d")
ax.set_ylabel("variance of the score")
ax.set_xticks(dims)
ax.set_xticklabels(dims)
ax.legend()
ax.set_title("unit-variance q and k: the score's variance")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Many heads: parallel lookups in subspaces
# GPT-1 does not run one lookup over the full width $C = 768$ but 12 of width $hs = 64$ side
# by side: columns $64h .. 64h+63$ of $q$, $k$ and $v$ belong to head $h$, which has its own
# scores and its own softmax, so different heads can look for different things. The reshape
# `(B, T, C) -> (B, T, nh, hs) -> transpose -> (B, nh, T, hs)` only regroups the columns; the
# picture colours each column of $q$ by the head that reads it.

# %%
Bd, Td, Cd, nhd = 1, 5, 12, 3
hsd = Cd // nhd
cols = np.tile(np.arange(Cd), (Td, 1))                     # (T, C): column index of each entry
heads = cols // hsd                                          # which head reads each column
split = cols.reshape(Td, nhd, hsd).transpose(1, 0, 2)        # (nh, T, hs), as the model does
fig, axes = plt.subplots(1, nhd + 1, figsize=(11, 2.6),
                         gridspec_kw={"width_ratios": [Cd] + [hsd] * nhd})
axes[0].imshow(heads, cmap="Set2", vmin=0, vmax=7, aspect="auto")
axes[0].set_title("q: (T, C), columns by head", fontsize=10)
axes[0].set_xlabel("column of q (0..C-1)")
axes[0].set_ylabel("position t")
axes[0].set_xticks(range(Cd))
for h in range(nhd):
    axes[h + 1].imshow(split[h] // hsd, cmap="Set2", vmin=0, vmax=7, aspect="auto")
    for (i, j), col in np.ndenumerate(split[h]):
        axes[h + 1].text(j, i, col, ha="center", va="center", fontsize=8)
    axes[h + 1].set_title(f"head {h}: (T, hs)", fontsize=10)
    axes[h + 1].set_xlabel("column within the head")
    axes[h + 1].set_xticks(range(hsd))
    axes[h + 1].set_yticks([])
for i in range(Td):
    for j in range(Cd):
        axes[0].text(j, i, cols[i, j], ha="center", va="center", fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Multi-head attention is exactly `nh` single-head attentions on those column slices, put back
# side by side:

# %%
Bm, Tm, Cm, nhm = 2, 7, 12, 3
hsm = Cm // nhm
qm, km, vm = (rng.standard_normal((Bm, Tm, Cm)) for _ in range(3))
to_heads = lambda x: x.reshape(Bm, Tm, nhm, hsm).transpose(0, 2, 1, 3)   # (B, nh, T, hs)
multi = F.attention(Tensor(to_heads(qm)), Tensor(to_heads(km)), Tensor(to_heads(vm)),
                    causal=True).data.transpose(0, 2, 1, 3).reshape(Bm, Tm, Cm)  # (B, T, C)
one_by_one = np.concatenate(
    [F.attention(Tensor(qm[:, None, :, sl]), Tensor(km[:, None, :, sl]), Tensor(vm[:, None, :, sl]),
                 causal=True).data[:, 0]                      # one head: (B, T, hs)
     for sl in (slice(h * hsm, (h + 1) * hsm) for h in range(nhm))], axis=-1)
heads_diff = np.abs(multi - one_by_one).max()
print("max |multi-head - heads one by one, concatenated| =", heads_diff)

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
    ax.set_xlabel("key position j")
    ax.set_xticks(range(m.shape[1]))
    ax.set_yticks(range(m.shape[0]))
    ax.set_ylabel("query row i")
fig.suptitle("dark: query i sees key j; white: hidden", fontsize=10)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The reference op
# Hidden scores become $-\infty$ before the softmax, so their probability is exactly 0. The
# backward has four matrix products and the softmax between them: $dV = P^T dO$ and
# $dP = dO\,V^T$ (through $O = PV$); $dS = P \odot (dP - \text{rowsum}(dP \odot P))$ (the
# softmax of each row); $dQ = dS\,K/\sqrt{hs}$ and $dK = dS^T Q/\sqrt{hs}$ (through
# $S = QK^T/\sqrt{hs}$: the scale of the forward comes back in both).

# %%
print(inspect.getsource(Attention))

# %% [markdown]
# ## Exercise: the same numbers in your own NumPy
# Write the forward with NumPy only: scores, mask, a stable softmax, the weighted sum. The
# check compares it with the reference op and prints the relative error. (The graded version
# is task `attention.forward` of `minigpt assignments`; the backward is `attention.dq`,
# `attention.dk`, `attention.dv`, written out in notebook 12.)

# %%
def attention_numpy(q, k, v, mask):
    """q, k, v (B, nh, T, hs); mask (T, T) or (B, 1, T, T), True where a query sees a key.
    Returns the output (B, nh, T, hs) and the probabilities P (B, nh, T, T)."""
    # TODO: scores scaled by 1/sqrt(hs), hidden ones -inf, softmax over keys, then P @ v
    ### BEGIN SOLUTION
    S = q @ k.swapaxes(-1, -2) / np.sqrt(q.shape[-1])        # (B, nh, T, T)
    S = np.where(mask, S, -np.inf)
    P = np.exp(S - S.max(-1, keepdims=True))
    P /= P.sum(-1, keepdims=True)
    return P @ v, P                                           # (B, nh, T, hs)
    ### END SOLUTION

# %%
B, nh, T, hs = 2, 3, 8, 4
q, k, v = (rng.standard_normal((B, nh, T, hs)) for _ in range(3))
O_numpy, P = attention_numpy(q, k, v, attention_mask(T, T, True, pad))
O_ref = F.attention(Tensor(q), Tensor(k), Tensor(v), causal=True, padding_mask=pad).data
rel_error = np.abs(O_numpy - O_ref).max() / np.abs(O_ref).max()
print(f"relative error against the reference op: {rel_error:.1e} (should be below 1e-12)")
print("probabilities on padded keys:", P[1, :, :, 6:].max())
print("every row of P sums to 1:", np.allclose(P.sum(-1), 1))
print("gradcheck:", gradcheck(lambda a, b, c: F.attention(a, b, c, causal=True, padding_mask=pad),
                              [Tensor(q, requires_grad=True), Tensor(k, requires_grad=True),
                               Tensor(v, requires_grad=True)]))

# %% [markdown]
# ## Causality, on many inputs and in the Jacobian
# **Outputs:** change the token at one position $p$ of a small GPT's input; the logits at
# positions before $p$ must not move, on every one of 200 random sequences and positions (one
# input proves nothing: a leak can hide behind a particular input). **Jacobian:** the
# derivative of the last block's output at position $i$ with respect to the input vector at
# position $j$ must be exactly zero for every $j > i$, whatever the weights; its norm, drawn
# for all $(i, j)$, is lower triangular.

# %%
cfg = minigpt.GPTConfig(vocab_size=20, n_ctx=16, n_layer=2, n_embd=16, n_head=2,
                        dtype="float64")
model = minigpt.GPT(cfg, seed=1).eval()
T8 = 8
leak, moved_after = 0.0, []
with minigpt.no_grad():
    for trial in range(200):
        idx = rng.integers(0, 20, (1, T8))
        p = int(rng.integers(1, T8))
        changed = idx.copy()
        changed[0, p] = (idx[0, p] + int(rng.integers(1, 20))) % 20
        moved = np.abs(model(idx).data - model(changed).data).max(axis=-1)[0]   # (T,)
        leak = max(leak, moved[:p].max())
        moved_after.append(moved[p:].min())
print(f"200 random changes: largest move before the changed position {leak:.1e}; "
      f"smallest move at or after it {min(moved_after):.1e}")

h_in = Tensor(rng.standard_normal((1, T8, 16)), requires_grad=True)   # block inputs (1, T, C)
J = np.zeros((T8, T8))                    # J[i, j] = |d out[i] / d input[j]| (Frobenius norm)
for i in range(T8):
    for c_out in range(16):               # one backward per output coordinate of position i
        h_in.grad = None
        out = model.h[1](model.h[0](h_in))
        G = np.zeros(out.shape)
        G[0, i, c_out] = 1.0
        out.backward(G)
        J[i] += (h_in.grad[0] ** 2).sum(-1)
J = np.sqrt(J)
fig, ax = plt.subplots(figsize=(4.6, 3.8))
im = ax.imshow(np.log10(J + 1e-300), cmap="magma", vmin=-3, vmax=np.log10(J.max()))
ax.set_xlabel("input position j")
ax.set_ylabel("output position i")
ax.set_xticks(range(T8))
ax.set_yticks(range(T8))
ax.set_title("|d out_i / d in_j| of two blocks")
fig.colorbar(im, ax=ax, label="log10 of the norm (black: exactly 0)")
plt.tight_layout()
plt.show()
print("Jacobian blocks above the diagonal that are exactly zero:",
      int((J[np.triu_indices(T8, 1)] == 0).sum()), "of", T8 * (T8 - 1) // 2)

# %% [markdown]
# Gradients flow the same way through the op itself: backpropagate from the output at
# position 4 only, and no gradient reaches the keys or values of positions 5..7.

# %%
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
# of the cache, $2 \cdot n_{layer} \cdot T \cdot C$ numbers per sequence. Counted in score
# entries ($q\cdot k$ products) per layer and head for 100 new tokens after a 3-token prompt:

# %%
n_prompt, n_new = 3, 100
lengths = range(n_prompt, n_prompt + n_new)           # the input's length at each of 100 passes
with_cache = n_prompt ** 2 + sum(lengths[1:])         # the prompt once, then one query a pass
without = sum(L * L for L in lengths)                 # every query, every pass
print(f"score entries: with the cache {with_cache:,}, recomputing everything {without:,} "
      f"({without / with_cache:.0f}x more)")

# %% [markdown]
# ## Exercises
# 1. (Above) `attention_numpy`: the check prints its relative error against the library.
# 2. Draw `attention_mask(3, 8, causal=True, padding_mask=pad)[1, 0]`: which rule wins where
#    they disagree?
# 3. A query row whose keys are all hidden would divide 0 by 0. Find the line of the
#    reference op that keeps such a row at 0, and build an input that needs it.
# 4. Repeat the variance measurement with $q$ and $k$ of standard deviation 0.02 (GPT-1's
#    initialisation scale, before any LayerNorm): are the scores too large or too small?

# %%
assert np.isclose(lookup_weights.max(), 1, atol=1e-4)       # a clear match: a dict lookup
for d, a, b_ in zip(dims, var_raw, var_scaled):
    assert abs(a / d - 1) < 0.1 and abs(b_ - 1) < 0.1       # var(q.k) = d; scaled: 1
assert top_raw[-1] > 0.8 and top_scaled[-1] < 0.5          # unscaled: nearly one-hot
assert heads_diff < 1e-12
assert rel_error < 1e-12
assert P[1, :, :, 6:].max() == 0.0 and np.allclose(P.sum(-1), 1)
assert leak == 0.0 and min(moved_after) > 1e-6
assert (J[np.triu_indices(T8, 1)] == 0).all() and (J[np.tril_indices(T8)] > 0).all()
assert not kt.grad[:, :, 5:].any() and not vt.grad[:, :, 5:].any()
assert np.abs(kt.grad[:, :, :5]).sum() > 0
assert cached_vs_full < 1e-10
assert masks["cached: 3 new queries, 8 keys"].sum(axis=1).tolist() == [6, 7, 8]
print("all claims hold")
