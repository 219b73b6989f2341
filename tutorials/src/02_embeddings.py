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
plt.rcParams["figure.dpi"] = 72

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
ax.legend()
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
# Without position embeddings attention would see a *set* of tokens: permuting the input
# would just permute the output. With them, the same token at two positions gets two
# different vectors.

# %%
tok = np.array([[4, 4]])
h = F.embedding(tok, model.tokens_embed.weight) + F.embedding(np.arange(2)[None], model.positions_embed.weight)
print("same token, positions 0 and 1 differ:", not np.allclose(h.data[0, 0], h.data[0, 1]))

# %% [markdown]
# ## Exercises
# 1. GPT-1 ties the output layer to $W_e$ (`logits = h @ W_e^T`). Which two ops send gradient
#    into `tokens_embed.weight`? (Look at `minigpt.trace` in notebook 6.)
# 2. Replace `np.add.at` by `np.bincount`-style accumulation (loop over C columns with
#    `np.bincount(ids, weights=g[:, c], minlength=V)`) and check it with gradcheck.
# 3. Why is an embedding with $V=40{,}478$ rows cheap in the forward but its gradient a full
#    $(V, C)$ array? What does the optimizer do with the rows no token in the batch used?

# %%
assert overwrite_caught
assert np.allclose(W.grad, dW_onehot)
assert np.allclose(np.linalg.norm(W3.grad, axis=1), uses * np.sqrt(C))
assert np.allclose(model.positions_embed.weight.grad[:5], G.sum(axis=0))
assert not model.positions_embed.weight.grad[5:].any()
print("all claims hold")
