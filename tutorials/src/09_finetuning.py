# %% [markdown]
# # 9. Fine-tuning with input transformations
#
# GPT-1's second idea: keep the pretrained transformer *unchanged* and turn every task into
# token sequences it can read. Three special tokens do it, start `s`, delimiter `$` and
# extract `e`; a small linear head reads the last hidden state at `e`. Fine-tuning minimises
# $L_3 = L_2 + \lambda L_1$: the task loss plus $\lambda = 0.5$ times the language-model loss
# on the same tokens (the *auxiliary* objective). This notebook shows each format as tokens,
# the heads and their shapes, and measures what the auxiliary loss does, on a small model
# pretrained here for a few seconds.

# %%
import copy
import numpy as np
import matplotlib.pyplot as plt
import minigpt
from minigpt import optim
from minigpt.data import load_corpus, encode_corpus, get_batch
from minigpt.tokenizers import CharTokenizer
from minigpt.tasks import (Example, TaskEncoder, add_special_tokens, collate, lm_targets,
                           shakespeare_genre)
from minigpt.training import TaskModel, make_head, task_loss

plt.rcParams["figure.dpi"] = 72

# %% [markdown]
# ## A small pretrained model
# Two blocks of width 48, pretrained for 150 steps on Shakespeare (notebook 8 shows this
# step); then the tokenizer gets GPT-1's three special tokens and the embedding three new
# rows.

# %%
corpus = load_corpus("shakespeare")
tok = CharTokenizer.train(corpus.train + corpus.val)
train_ids = encode_corpus(tok, corpus.train[:500_000])
val_ids = encode_corpus(tok, corpus.val[:100_000])
cfg = minigpt.GPTConfig(vocab_size=tok.vocab_size, n_ctx=64, n_layer=2, n_embd=48, n_head=4,
                        embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0)
base = minigpt.GPT(cfg, seed=0)
opt = optim.Adam(base.named_parameters(), lr=3e-3, schedule=optim.warmup_cosine(20, 150))
rng = np.random.default_rng(0)
for step in range(150):
    x, y = get_batch(train_ids, 32, 64, rng)
    opt.zero_grad()
    loss = base.loss(x, y)
    loss.backward()
    opt.step()

def lm_val_loss(gpt):
    r = np.random.default_rng(7)
    with minigpt.no_grad():
        return float(np.mean([gpt.loss(*get_batch(val_ids, 32, 64, r)).item() for _ in range(3)]))

special = add_special_tokens(tok)
base.resize_token_embeddings(tok.vocab_size)
base_lm = lm_val_loss(base)
print(f"pretrained: validation LM loss {base_lm:.3f} nats/char; special tokens {special}")

# %% [markdown]
# ## Every format as tokens
# (The paper's Figure 1.) `TaskEncoder` turns examples into id sequences; decoded back, the
# special tokens show by name.

# %%
examples = {
    "classify": Example(text="O happy dagger!", label="tragedy"),
    "entail": Example(text="The king is dead.", text2="The king lives.", label="contradiction"),
    "similar": Example(text="Good night.", text2="Sleep well.", label="same"),
    "choice": Example(text="To be, or not", choices=("to be", "a pie"), label=0),
    "tag": Example(words=("Romeo", "loves", "Juliet"), label=("B-PER", "O", "B-PER")),
}
labels = {"classify": ["comedy", "tragedy"], "entail": ["entailment", "contradiction"],
          "similar": ["different", "same"], "choice": ["1", "2"], "tag": ["O", "B-PER"]}
encoded = {}
for task, ex in examples.items():
    enc = TaskEncoder(task, tok, n_ctx=cfg.n_ctx, labels=labels[task])
    (item,) = enc.encode([ex])
    encoded[task] = item
    print(f"--- {task}: label {item.label!r}" + (f", labelled positions {item.first}" if item.first else ""))
    for seq in item.seqs:
        print("   ", repr(tok.decode(seq)))

# %% [markdown]
# ## The heads
# Every head is a linear layer on $h_n$, the last block's output: at the extract token for
# classification and entailment; at the two extract tokens summed for similarity (both
# orderings run through the model); one score per choice for multiple choice (a softmax over
# the choices); every position for tagging.

# %%
shapes = {}
for task, item in encoded.items():
    model = TaskModel(copy.deepcopy(base), make_head(task, cfg.n_embd, len(labels[task]), pdrop=0.0), task)
    batch = collate([item, item], task)                     # a batch of two copies
    with minigpt.no_grad():
        logits, h = model(batch.idx, batch.mask, batch.extract, batch.group)
    shapes[task] = logits.shape
    head_params = sum(p.size for n, p in model.named_parameters() if n.startswith("head."))
    print(f"{task:9s} input {batch.idx.shape} (B*G, T), G={batch.group}: h_n {h.shape} "
          f"-> logits {logits.shape}; head parameters {head_params}")

