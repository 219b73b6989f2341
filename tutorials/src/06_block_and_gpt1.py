# %% [markdown]
# # 6. One post-LN block, and the whole GPT-1
#
# GPT-1 stacks 12 identical blocks. Each is *post-LN*: the residual sum is normalised after
# each sub-layer (later GPTs moved LayerNorm before the sub-layer):
#
# $$n = \text{LN}_1(x + \text{Attn}(x)), \qquad h = \text{LN}_2(n + \text{MLP}(n)).$$
#
# Around the blocks: $h_0 = W_e[\text{ids}] + W_p$, and the output layer is the token
# embedding again, $\text{logits} = h_{12} W_e^T$ (tied). This notebook checks the block
# against its formula, counts GPT-1's 116,534,784 parameters by component, explains the loss
# at initialisation, and steps through one forward and backward pass with `minigpt.trace`.

# %%
import inspect
import math
import numpy as np
import matplotlib.pyplot as plt
import minigpt
from minigpt import Tensor, gradcheck
import minigpt.functional as F
from minigpt.model import Block

rng = np.random.default_rng(0)
minigpt.use("reference")  # run the reference ops of minigpt/ops/, the code shown here
plt.rcParams["figure.dpi"] = 120

# %% [markdown]
# ## The block, as code

# %%
print(inspect.getsource(Block))

# %%
cfg = minigpt.GPTConfig(vocab_size=50, n_ctx=16, n_layer=2, n_embd=32, n_head=4,
                        embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0, dtype="float64")
block = Block(cfg, np.random.default_rng(0))
x = Tensor(rng.standard_normal((2, 6, 32)), requires_grad=True)
out = block(x).data
n = F.layer_norm(x + block.attn(x), block.ln_1.weight, block.ln_1.bias)
by_formula = F.layer_norm(n + block.mlp(n), block.ln_2.weight, block.ln_2.bias).data
print("block(x) == LN2(n + MLP(n)), n = LN1(x + Attn(x)):", np.allclose(out, by_formula))
print("post-LN: every output row has mean ~0, std ~1:",
      np.abs(out.mean(-1)).max() < 1e-10, np.round(out.std(-1).min(), 4), np.round(out.std(-1).max(), 4))
print("gradcheck through a block:", gradcheck(lambda x: block(x), [x]))

# %% [markdown]
# ## Counting the parameters
# Per block: `c_attn` $C\cdot 3C + 3C$, `c_proj` $C^2 + C$, two LayerNorms $2 \cdot 2C$, the
# MLP $8C^2 + 5C$: in all $12C^2 + 13C$. Plus the two embeddings, $V C + n_{ctx} C$, and
# nothing for the output layer (tied). The formula is checked against real models first, then
# applied to the `gpt1` preset (building that model would take 466 MB for nothing).

# %%
def count_by_component(c):
    C = c.n_embd
    return {
        "token embedding (tied output)": c.vocab_size * C,
        "position embedding": c.n_ctx * C,
        "attention (c_attn, c_proj)": c.n_layer * (4 * C * C + 4 * C),
        "MLP (c_fc, c_proj)": c.n_layer * (8 * C * C + 5 * C),
        "LayerNorms": c.n_layer * 4 * C,
    }

def count_real(model):
    groups = {k: 0 for k in count_by_component(model.config)}
    for name, p in model.named_parameters():
        key = ("token embedding (tied output)" if name.startswith("tokens_embed") else
               "position embedding" if name.startswith("positions_embed") else
               "attention (c_attn, c_proj)" if ".attn." in name else
               "MLP (c_fc, c_proj)" if ".mlp." in name else "LayerNorms")
        groups[key] += p.size
    return groups

small_configs = [cfg, minigpt.GPTConfig.preset("tiny"), minigpt.GPTConfig.preset("small")]
for c in small_configs:
    m = minigpt.GPT(c)
    assert count_real(m) == count_by_component(c), c
    print(f"{c.n_layer} layers, C={c.n_embd}, V={c.vocab_size}: {m.num_parameters():,} parameters, formula agrees")

gpt1 = minigpt.GPTConfig.preset("gpt1")
parts = count_by_component(gpt1)
total = sum(parts.values())
for k, v in parts.items():
    print(f"{k:32s} {v:>12,}  {100 * v / total:5.1f}%")
print(f"{'GPT-1 total':32s} {total:>12,}")

