# %% [markdown]
# # 12. Backprop by hand through GPT-1
#
# Every op in minigpt has a hand-written backward, checked by gradcheck one op at a time. This
# notebook does what autograd does for a whole model, by hand: one GPT-1 block with its
# embeddings, tied output layer and loss, forward in plain NumPy, then **every gradient
# written out** from the loss back to the token ids, each compared with autograd's, tensor by
# tensor, in float64. (This is makemore part 4, "becoming a backprop ninja", for a
# transformer.) Each step is an exercise: the TODO names what to compute, and the `cmp` line
# under it prints how far your answer is from autograd's.
#
# The model (post-LN, as GPT-1):
#
# $$h_0 = W_e[\text{ids}] + W_p[0..T-1],\quad n = \text{LN}_1(h_0 + \text{Attn}(h_0)),\quad
#   h_1 = \text{LN}_2(n + \text{MLP}(n)),\quad \text{logits} = h_1 W_e^T,\quad
#   L = \tfrac1N \sum -\log \text{softmax}(\text{logits})[\text{target}]$$

# %%
import numpy as np
import minigpt
from minigpt import Tensor
import minigpt.functional as F
from minigpt.ops import attention_mask

minigpt.use("reference")
rng = np.random.default_rng(0)

B, T, C, nh, V = 3, 6, 16, 2, 11          # batch, time, width, heads, vocabulary
hs = C // nh                              # head size
cfg = minigpt.GPTConfig(vocab_size=V, n_ctx=8, n_layer=1, n_embd=C, n_head=nh,
                        embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0, dtype="float64")
model = minigpt.GPT(cfg, seed=0)
# GPT-1 starts its weights at N(0, 0.02): gradients that small hide mistakes of a factor of 2
# in a table of tiny numbers. Bigger random weights make every gradient clearly non-zero.
for name, p in model.named_parameters():
    p.data[...] = rng.standard_normal(p.shape) * (0.3 if p.ndim == 2 else 0.1) \
        + (1.0 if name.endswith(("ln_1.weight", "ln_2.weight")) else 0.0)
idx = rng.integers(0, V, (B, T))
targets = rng.integers(0, V, (B, T))
P_ = {n: p.data for n, p in model.named_parameters()}     # the weights, as NumPy arrays
for n, p in P_.items():
    print(f"{n:26s} {str(p.shape):10s}")

# %% [markdown]
# ## The forward pass, one small step per line
# Every intermediate gets a name, so that its gradient can get one too.

# %%
We, Wp = P_["tokens_embed.weight"], P_["positions_embed.weight"]
Wa, ba = P_["h.0.attn.c_attn.weight"], P_["h.0.attn.c_attn.bias"]
Wo, bo = P_["h.0.attn.c_proj.weight"], P_["h.0.attn.c_proj.bias"]
g1, b1 = P_["h.0.ln_1.weight"], P_["h.0.ln_1.bias"]
Wf, bf = P_["h.0.mlp.c_fc.weight"], P_["h.0.mlp.c_fc.bias"]
Wm, bm = P_["h.0.mlp.c_proj.weight"], P_["h.0.mlp.c_proj.bias"]
g2, b2 = P_["h.0.ln_2.weight"], P_["h.0.ln_2.bias"]
eps = cfg.layer_norm_epsilon
c = np.sqrt(2 / np.pi)
mask = attention_mask(T, T, causal=True)                # (T, T) True where a query sees a key

