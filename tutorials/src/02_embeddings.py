# %% [markdown]
# # 2. Token and position embeddings
#
# GPT-1's first layer turns token ids into vectors: $h_0 = W_e[\text{ids}] + W_p[0..T-1]$.
# A lookup is a matrix product with one-hot rows, and its backward is a *scatter-add*: a
# token that appears three times in the batch collects three gradients. Getting that "add"
# wrong is the classic embedding bug; this notebook makes it and catches it.

# %%
import inspect
import numpy as np
import matplotlib.pyplot as plt
import minigpt
from minigpt import Tensor, Function, gradcheck, GradcheckError
import minigpt.functional as F
from minigpt.ops.embedding import Embedding

rng = np.random.default_rng(0)
minigpt.use("reference")  # run the reference ops of minigpt/ops/, the code shown here
plt.rcParams["figure.dpi"] = 120

# %% [markdown]
# ## The reference op
# The forward is one line; the backward adds each upstream row into the row of `W` it came
# from. `np.add.at` adds once per occurrence, so repeated ids accumulate.

# %%
print(inspect.getsource(Embedding))

# %% [markdown]
# ## A lookup is a one-hot matrix product
# Row $v$ of `W` is `one_hot(v) @ W`. The lookup skips the $V$-wide product (GPT-1: 40,478
# columns) but computes the same numbers, so its gradient must be the same too:
# $dW = \text{one\_hot}^T G$.

# %%
V, C = 10, 4
W = Tensor(rng.standard_normal((V, C)), requires_grad=True)
ids = np.array([[3, 1, 3, 7], [3, 0, 9, 1]])          # (B, T) = (2, 4); id 3 three times
y = F.embedding(ids, W)                                 # (2, 4, C)
one_hot = np.eye(V)[ids]                                # (2, 4, V)
print("lookup == one_hot @ W:", np.allclose(y.data, one_hot @ W.data))
G = rng.standard_normal(y.shape)                        # a random upstream gradient
y.backward(G)
dW_onehot = one_hot.reshape(-1, V).T @ G.reshape(-1, C)  # (V, N) @ (N, C)
print("dW == one_hot^T G:", np.allclose(W.grad, dW_onehot))
counts = np.bincount(ids.ravel(), minlength=V)
print("uses per id:", counts)
print("rows of dW that are zero (unused ids):", np.where(~W.grad.any(axis=1))[0])

# %% [markdown]
# ## The bug: assignment instead of addition
# `dW[ids] = G` writes each row once; with repeated ids the last write wins and the other
# contributions are lost. With ids that never repeat the bug is invisible, which is why the
# test inputs must repeat ids.

# %%
class OverwritingEmbedding(Function):
    def forward(self, weight, idx=None):
        self.idx, self.shape = idx, weight.shape
        return weight[idx]

    def backward(self, g):
        dW = np.zeros(self.shape, dtype=g.dtype)
        dW[self.idx.reshape(-1)] = g.reshape(-1, self.shape[1])   # wrong: overwrites
        return (dW,)

W2 = Tensor(rng.standard_normal((V, C)), requires_grad=True)
unique_ids = np.array([[0, 1, 2, 3]])
print("unique ids:   ", gradcheck(lambda w: OverwritingEmbedding.apply(w, idx=unique_ids), [W2]))
try:
    gradcheck(lambda w: OverwritingEmbedding.apply(w, idx=ids), [W2])
    overwrite_caught = False
except GradcheckError as e:
    overwrite_caught = True
    print("repeated ids:", e)
print("reference op: ", gradcheck(lambda w: F.embedding(ids, w), [W2]))

# %% [markdown]
# With an all-ones upstream gradient, each row of $dW$ is (uses of that id) times a row of
# ones: the gradient norm of a row grows with the number of times its token was seen.

# %%
W3 = Tensor(rng.standard_normal((V, C)), requires_grad=True)
batch = rng.integers(0, V, (8, 16))
F.embedding(batch, W3).backward(np.ones((8, 16, C)))
uses = np.bincount(batch.ravel(), minlength=V)
fig, ax = plt.subplots(figsize=(6, 3))
ax.bar(np.arange(V) - 0.2, uses, width=0.4, label="uses of the id")
ax.bar(np.arange(V) + 0.2, np.linalg.norm(W3.grad, axis=1) / np.sqrt(C), width=0.4,
       label="|dW[id]| / sqrt(C)")
