# %% [markdown]
# # 10. Byte-pair encoding
#
# GPT-1 reads text as 40,478 sub-word tokens learned by byte-pair encoding (BPE): start from
# characters, then repeatedly merge the most frequent adjacent pair into a new symbol. Common
# words become single tokens, rare words are spelled from pieces, and no word is ever out of
# vocabulary as long as its characters are known. This notebook learns merges by hand on a
# toy corpus, checks them against `minigpt.tokenizers.BPETokenizer`, then watches the
# vocabulary grow on Shakespeare and the text shrink.

# %%
from collections import Counter
import matplotlib.pyplot as plt
from minigpt.tokenizers import BPETokenizer
from minigpt.data import load_corpus

plt.rcParams["figure.dpi"] = 120

# %% [markdown]
# ## Merges by hand (an exercise)
# Each word is a sequence of symbols, the last one marked `</w>` (end of word: "er" at the end
# of "lower" is not the "er" inside "very"). Count every adjacent pair over all words,
# weighted by word frequency; merge the most frequent (ties: the smallest pair in string
# order, as minigpt does, so the result never depends on dictionary order). The pair count is
# left for you in the released notebook; the cell after it checks your merges against the
# library's. (Graded version: task `bpe.learn_merges` of `minigpt assignments`.)

# %%
toy = "low " * 5 + "lower " * 2 + "newest " * 6 + "widest " * 3

def learn_merges(text, n):
    words = Counter(text.split())
    seqs = {w: list(w[:-1]) + [w[-1] + "</w>"] for w in words}
    merges = []
    for step in range(n):
        # TODO: pairs, a Counter of every adjacent pair (a, b), weighted by word frequency
        ### BEGIN SOLUTION
        pairs = Counter()
        for w, s in seqs.items():
            for a, b in zip(s, s[1:]):
                pairs[a, b] += words[w]
        ### END SOLUTION
        if not pairs:
            break
        best = max(pairs.values())
        a, b = min(p for p, c in pairs.items() if c == best)
        merges.append((a, b))
        for w, s in seqs.items():               # replace every (a, b) by ab, left to right
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
        print(f"merge {step + 1:2d}: {a!r:8} + {b!r:8} (count {best:2d})   "
              + "  ".join(" ".join(s) for s in seqs.values()))
    return merges

by_hand = learn_merges(toy, 10)

# %% [markdown]
# The library learns the same merges. Its reference (`learn_merges` in
# `minigpt/tokenizers/bpe_train.py`, what `BPETokenizer.train` runs in mode "reference", the
# `bpe` assignment's answer key) recounts every pair after each merge, as above; the tuned
# version beside it in `minigpt/tokenizers/bpe_train_fast.py`, which runs by default, updates the pair
# counts incrementally with a heap so that it also runs on megabytes; both are tested to learn
# the same merges:

# %%
lib = BPETokenizer.train(toy, num_merges=10)
print(lib.merges)
print("same merges:", lib.merges == by_hand)
import minigpt
with minigpt.use("reference"):                          # the recounting reference
    lib_reference = BPETokenizer.train(toy, num_merges=10)
print("the reference learns them too:", lib_reference.merges == by_hand)
print("'lowest' ->", [lib.id_to_token(i) for i in lib.encode("lowest")])

# %% [markdown]
# ## On Shakespeare: the vocabulary grows, the text shrinks
# Learn 1,000 merges on 300,000 characters of the plays. Every prefix of the merge list is a
# tokenizer of its own (the vocabulary: the base symbols plus the tokens of the first $k$
# merges), so one training run shows the whole curve: tokens per character of held-out text
# against vocabulary size.

# %%
corpus = load_corpus("shakespeare")
train_text, val_text = corpus.train[:300_000], corpus.val[:30_000]
full = BPETokenizer.train(train_text, num_merges=1000)
vocab = full.get_vocab()
merges = full.merges
n_base = min(i for t, i in vocab.items() if t == merges[0][0] + merges[0][1])  # first merge token's id
print(f"base symbols (with <unk>): {n_base}; merges learned: {len(merges)}; vocabulary {len(vocab)}")

def prefix_tokenizer(k):
    new = []
    for a, b in merges[:k]:
        if a + b not in new and vocab[a + b] >= n_base:
            new.append(a + b)
    size = n_base + len(new)
    return BPETokenizer({t: i for t, i in vocab.items() if i < size}, merges[:k])

n_chars = len(val_text)
n_word_chars = sum(len(w) for w in full.pre_tokenize(val_text))  # characters, spaces left out
rows = []
for k in (0, 25, 50, 100, 200, 400, 700, 1000):
    t = prefix_tokenizer(k)
    ids = t.encode(val_text)
    rows.append((k, t.vocab_size, len(ids) / n_chars))
    print(f"{k:5d} merges: vocabulary {t.vocab_size:5d}, {len(ids) / n_chars:.3f} tokens per character")

# %%
line = "Wherefore art thou Romeo? Deny thy father and refuse thy name."
for k in (0, 50, 200, 1000):
    t = prefix_tokenizer(k)
    pieces = [t.id_to_token(i).replace("</w>", "_") for i in t.encode(line)]
    print(f"{k:5d} merges, {len(pieces):2d} tokens: {' '.join(pieces)}")

# %%
ks, sizes, ratio = zip(*rows)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
axes[0].plot(ks, sizes, "o-")
axes[0].set_xlabel("merges")
axes[0].set_ylabel("vocabulary size")
axes[1].plot(sizes, ratio, "o-")
axes[1].set_xlabel("vocabulary size")
axes[1].set_ylabel("tokens per character (held-out)")
axes[0].set_title("one new token per merge")
axes[1].set_title("the text gets shorter")
plt.tight_layout()
plt.show()
print("the first 15 merges:", [a + b for a, b in merges[:15]])

# %% [markdown]
# The first merges are the most frequent letter pairs and short function words ("the",
# "and"); later ones build whole rarer words. Each merge saves fewer tokens than the one
# before: the curve flattens, which is why GPT-1 stops at 40,000 merges. Decoding gives the
# normalised text back (lower case, punctuation split off, single spaces):

# %%
print(repr(full.decode(full.encode(line))))
print(repr(full.normalize(line)))

# %% [markdown]
# ## Exercises
# 1. Add a word the training text never had ("quizzically") and encode it: how many tokens?
#    Which characters would become `<unk>`?
# 2. What would change if the end-of-word marker were dropped? Find two words whose
#    segmentations would collide.
# 3. The reference `BPETokenizer.encode` applies the *lowest-ranked* merge first, not
#    left-to-right. Find a word where the two orders give different tokens.

# %%
assert by_hand == lib.merges == lib_reference.merges
assert by_hand[0] == ("e", "s") and ("es", "t</w>") == by_hand[1]
assert all(r1[2] > r2[2] for r1, r2 in zip(rows, rows[1:]))          # monotone compression
assert round(rows[0][2] * n_chars) == n_word_chars   # no merges: one token per character of a word
assert rows[-1][2] < 0.6 * rows[0][2]
assert full.decode(full.encode(line)) == full.normalize(line)
assert [len(set(prefix_tokenizer(k).get_vocab())) for k in (0, 1000)] == [n_base, len(vocab)]
print("all claims hold")