h0 = We[idx] + Wp[:T]                                   # (B, T, C)
qkv = h0 @ Wa + ba                                      # (B, T, 3C)
q, k, v = qkv.reshape(B, T, 3, nh, hs).transpose(2, 0, 3, 1, 4)   # each (B, nh, T, hs)
S = np.where(mask, q @ k.swapaxes(-1, -2) / np.sqrt(hs), -np.inf)  # (B, nh, T, T)
E = np.exp(S - S.max(-1, keepdims=True))
P = E / E.sum(-1, keepdims=True)                        # (B, nh, T, T), rows sum to 1
Y = P @ v                                               # (B, nh, T, hs)
y = Y.transpose(0, 2, 1, 3).reshape(B, T, C)            # heads side by side: (B, T, C)
a = y @ Wo + bo                                         # (B, T, C)
r1 = h0 + a                                             # residual
mu1 = r1.mean(-1, keepdims=True)
rstd1 = 1 / np.sqrt(r1.var(-1, keepdims=True) + eps)    # (B, T, 1)
xh1 = (r1 - mu1) * rstd1
n = xh1 * g1 + b1                                       # LN_1: (B, T, C)
u = n @ Wf + bf                                         # (B, T, 4C)
t = np.tanh(c * (u + 0.044715 * u ** 3))
gl = 0.5 * u * (1 + t)                                  # GELU (tanh form)
m = gl @ Wm + bm                                        # (B, T, C)
r2 = n + m                                              # residual
mu2 = r2.mean(-1, keepdims=True)
rstd2 = 1 / np.sqrt(r2.var(-1, keepdims=True) + eps)
xh2 = (r2 - mu2) * rstd2
h1 = xh2 * g2 + b2                                      # LN_2: (B, T, C)
logits = h1 @ We.T                                      # tied output layer: (B, T, V)
zmax = logits.max(-1, keepdims=True)
logp = logits - zmax - np.log(np.exp(logits - zmax).sum(-1, keepdims=True))  # log softmax
N = B * T
loss = -logp[np.arange(B)[:, None], np.arange(T), targets].mean()
with minigpt.no_grad():
    loss_model = model.loss(idx, targets).item()
print(f"loss by hand {loss:.12f}, the model's {loss_model:.12f}")

# %% [markdown]
# ## Autograd's gradients, for every intermediate
# minigpt keeps `.grad` on leaves only. To get $\partial L/\partial X$ for an intermediate
# $X$, the same forward is written with the library's ops as a list of stages; it is run
# again from $X$ as a leaf, with everything computed before $X$ held fixed, and
# `backward()` fills `X.grad`. (That is exactly the gradient the hand-written chain rule
# computes: what flows into $X$ from everything downstream of it.) The parameter gradients
# come from one ordinary `model.loss(...).backward()`.

# %%
par = dict(model.named_parameters())
neg_inf = np.where(mask, 0.0, -np.inf)                  # added to the scores: the causal mask

STAGES = [   # name, function of the stages so far (Tensors)
    ("h0", lambda s: F.embedding(idx, par["tokens_embed.weight"])
        + F.embedding(np.arange(T)[None], par["positions_embed.weight"])),
    ("qkv", lambda s: F.linear(s["h0"], par["h.0.attn.c_attn.weight"], par["h.0.attn.c_attn.bias"])),
    ("q", lambda s: s["qkv"].reshape(B, T, 3, nh, hs).transpose(2, 0, 3, 1, 4)[0]),
    ("k", lambda s: s["qkv"].reshape(B, T, 3, nh, hs).transpose(2, 0, 3, 1, 4)[1]),
    ("v", lambda s: s["qkv"].reshape(B, T, 3, nh, hs).transpose(2, 0, 3, 1, 4)[2]),
    ("S", lambda s: s["q"] @ s["k"].transpose(0, 1, 3, 2) * (1 / np.sqrt(hs)) + Tensor(neg_inf)),
    ("P", lambda s: F.softmax(s["S"], axis=-1)),
    ("Y", lambda s: s["P"] @ s["v"]),
    ("y", lambda s: s["Y"].transpose(0, 2, 1, 3).reshape(B, T, C)),
    ("a", lambda s: F.linear(s["y"], par["h.0.attn.c_proj.weight"], par["h.0.attn.c_proj.bias"])),
    ("r1", lambda s: s["h0"] + s["a"]),
    ("n", lambda s: F.layer_norm(s["r1"], par["h.0.ln_1.weight"], par["h.0.ln_1.bias"])),
    ("u", lambda s: F.linear(s["n"], par["h.0.mlp.c_fc.weight"], par["h.0.mlp.c_fc.bias"])),
    ("gl", lambda s: F.gelu(s["u"])),
    ("m", lambda s: F.linear(s["gl"], par["h.0.mlp.c_proj.weight"], par["h.0.mlp.c_proj.bias"])),
    ("r2", lambda s: s["n"] + s["m"]),
    ("h1", lambda s: F.layer_norm(s["r2"], par["h.0.ln_2.weight"], par["h.0.ln_2.bias"])),
    ("logits", lambda s: F.linear(s["h1"], par["tokens_embed.weight"].T)),
]