# %%
fig, ax = plt.subplots(figsize=(7, 2.8))
names = list(parts)[::-1]
millions = [parts[k] / 1e6 for k in names]
ax.barh(names, millions, color="tab:blue")
for i, m_ in enumerate(millions):
    ax.text(m_ + 0.5, i, f"{m_:.2f}M", va="center", fontsize=9)
ax.set_xlabel("millions of parameters")
ax.set_xlim(0, max(millions) * 1.2)
ax.set_title(f"GPT-1's {total / 1e6:.1f}M parameters, by component")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The loss at initialisation is $\ln V$
# Weights start at $\mathcal N(0, 0.02^2)$, so the logits $h W_e^T$ are sums of $C$ products
# of a unit-scale $h$ (LayerNorm output) and $0.02$-scale weights: small, a standard deviation
# $\sigma$ of a few tenths. The softmax is then almost uniform, every token has probability
# about $1/V$, and the cross-entropy is about $\ln V$. A little above: averaged over all
# targets, the loss of a row $z$ is $\ln \sum_v e^{z_v} - \bar z = \ln V + \ln \tfrac1V\sum_v
# e^{z_v - \bar z}$, and the last term is $\ge 0$ (Jensen), of the order of $\sigma^2/2$. A first
# loss far from $\ln V$ is a bug (a missing scale, a wrong init, a softmax over the wrong axis).

# %%
model = minigpt.GPT(minigpt.GPTConfig.preset("tiny"), seed=0).eval()     # V = 65
V = model.config.vocab_size
idx, targets = rng.integers(0, V, (8, 32)), rng.integers(0, V, (8, 32))
with minigpt.no_grad():
    logits = model(idx).data
    loss0 = model.loss(idx, targets).item()
sigma = logits.std()
# the loss averaged over every possible target: log-sum-exp of a row minus its mean
z = logits.astype(np.float64)
zmax = z.max(-1, keepdims=True)
expected = float((np.log(np.exp(z - zmax).sum(-1)) + zmax[..., 0] - z.mean(-1)).mean())
print(f"logit std {sigma:.3f}")
print(f"loss at init {loss0:.4f} (random targets), {expected:.4f} (averaged over all targets)")
print(f"ln V = ln {V} = {math.log(V):.4f};  ln V + sigma^2/2 = {math.log(V) + sigma ** 2 / 2:.4f}")

# %% [markdown]
# ## Stepping through one pass: `minigpt.trace`
# `minigpt.trace(model, idx, targets)` runs one forward and backward pass and lists every op
# in order: which module ran it, where its inputs came from (`#k` is op $k$'s output), the
# shapes, the output's mean, standard deviation and largest magnitude, and the norm of the
# gradient that reached it. Then the backward order, then each parameter's norm and gradient
# norm. A one-layer model keeps the table short; on a checkpoint, `minigpt trace --ckpt DIR`
# prints the same.

# %%
one = minigpt.GPT(minigpt.GPTConfig(vocab_size=V, n_ctx=16, n_layer=1, n_embd=32, n_head=4), seed=0).eval()
tr = minigpt.trace(one, idx[:2, :8], targets[:2, :8])
print(tr.table("forward"))

# %%
print(tr.table(("backward", "params")))

# %% [markdown]
# Things to read off the tables: `tokens_embed.weight` is used twice (the lookup, and
# transposed as the output layer), and its gradient is the sum of both. And at init the
# queries and keys get almost no gradient while the values do. Why? Not because the softmax
# is flat: a flat softmax is at its *most* sensitive (its Jacobian
# $\text{diag}(P) - PP^T$ shrinks to zero as $P$ becomes one-hot, and is largest near uniform).
# The reason is in the backward's formulas (notebook 3): $dP = dO\,V^T$, $dS = P \odot (dP -
# \ldots)$, then $dQ = dS\,K/\sqrt{hs}$ and $dK = dS^T Q/\sqrt{hs}$. So $dQ$ carries two small
# factors, $|V|$ and $|K|$, and $dK$ two, $|V|$ and $|Q|$; $dV = P^T dO$ carries none (rows of
# $P$ sum to 1). At init $q$, $k$, $v$ are tiny ($0.02$-scale weights applied to $0.02$-scale
# embeddings). Measured: scale the key and value columns of `c_attn` by $s$ and watch the
# gradient norms.