# %% [markdown]
# ## What the auxiliary loss does
# Fine-tune two copies of the same pretrained model on a Shakespeare task (the genre of a
# speech: comedy, history or tragedy), identical except for $\lambda$: 0 (task loss only) and
# 0.5 (GPT-1). The learning rate is high on purpose, to make the effect visible in 60 steps:
# without $L_1$ the transformer drifts away from language modelling (its LM loss on held-out
# text rises); with it, the LM loss stays close to the pretrained value.

# %%
data = shakespeare_genre()
pick = np.random.default_rng(0)
train = [data.train[i] for i in pick.choice(len(data.train), 960, replace=False)]
test = [data.test[i] for i in pick.choice(len(data.test), 300, replace=False)]
enc = TaskEncoder("classify", tok, n_ctx=cfg.n_ctx, labels=data.labels)
train_enc, test_enc = enc.encode(train), enc.encode(test)

def accuracy(model):
    batch = collate(test_enc, "classify")
    with minigpt.no_grad():
        logits, _ = model(batch.idx, batch.mask, batch.extract, batch.group)
    return float((logits.data.argmax(-1) == batch.labels).mean())

runs = {}
for lam in (0.0, 0.5):
    model = TaskModel(copy.deepcopy(base), make_head("classify", cfg.n_embd, 3, pdrop=0.0), "classify")
    opt = optim.Adam(model.named_parameters(), lr=2e-3, schedule=optim.warmup_linear(60, 0.05))
    order = np.random.default_rng(1).permutation(len(train_enc))
    curve = []
    for step in range(60):
        items = [train_enc[i] for i in order[16 * step:16 * step + 16]]
        batch = collate(items, "classify")
        logits, h = model(batch.idx, batch.mask, batch.extract, batch.group)
        l2 = task_loss("classify", logits, batch.labels)
        l1 = model.lm_loss(h, lm_targets(batch.idx, batch.mask))
        loss = l2 + lam * l1 if lam else l2
        opt.zero_grad()
        loss.backward()
        opt.step()
        curve.append((l2.item(), l1.item()))
    runs[lam] = dict(curve=np.array(curve), lm=lm_val_loss(model.transformer), acc=accuracy(model))
    print(f"lambda {lam}: test accuracy {runs[lam]['acc']:.3f} (3 classes, chance 0.333); "
          f"held-out LM loss {base_lm:.3f} -> {runs[lam]['lm']:.3f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for lam, r in runs.items():
    axes[0].plot(r["curve"][:, 0], label=f"lambda = {lam}")
    axes[1].plot(r["curve"][:, 1], label=f"lambda = {lam}")
axes[0].set_title("task loss L2 (per batch)")
axes[1].set_title("LM loss L1 on the task's text (per batch)")
for ax in axes:
    ax.set_xlabel("step")
    ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# Sixty small batches are far too few to learn the genre of a speech from its first 62
# characters (both runs stay near chance; `minigpt finetune` runs the real recipe). In the
# paper the auxiliary objective helped on the larger data sets (NLI, QQP) and less on the small
# ones; its effect here is the one measured above: with it, the model keeps its language
# modelling while the task gradient pulls on the same weights.
#
# ## Exercises
# 1. Encode a multiple-choice example with 4 choices and collate two of them: what are
#    `batch.group` and the logits' shape, and how does the head know which rows belong
#    together?
# 2. Why does the similarity task run both orderings? (The model is causal: what can the
#    first text see of the second?)
# 3. Repeat the experiment with `lr=6.25e-5` (GPT-1's) and 600 steps. Does the gap in the
#    held-out LM loss remain?

# %%
assert shapes["classify"] == (2, 2) and shapes["entail"] == (2, 2) and shapes["similar"] == (2, 2)
assert shapes["choice"] == (2, 2) and shapes["tag"][0] == 2 and shapes["tag"][2] == 2
assert len(encoded["similar"].seqs) == 2 and len(encoded["choice"].seqs) == 2
s = encoded["entail"].seqs[0]
assert s[0] == special["start"] and s[-1] == special["extract"] and s.count(special["delim"]) == 1
assert runs[0.5]["lm"] < runs[0.0]["lm"]                 # the auxiliary loss keeps the LM
assert runs[0.0]["lm"] > base_lm                         # without it, the LM drifts
print("all claims hold")
