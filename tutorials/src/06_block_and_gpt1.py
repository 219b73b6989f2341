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
plt.rcParams["figure.dpi"] = 72

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
fig, ax = plt.subplots(figsize=(7, 2.6))
left = 0
for k, v in parts.items():
    ax.barh(0, v / 1e6, left=left, label=k)
    left += v / 1e6
ax.set_yticks([])
ax.set_xlabel("millions of parameters")
ax.set_title("GPT-1's 116.5M parameters")
ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=2)
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
# Things to read off the tables: at init the queries and keys get almost no gradient (all
# scores are near 0, so the softmax is flat and insensitive to them), while the values do;
# `tokens_embed.weight` is used twice (the lookup, and transposed as the output layer), and its
# gradient is the sum of both. In a notebook the trace also shows itself as an HTML table:

# %%
tr

# %% [markdown]
# ## Exercises
# 1. Re-count the parameters of GPT-1 fine-tuned on a 3-way task: 3 special tokens and a
#    $C \times 3$ classifier with bias.
# 2. Why does the trace show the gradient norm of `h.0.attn.c_attn.bias` far larger than its
#    weight's at init? (Hint: which part of `c_attn` is the value projection?)
# 3. Change the init std from 0.02 to 1.0 and look at the loss at init. What does the trace
#    say about the logits?

# %%
assert np.allclose(out, by_formula)
assert total == 116_534_784
assert abs(loss0 - math.log(V)) < 0.15 and 0 <= expected - math.log(V) < sigma ** 2
q_grad = [r for r in tr.ops if r.op == "GetItem"][:2]        # q and k, sliced from c_attn's output
v_grad = [r for r in tr.ops if r.op == "GetItem"][2]
assert max(r.grad_norm for r in q_grad) < 1e-2 * v_grad.grad_norm
assert [r.op for r in tr.ops if "tokens_embed.weight" in r.inputs] == ["Embedding", "Transpose"]
assert np.isclose(tr.param("h.0.ln_1.weight").grad_norm, np.linalg.norm(one.h[0].ln_1.weight.grad))
print("all claims hold")