def run_stages(cut=None):
    """The loss, with stage `cut` (if given) re-entered as a leaf; returns (loss, that leaf)."""
    with minigpt.no_grad():
        fixed = {}
        for name, f in STAGES:
            fixed[name] = Tensor(f(fixed).data)         # every stage's value, as a constant
    s, leaf, downstream = {}, None, cut is None
    for name, f in STAGES:
        if name == cut:
            s[name] = leaf = Tensor(fixed[name].data.copy(), requires_grad=True)
            downstream = True
        else:
            s[name] = f(s) if downstream else fixed[name]   # upstream of the cut: held fixed
    return F.cross_entropy(s["logits"], targets), leaf

ag = {}                                                  # autograd's dL/dX for every stage X
for name, _ in STAGES:
    loss_t, leaf = run_stages(cut=name)
    loss_t.backward()
    ag[name] = leaf.grad
model.zero_grad()
model.loss(idx, targets).backward()
ag.update({n: p.grad for n, p in model.named_parameters()})
staged_loss = run_stages()[0].item()
print(f"the staged forward gives the model's loss: {staged_loss:.12f}")

# %%
checked = {}

def cmp(name, ours, theirs=None):
    """One row of the table: is our gradient autograd's? (float64: equal to ~1e-15)"""
    theirs = ag[name] if theirs is None else theirs
    assert ours.shape == theirs.shape, f"{name}: shape {ours.shape}, autograd's {theirs.shape}"
    diff = float(np.abs(ours - theirs).max())
    rel = diff / max(float(np.abs(theirs).max()), 1e-300)
    checked[name] = rel
    print(f"{name:24s} {str(ours.shape):14s} "
          f"approx: {str(bool(np.allclose(ours, theirs, rtol=0, atol=1e-12))):5s} "
          f"max|diff| {diff:.1e}  rel {rel:.1e}")

# %% [markdown]
# ## Step 1: softmax and cross-entropy, together
# For one row, $-\log\text{softmax}(z)_y = \log\sum_j e^{z_j} - z_y$, so
# $\partial/\partial z_i = \text{softmax}(z)_i - [i = y]$; the loss is a mean over the $N = BT$
# rows, so divide by $N$. (Assignment task `layers.cross_entropy_backward`.)

# %%
# TODO: dlogits (B, T, V), from logp (the log-softmax) and targets
### BEGIN SOLUTION
dlogits = np.exp(logp)
dlogits[np.arange(B)[:, None], np.arange(T), targets] -= 1
dlogits /= N
### END SOLUTION
cmp("logits", dlogits)

# %% [markdown]
# ## Step 2: the tied output layer
# $\text{logits} = h_1 W_e^T$, a matrix product: $dh_1 = d\text{logits}\, W_e$ and the output
# layer's share of $dW_e$ is $d\text{logits}^T h_1$, summed over every position (B and T
# flattened into rows). Keep that share apart: $W_e$ gets a second one at the bottom.
# (`layers.linear_backward`.)

# %%
# TODO: dh1 (B, T, C) and dWe_out (V, C), the output layer's gradient for W_e
### BEGIN SOLUTION
dh1 = dlogits @ We                                       # (B, T, V) @ (V, C)
dWe_out = dlogits.reshape(N, V).T @ h1.reshape(N, C)    # (V, N) @ (N, C)
### END SOLUTION
cmp("h1", dh1)

# %% [markdown]
# ## Step 3: LayerNorm 2
# With $\hat g = dy \odot w$: $dx = r\,(\hat g - \text{mean}(\hat g) - \hat x\,\text{mean}(\hat g
# \odot \hat x))$ per row (notebook 4 derives it); $dw = \sum \hat x \odot dy$ and
# $db = \sum dy$ over the rows. (`layers.layer_norm_backward`.)

# %%
def layer_norm_backward(dy, xh, rstd, w):
    """dx, dw, db of y = xh * w + b with xh = (x - mean) * rstd, per row of the last axis."""
    # TODO: the three gradients of LayerNorm
    ### BEGIN SOLUTION
    gh = dy * w
    dx = rstd * (gh - gh.mean(-1, keepdims=True) - xh * (gh * xh).mean(-1, keepdims=True))
    dw = (dy * xh).reshape(-1, dy.shape[-1]).sum(0)
    db = dy.reshape(-1, dy.shape[-1]).sum(0)
    return dx, dw, db
    ### END SOLUTION

dr2, dg2, db2 = layer_norm_backward(dh1, xh2, rstd2, g2)
cmp("r2", dr2)
cmp("h.0.ln_2.weight", dg2)
cmp("h.0.ln_2.bias", db2)

