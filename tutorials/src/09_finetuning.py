# %% [markdown]
# # 9. Fine-tuning with input transformations
#
# GPT-1's second idea: keep the pretrained transformer *unchanged* and turn every task into
# token sequences it can read. Three special tokens do it, start `s`, delimiter `$` and
# extract `e`; a small linear head reads the last hidden state at `e`. Fine-tuning minimises
# $L_3 = L_2 + \lambda L_1$: the task loss plus $\lambda = 0.5$ times the language-model loss
# on the same tokens (the *auxiliary* objective). This notebook shows each format as tokens,
# the heads and their shapes (the similarity head in code), fine-tunes on a task a small
# model can learn in seconds, and measures what the auxiliary loss does; the model is
# pretrained here for a few seconds.

# %%
import copy
import inspect
import numpy as np
import matplotlib.pyplot as plt
import minigpt
from minigpt import optim
from minigpt.data import load_corpus, encode_corpus, get_batch
from minigpt.tokenizers import CharTokenizer
from minigpt.tasks import (Example, TaskEncoder, add_special_tokens, collate, lm_targets,
                           shakespeare_genre)
from minigpt.training import TaskModel, make_head, task_loss
from minigpt.training.heads import SimilarityHead, extract_states

plt.rcParams["figure.dpi"] = 120

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
# ## Similarity: one transformer, both orderings, the states added
# A common misreading of the paper is that similarity runs "two independent decoders". It
# runs the **same** transformer (the same weights) on both orderings, `s a $ b e` and
# `s b $ a e`, and adds the two final states at the extract token before the linear layer:
# $\text{logits} = W_y\,(h_n^{ab}[e] + h_n^{ba}[e])$. In minigpt the two orderings are rows
# $2i$ and $2i+1$ of one batch through one `GPT`:

# %%
print(inspect.getsource(SimilarityHead.forward))

# %%
sim = TaskModel(copy.deepcopy(base), make_head("similar", cfg.n_embd, 2, pdrop=0.0), "similar")
enc_sim = TaskEncoder("similar", tok, n_ctx=cfg.n_ctx, labels=labels["similar"])
pair = Example(text="Good night.", text2="Sleep well.", label="same")
swapped = Example(text="Sleep well.", text2="Good night.", label="same")
with minigpt.no_grad():
    b_ = collate(enc_sim.encode([pair]), "similar")
    logits_sim, _ = sim(b_.idx, b_.mask, b_.extract, b_.group)
    # by hand: each ordering alone through the one transformer, extract states added, then W_y
    states = [extract_states(sim.transformer.hidden_states(b_.idx[r:r + 1], b_.mask[r:r + 1]),
                             b_.extract[r:r + 1]).data for r in (0, 1)]     # each (1, C)
    by_hand_sim = (states[0] + states[1]) @ sim.head.linear.weight.data + sim.head.linear.bias.data
    b_swapped = collate(enc_sim.encode([swapped]), "similar")
    logits_swapped, _ = sim(b_swapped.idx, b_swapped.mask, b_swapped.extract, b_swapped.group)
sim_diff = np.abs(logits_sim.data - by_hand_sim).max()
print("the two rows of the batch:", [tok.decode(list(r[m.astype(bool)])) for r, m in zip(b_.idx, b_.mask)])
swap_diff = np.abs(logits_sim.data - logits_swapped.data).max()
print("head output == W_y (h_ab[e] + h_ba[e]) by hand (float32 roundoff):", sim_diff < 1e-5)
print("swapping a and b leaves the logits as they are (float32 roundoff):", swap_diff < 1e-5)

# %% [markdown]
# ## Fine-tuning that works
# First a task this small model can learn in seconds: is a speech written forwards or
# backwards (`"O happy dagger!"` or `"!reggad yppah O"`)? It is easy on purpose: it shows the
# whole machinery (special tokens, the extract state, the head, the loop) learning, on two
# seeds, with test speeches from plays held out of the task's training split. One change to
# GPT-1's recipe: $\lambda = 0$. The auxiliary loss would train the model to *predict*
# backwards text, working against the language knowledge the task relies on (with
# $\lambda = 0.5$ one of the seeds gets stuck near chance).

# %%
data = shakespeare_genre()                              # its speeches; the genre is unused here

def forwards_or_backwards(examples, seed):
    r = np.random.default_rng(seed)
    flip = r.random(len(examples)) < 0.5
    return [Example(text=e.text[::-1] if f else e.text, label="backwards" if f else "forwards")
            for e, f in zip(examples, flip)]

fb_labels = ["forwards", "backwards"]
pick = np.random.default_rng(0)
fb_train = forwards_or_backwards([data.train[i] for i in pick.choice(len(data.train), 2400, replace=False)], 1)
fb_test = forwards_or_backwards([data.test[i] for i in pick.choice(len(data.test), 300, replace=False)], 2)
enc_fb = TaskEncoder("classify", tok, n_ctx=cfg.n_ctx, labels=fb_labels)
fb_train_enc, fb_test_enc = enc_fb.encode(fb_train), enc_fb.encode(fb_test)
print(fb_train[0].label, repr(fb_train[0].text[:60]))
print(fb_train[1].label, repr(fb_train[1].text[:60]))