# %%
def qkv_gradients(s):
    """rms of q, k, v and the norms of their gradients, with k's and v's weights times s."""
    m_ = minigpt.GPT(minigpt.GPTConfig(vocab_size=V, n_ctx=16, n_layer=1, n_embd=32, n_head=4), seed=0).eval()
    m_.h[0].attn.c_attn.weight.data[:, 32:] *= s            # columns C..3C: k and v
    rows = [r for r in minigpt.trace(m_, idx[:2, :8], targets[:2, :8]).ops if r.op == "GetItem"][:3]
    return [math.hypot(r.mean, r.std) for r in rows], [r.grad_norm for r in rows]

scan = {s_: qkv_gradients(s_) for s_ in (1, 3, 10)}
for s_, (rms, grads) in scan.items():
    print(f"s = {s_:2d}: rms q {rms[0]:.4f} k {rms[1]:.4f} v {rms[2]:.4f}   "
          f"|dq| {grads[0]:.2e}  |dk| {grads[1]:.2e}  |dv| {grads[2]:.2e}")
gain = {name: scan[10][1][i] / scan[1][1][i] for i, name in enumerate("qkv")}
print(f"s = 1 -> 10: |dq| x{gain['q']:.0f} (|k| and |v| both x10), |dk| x{gain['k']:.0f} "
      f"(|v| x10, |q| unchanged), |dv| x{gain['v']:.2f}")
flat, peaked = np.full(8, 1 / 8), np.exp(np.arange(8) * 5.0) / np.exp(np.arange(8) * 5.0).sum()
jac_norm = lambda p_: np.linalg.norm(np.diag(p_) - np.outer(p_, p_), 2)
print(f"softmax Jacobian norm: flat P {jac_norm(flat):.3f}, peaked P (max {peaked.max():.2f}) "
      f"{jac_norm(peaked):.3f}")

# %% [markdown]
# In a notebook the trace also shows itself as an HTML table:

# %%
tr

# %% [markdown]
# ## Exercise: the parameters of a fine-tuned GPT-1
# Fine-tuning adds GPT-1's three special tokens (start, delimiter, extract: three new rows of
# $W_e$) and a linear classifier on the last hidden state ($C \times K$ weights and $K$
# biases). Write the count; the check builds a small fine-tuning model with
# `minigpt.training` and compares. (The special tokens are task `transforms.*` of
# `minigpt assignments`.)

# %%
def finetuned_parameters(c, n_special, n_classes):
    """The parameter count of GPT `c` with n_special new tokens and a K-way linear head."""
    # TODO: start from count_by_component(c), add the new rows and the head
    ### BEGIN SOLUTION
    return sum(count_by_component(c).values()) + n_special * c.n_embd \
        + c.n_embd * n_classes + n_classes
    ### END SOLUTION

from minigpt.training import TaskModel, make_head
small = minigpt.GPTConfig.preset("tiny")
base = minigpt.GPT(small)
base.resize_token_embeddings(small.vocab_size + 3)
built = TaskModel(base, make_head("classify", small.n_embd, 3, pdrop=0.0), "classify").num_parameters()
ft_error = abs(finetuned_parameters(small, 3, 3) - built) / built
print(f"tiny preset + 3 tokens + 3-way head: {built:,} built; relative error {ft_error:.1e}")
print(f"GPT-1 fine-tuned on a 3-way task: {finetuned_parameters(gpt1, 3, 3):,} parameters")

# %% [markdown]
# ## More exercises
# 1. From the formulas above: at init, which of `c_attn`'s three weight blocks (q, k or v
#    columns) gets the largest gradient, and why? Check it in the `params` table.
# 2. Change the init std from 0.02 to 1.0 and look at the loss at init. What does the trace
#    say about the logits?

# %%
assert np.allclose(out, by_formula)
assert total == 116_534_784
assert abs(loss0 - math.log(V)) < 0.15 and 0 <= expected - math.log(V) < sigma ** 2
q_grad = [r for r in tr.ops if r.op == "GetItem"][:2]        # q and k, sliced from c_attn's output
v_grad = [r for r in tr.ops if r.op == "GetItem"][2]
assert max(r.grad_norm for r in q_grad) < 1e-2 * v_grad.grad_norm
assert [r.op for r in tr.ops if "tokens_embed.weight" in r.inputs] == ["Embedding", "Transpose"]
assert 50 < gain["q"] < 200 and 5 < gain["k"] < 20 and 0.8 < gain["v"] < 1.25   # |dq| ~ |k||v|
assert jac_norm(flat) > 3 * jac_norm(peaked)             # a flat softmax is the sensitive one
assert ft_error == 0
assert np.isclose(tr.param("h.0.ln_1.weight").grad_norm, np.linalg.norm(one.h[0].ln_1.weight.grad))
print("all claims hold")