# %% [markdown]
# ## Step 4: the residual and the MLP
# $r_2 = n + m$ sends $dr_2$ to both. Then $m = \text{gl}\,W_m + b_m$, the GELU
# $\text{gl} = \tfrac12 u(1 + t)$ with $t = \tanh(c(u + 0.044715u^3))$, whose derivative is
# $\tfrac12(1 + t) + \tfrac12 u (1 - t^2)\,c\,(1 + 3\cdot0.044715u^2)$ (product rule, chain
# rule), and $u = n W_f + b_f$. $n$ collects gradient from two places: the residual and the
# MLP's input. (`layers.gelu_backward`, `layers.linear_backward`.)

# %%
def linear_backward(dout, x, W):
    """dx, dW, db of out = x @ W + b, for x (..., in) and W (in, out)."""
    # TODO: the three gradients of a linear layer
    ### BEGIN SOLUTION
    dx = dout @ W.T
    dW = x.reshape(-1, x.shape[-1]).T @ dout.reshape(-1, dout.shape[-1])
    db = dout.reshape(-1, dout.shape[-1]).sum(0)
    return dx, dW, db
    ### END SOLUTION

dm = dr2.copy()                                          # r2 = n + m
dgl, dWm, dbm = linear_backward(dm, gl, Wm)
cmp("m", dm)
cmp("gl", dgl)
cmp("h.0.mlp.c_proj.weight", dWm)
cmp("h.0.mlp.c_proj.bias", dbm)
# TODO: du (B, T, 4C), through the GELU, from u and t
### BEGIN SOLUTION
du = dgl * (0.5 * (1 + t) + 0.5 * u * (1 - t ** 2) * c * (1 + 3 * 0.044715 * u ** 2))
### END SOLUTION
cmp("u", du)
dn_mlp, dWf, dbf = linear_backward(du, n, Wf)
cmp("h.0.mlp.c_fc.weight", dWf)
cmp("h.0.mlp.c_fc.bias", dbf)
dn = dr2 + dn_mlp                                        # n is used twice: the gradients add
cmp("n", dn)

# %% [markdown]
# ## Step 5: LayerNorm 1, the residual, the attention's output projection
# The same LayerNorm backward; $r_1 = h_0 + a$ passes $dr_1$ to $a$ (and to $h_0$, added at
# the end); $a = y W_o + b_o$; then $y$ goes back to the heads: the inverse of
# `transpose(0, 2, 1, 3).reshape(B, T, C)` is `reshape(B, T, nh, hs).transpose(0, 2, 1, 3)`.

# %%
dr1, dg1, db1 = layer_norm_backward(dn, xh1, rstd1, g1)
cmp("r1", dr1)
cmp("h.0.ln_1.weight", dg1)
cmp("h.0.ln_1.bias", db1)
da = dr1.copy()
dy, dWo, dbo = linear_backward(da, y, Wo)
cmp("a", da)
cmp("y", dy)
cmp("h.0.attn.c_proj.weight", dWo)
cmp("h.0.attn.c_proj.bias", dbo)
dY = dy.reshape(B, T, nh, hs).transpose(0, 2, 1, 3)      # (B, nh, T, hs)
cmp("Y", dY)

# %% [markdown]
# ## Step 6: attention
# $Y = PV$: $dP = dY\,V^T$ and $dV = P^T dY$. The softmax of each row: with $P$ fixed,
# $\partial P_j/\partial S_i = P_j(\delta_{ij} - P_i)$, so $dS = P \odot (dP -
# \text{rowsum}(dP \odot P))$; hidden (masked) scores have $P = 0$ and get no gradient.
# $S = QK^T/\sqrt{hs}$: $dQ = dS\,K/\sqrt{hs}$, $dK = dS^T Q/\sqrt{hs}$. Four matrix products
# in all, and the scale in both of the last two. (`layers.softmax_backward`, `attention.dq`,
# `attention.dk`, `attention.dv`.)

# %%
# TODO: dP and dv, the gradients of Y = P @ v
### BEGIN SOLUTION
dP = dY @ v.swapaxes(-1, -2)                             # (B, nh, T, hs) @ (B, nh, hs, T)
dv = P.swapaxes(-1, -2) @ dY                             # (B, nh, T, T) @ (B, nh, T, hs)
### END SOLUTION
cmp("P", dP)
cmp("v", dv)
# TODO: dS, through the softmax of each row
### BEGIN SOLUTION
dS = P * (dP - (dP * P).sum(-1, keepdims=True))
### END SOLUTION
cmp("S", dS)
# TODO: dq and dk, the gradients of S = q @ k^T / sqrt(hs)
### BEGIN SOLUTION
dq = dS @ k / np.sqrt(hs)                                # (B, nh, T, T) @ (B, nh, T, hs)
dk = dS.swapaxes(-1, -2) @ q / np.sqrt(hs)
### END SOLUTION
cmp("q", dq)
cmp("k", dk)