def accuracy(model, test_enc):
    batch = collate(test_enc, "classify")
    with minigpt.no_grad():
        logits, _ = model(batch.idx, batch.mask, batch.extract, batch.group)
    return float((logits.data.argmax(-1) == batch.labels).mean())

def finetune(gpt, train_enc, n_labels, steps, lr, lam, seed):
    """GPT-1's fine-tuning loop: L2 + lam L1, Adam with warmup_linear, batches of 16."""
    model = TaskModel(copy.deepcopy(gpt), make_head("classify", cfg.n_embd, n_labels, pdrop=0.0,
                                                    seed=seed), "classify")
    opt = optim.Adam(model.named_parameters(), lr=lr, schedule=optim.warmup_linear(steps, 0.05))
    order = np.random.default_rng(seed).permutation(len(train_enc))
    curve = []
    for step in range(steps):
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
    return model, np.array(curve)

fb_acc = [accuracy(finetune(base, fb_train_enc, 2, 150, 3e-3, 0.0, seed)[0], fb_test_enc)
          for seed in (0, 1)]
print(f"forwards or backwards: test accuracy {fb_acc} on seeds 0 and 1 (2 classes, chance 0.5)")

# %% [markdown]
# ## What the auxiliary loss does
# Fine-tune two copies of the same pretrained model on a harder Shakespeare task (the genre of
# a speech: comedy, history or tragedy), identical except for $\lambda$: 0 (task loss only)
# and 0.5 (GPT-1). The learning rate is high on purpose, to make the effect visible in 60
# steps: without $L_1$ the transformer drifts away from language modelling (its LM loss on
# held-out text rises); with it, the LM loss stays close to the pretrained value.

# %%
train = [data.train[i] for i in pick.choice(len(data.train), 960, replace=False)]
test = [data.test[i] for i in pick.choice(len(data.test), 300, replace=False)]
enc = TaskEncoder("classify", tok, n_ctx=cfg.n_ctx, labels=data.labels)
train_enc, test_enc = enc.encode(train), enc.encode(test)
runs = {}
for lam in (0.0, 0.5):
    model, curve = finetune(base, train_enc, 3, 60, 2e-3, lam, 1)
    runs[lam] = dict(curve=curve, lm=lm_val_loss(model.transformer), acc=accuracy(model, test_enc))
    print(f"lambda {lam}: test accuracy {runs[lam]['acc']:.3f} (3 classes, chance 0.333); "
          f"held-out LM loss {base_lm:.3f} -> {runs[lam]['lm']:.3f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
for lam, r in runs.items():
    axes[0].plot(r["curve"][:, 0], label=f"lambda = {lam}")
    axes[1].plot(r["curve"][:, 1], label=f"lambda = {lam}")
axes[0].set_title("task loss L2 (per batch)")
axes[1].set_title("LM loss L1 on the task's text (per batch)")
for ax in axes:
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("loss (nats)")
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
# ## Exercise: the similarity transformation by hand
# Write the two token sequences of a similarity pair as GPT-1 builds them (start, one text,
# delimiter, the other text, extract; both orders). The check compares with `TaskEncoder`.
# (Graded version: task `transforms.similar` of `minigpt assignments`.)

# %%
def similarity_sequences(a_ids, b_ids, start, delim, extract):
    """The two orderings of a pair, as lists of token ids."""
    # TODO: [start] a [delim] b [extract], then the same with a and b swapped
    ### BEGIN SOLUTION
    return [[start] + a_ids + [delim] + b_ids + [extract],
            [start] + b_ids + [delim] + a_ids + [extract]]
    ### END SOLUTION

mine = similarity_sequences(tok.encode(pair.text), tok.encode(pair.text2),
                            special["start"], special["delim"], special["extract"])
library = [list(s_) for s_ in enc_sim.encode([pair])[0].seqs]
print("your sequences == TaskEncoder's:", mine == library)

# %% [markdown]
# ## More exercises
# 1. Encode a multiple-choice example with 4 choices and collate two of them: what are
#    `batch.group` and the logits' shape, and how does the head know which rows belong
#    together?
# 2. Why does the similarity task run both orderings? (The model is causal: what can the
#    first text see of the second?)
# 3. Repeat the auxiliary-loss experiment with `lr=6.25e-5` (GPT-1's) and 600 steps. Does
#    the gap in the held-out LM loss remain?

# %%
assert shapes["classify"] == (2, 2) and shapes["entail"] == (2, 2) and shapes["similar"] == (2, 2)
assert shapes["choice"] == (2, 2) and shapes["tag"][0] == 2 and shapes["tag"][2] == 2
assert len(encoded["similar"].seqs) == 2 and len(encoded["choice"].seqs) == 2
s = encoded["entail"].seqs[0]
assert s[0] == special["start"] and s[-1] == special["extract"] and s.count(special["delim"]) == 1
assert sim_diff < 1e-5                                   # the same transformer, states added
assert swap_diff < 1e-5                                  # symmetric in a and b
assert min(fb_acc) > 0.9                                 # well above chance on every seed
assert runs[0.5]["lm"] < runs[0.0]["lm"]                 # the auxiliary loss keeps the LM
assert runs[0.0]["lm"] > base_lm                         # without it, the LM drifts
assert mine == library
print("all claims hold")