ax.set_xlabel("token id")
ax.set_ylabel("count / gradient norm")
ax.set_xticks(range(V))
ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Position embeddings
# GPT-1 learns a second table $W_p$ (512 rows, one per position). The model adds
# `positions_embed(arange(T))` of shape (1, T, C) to the token vectors of shape (B, T, C):
# broadcasting over the batch, so in the backward each position's row collects the sum over
# the batch. Here is the model doing it, checked by hand.

# %%
cfg = minigpt.GPTConfig(vocab_size=V, n_ctx=8, n_layer=1, n_embd=C, n_head=1,
                        embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0, dtype="float64")
model = minigpt.GPT(cfg, seed=0)
idx = rng.integers(0, V, (3, 5))
pos = np.arange(5)[None, :]                                       # (1, T)
h0 = F.embedding(idx, model.tokens_embed.weight) + F.embedding(pos, model.positions_embed.weight)
G = rng.standard_normal(h0.shape)
h0.backward(G)
print("dW_p[t] == sum over the batch of G[:, t]:",
      np.allclose(model.positions_embed.weight.grad[:5], G.sum(axis=0)))
print("positions never reached (5..7) get zero:",
      not model.positions_embed.weight.grad[5:].any())
expected_h0 = model.tokens_embed.weight.data[idx] + model.positions_embed.weight.data[:5]
print("h0 = W_e[ids] + W_p[:T]:", np.allclose(h0.data, expected_h0))

# %% [markdown]
# ## Learned positions, not sinusoids
# The Transformer paper (Vaswani et al. 2017) *computes* its position vectors:
# $PE[t, 2i] = \sin(t / 10000^{2i/C})$, $PE[t, 2i+1] = \cos(t / 10000^{2i/C})$, nothing to
# train. GPT-1 does not use them: it *learns* $W_p$, a 512 x 768 parameter matrix (one row per
# position of its 512-token context), initialised like every other weight and trained with
# them; the released weights carry it as a tensor of that shape. minigpt does the same
# (`positions_embed`, an `Embedding(n_ctx, n_embd)`): the left picture is its $W_p$ at
# initialisation (random: training gives it structure), the right one the sinusoids.

# %%
gpt1 = minigpt.GPTConfig.preset("gpt1")
Wp_shape = dict(model.named_parameters())["positions_embed.weight"].shape
print(f"GPT-1 preset: n_ctx = {gpt1.n_ctx}, n_embd = {gpt1.n_embd} -> W_p is "
      f"({gpt1.n_ctx}, {gpt1.n_embd}); this notebook's small model: W_p {Wp_shape}, a parameter "
      f"trained like the others: {'positions_embed.weight' in dict(model.named_parameters())}")
Tp, Cp = 64, 32
pos_model = minigpt.GPT(minigpt.GPTConfig(vocab_size=10, n_ctx=Tp, n_layer=1, n_embd=Cp, n_head=1), seed=0)
learned = pos_model.positions_embed.weight.data
t_, i_ = np.arange(Tp)[:, None], np.arange(0, Cp, 2)[None, :]
sinusoid = np.zeros((Tp, Cp))
sinusoid[:, 0::2] = np.sin(t_ / 10000 ** (i_ / Cp))
sinusoid[:, 1::2] = np.cos(t_ / 10000 ** (i_ / Cp))
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
for ax, M, title in ((axes[0], learned, "learned W_p (minigpt, GPT-1), at init"),
                     (axes[1], sinusoid, "sinusoidal (Transformer), fixed")):
    im = ax.imshow(M, cmap="RdBu", aspect="auto", vmin=-abs(M).max(), vmax=abs(M).max())
    ax.set_xlabel("embedding dimension")
    ax.set_ylabel("position t")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label="value")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## What attention sees without them
# Without position embeddings, *unmasked* attention sees a set: permuting the input rows
# permutes the output rows the same way and changes nothing else (it is permutation
# equivariant). A causal GPT is different: position $t$ attends to the first $t+1$ inputs
# only, so the order changes what each position sees and permuting the input does **not**
# just permute the output. Measured, on a two-block model with $W_p$ set to zero (weights
# drawn with standard deviation 0.2 instead of GPT-1's 0.02, so that attention is far from
# uniform and the effect is large; at 0.02 it is there too, about 1e-3):

# %%
nopos = minigpt.GPT(minigpt.GPTConfig(vocab_size=V, n_ctx=8, n_layer=2, n_embd=16, n_head=2,
                                      embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0,
                                      initializer_range=0.2, dtype="float64"), seed=0).eval()