# %% [markdown]
# ## Step 7: back through c_attn to the embeddings
# Stacking q, k, v back into (B, T, 3C) inverts the forward's reshape; then `c_attn`. $h_0$
# collects gradient from the residual and from `c_attn`. An embedding lookup's backward is a
# scatter-add: each row of $dh_0$ is added into the row of $W_e$ its token came from (a token
# used twice collects twice), and $dW_p[t] = \sum_b dh_0[b, t]$. $W_e$'s full gradient is the
# sum of its two uses: the lookup and the output layer. (`layers.embedding`.)

# %%
dqkv = np.stack([dq, dk, dv]).transpose(1, 3, 0, 2, 4).reshape(B, T, 3 * C)
cmp("qkv", dqkv)
dh0_attn, dWa, dba = linear_backward(dqkv, h0, Wa)
cmp("h.0.attn.c_attn.weight", dWa)
cmp("h.0.attn.c_attn.bias", dba)
dh0 = dr1 + dh0_attn
cmp("h0", dh0)
# TODO: dWe_in (V, C), the lookup's gradient for W_e, and dWp (n_ctx, C)
### BEGIN SOLUTION
dWe_in = np.zeros_like(We)
np.add.at(dWe_in, idx.reshape(-1), dh0.reshape(N, C))
dWp = np.zeros_like(Wp)
dWp[:T] = dh0.sum(0)
### END SOLUTION
cmp("positions_embed.weight", dWp)
dWe = dWe_in + dWe_out
cmp("tokens_embed.weight", dWe)

# %% [markdown]
# ## The tied embedding's two gradients
# Which part of $dW_e$ comes from where: the output layer sends gradient to every row (every
# token is a candidate output at every position), the lookup only to the rows of tokens in
# the batch.

# %%
used = np.zeros(V, dtype=bool)
used[idx.ravel()] = True
print("token ids in the batch:", np.flatnonzero(used))
print("rows of dWe_in that are non-zero: ", np.flatnonzero(np.abs(dWe_in).sum(1) > 0))
print("rows of dWe_out that are non-zero:", np.flatnonzero(np.abs(dWe_out).sum(1) > 0))
print(f"|dWe_in| = {np.linalg.norm(dWe_in):.4f}, |dWe_out| = {np.linalg.norm(dWe_out):.4f}, "
      f"|dWe| = {np.linalg.norm(dWe):.4f}")

# %% [markdown]
# ## The whole table
# Every intermediate and every parameter of the model, by hand against autograd.

# %%
names_params = [n for n, _ in model.named_parameters()]
names_stages = [n for n, _ in STAGES]
missing = [n for n in names_stages + names_params if n not in checked]
worst = max(checked.values())
print(f"{len(checked)} tensors compared ({len(names_params)} parameters, "
      f"{len(checked) - len(names_params)} intermediates); missing: {missing}; "
      f"largest relative difference {worst:.1e}")

# %% [markdown]
# ## Exercises
# Each step above is one: in the released notebook (`minigpt assignments release-notebooks`)
# every `TODO` raises `NotImplementedError` until you write it, and the `cmp` line under it
# prints your relative error against autograd (aim for 1e-12 or less in float64). Then:
# 1. Add `ignore_index`: make the targets of the last position of each sequence `-100`; which
#    line of Step 1 changes, and how (what is $N$ now)?
# 2. Turn attention dropout on in your head: where would the dropout mask enter Step 6?
# 3. The graded versions of these steps are the `layers` and `attention` assignments
#    (`minigpt assignments list`).

# %%
assert abs(loss - loss_model) < 1e-12 and abs(staged_loss - loss_model) < 1e-12
assert not missing and worst < 1e-10
assert np.allclose(dWe, dWe_in + dWe_out) and np.linalg.norm(dWe_in) > 0 and np.linalg.norm(dWe_out) > 0
assert set(np.flatnonzero(np.abs(dWe_in).sum(1) > 0)) <= set(np.flatnonzero(used))
assert np.all(np.abs(dWe_out).sum(1) > 0)                # the output layer reaches every row
assert not dS[..., ~mask].any()                          # hidden scores get no gradient
print("all claims hold")