nopos.positions_embed.weight.data[...] = 0.0
seq = np.array([[1, 5, 2, 8, 3, 9]])
perm = np.array([3, 0, 4, 1, 2, 5])                       # keeps the last token last
xs_ = rng.standard_normal((1, 2, 6, 4))                    # (B, nh, T, hs): q = k = v = xs_
unmasked = lambda x: F.attention(Tensor(x), Tensor(x), Tensor(x), causal=False).data
diff_unmasked = np.abs(unmasked(xs_[:, :, perm]) - unmasked(xs_)[:, :, perm]).max()
with minigpt.no_grad():
    out, out_perm = nopos(seq).data, nopos(seq[:, perm]).data
diff_causal = np.abs(out_perm - out[:, perm]).max()
print(f"unmasked attention: max |f(permuted x) - permuted f(x)| = {diff_unmasked:.1e}")
print(f"causal GPT without W_p: max |f(permuted x) - permuted f(x)| = {diff_causal:.1e}")

# %% [markdown]
# Where does the order get in? The permutation above keeps the last token last. In one causal
# attention layer, the last query sees every key, the same set in any order, so its output
# does not change; the other positions see
# different prefixes. Stack a second layer and the last position reads those
# prefix-dependent outputs: now it depends on the order too. So a causal model gets *some*
# order information from its mask alone; GPT-1 still gives every position a learned vector
# of its own, and the same token at two positions is two different inputs:

# %%
causal = lambda x: F.attention(Tensor(x), Tensor(x), Tensor(x), causal=True).data
one_layer_last = np.abs(causal(xs_[:, :, perm])[:, :, -1] - causal(xs_)[:, :, -1]).max()
two_layers_last = np.abs(out_perm[0, -1] - out[0, -1]).max()
tok = np.array([[4, 4]])
h = F.embedding(tok, model.tokens_embed.weight) + F.embedding(np.arange(2)[None], model.positions_embed.weight)
print(f"one causal layer: the last position's output moves by {one_layer_last:.1e} when the "
      f"input is permuted")
print(f"two-block GPT without W_p: the last position's logits move by {two_layers_last:.1e}")
print("with W_p, the same token at positions 0 and 1 gets two different vectors:",
      not np.allclose(h.data[0, 0], h.data[0, 1]))

# %% [markdown]
# ## Exercise: the scatter-add with `np.bincount`
# Write the embedding's backward without `np.add.at`: for each column $c$,
# `np.bincount(ids, weights=g[:, c], minlength=V)` adds up the upstream rows per id. The check
# compares with the library's gradient. (Graded version: task `layers.embedding` of
# `minigpt assignments`.)

# %%
def embedding_backward_bincount(ids, g, V):
    """dW (V, C) of y = W[ids], from ids (N,) and the upstream gradient g (N, C)."""
    # TODO: one np.bincount per column, stacked into (V, C)
    ### BEGIN SOLUTION
    return np.stack([np.bincount(ids, weights=g[:, c], minlength=V) for c in range(g.shape[1])],
                    axis=1)
    ### END SOLUTION

Wx = Tensor(rng.standard_normal((V, C)), requires_grad=True)
Gx = rng.standard_normal((2, 4, C))
F.embedding(ids, Wx).backward(Gx)
mine = embedding_backward_bincount(ids.reshape(-1), Gx.reshape(-1, C), V)
bincount_error = np.abs(mine - Wx.grad).max() / np.abs(Wx.grad).max()
print(f"relative error against the library: {bincount_error:.1e} (should be below 1e-12)")

# %% [markdown]
# ## More exercises
# 1. GPT-1 ties the output layer to $W_e$ (`logits = h @ W_e^T`). Which two ops send gradient
#    into `tokens_embed.weight`? (Notebook 12 writes both by hand.)
# 2. Why is an embedding with $V=40{,}478$ rows cheap in the forward but its gradient a full
#    $(V, C)$ array? What does the optimizer do with the rows no token in the batch used?

# %%
assert overwrite_caught
assert np.allclose(W.grad, dW_onehot)
assert np.allclose(np.linalg.norm(W3.grad, axis=1), uses * np.sqrt(C))
assert np.allclose(model.positions_embed.weight.grad[:5], G.sum(axis=0))
assert not model.positions_embed.weight.grad[5:].any()
assert (gpt1.n_ctx, gpt1.n_embd) == (512, 768) and Wp_shape == (cfg.n_ctx, cfg.n_embd)
assert diff_unmasked < 1e-12                 # unmasked attention: permutation equivariant
assert diff_causal > 1e-6                    # a causal model: not just a permuted output
assert one_layer_last < 1e-12                # one layer: the last query sees the same set
assert two_layers_last > 1e-6                # two layers: it reads prefix-dependent outputs
assert not np.allclose(h.data[0, 0], h.data[0, 1])
assert bincount_error < 1e-12
print("all claims hold")
