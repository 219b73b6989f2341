# %% [markdown]
# # 13. Data parallelism: N copies of the model, one run
#
# GPT-1 was pretrained on 8 GPUs. Each GPU held a copy of the model and a slice of every
# batch; after each backward pass the copies **summed their gradients** (an *all-reduce*), so
# every copy made the same Adam update and the copies stayed equal. This notebook simulates
# the ranks in one process (plain Python lists stand for the processes) and checks the three
# facts `mpiexec -n N minigpt pretrain` relies on (minigpt/distributed):
#
# 1. the weighted sum of the ranks' gradients **is** the gradient of the big batch;
# 2. the ring all-reduce computes that sum while each rank sends only 2 (N-1)/N of the buffer;
# 3. the batch must be drawn by a **global** sampler (and dropout masks by global row), or the
#    run depends on N.

# %%
import numpy as np
import minigpt
from minigpt import random as mgrandom
from minigpt.distributed import GlobalRowMasks, row_slices

cfg = minigpt.GPTConfig(vocab_size=13, n_ctx=8, n_layer=2, n_embd=16, n_head=2,
                        dtype="float64", embd_pdrop=0.1, attn_pdrop=0.1, resid_pdrop=0.1)
model = minigpt.GPT(cfg, seed=0)
model.train()
data = np.random.default_rng(1)
B, T = 8, 8
x, y = data.integers(0, 13, (B, T)), data.integers(0, 13, (B, T))


def gradients(loss):
    for p in model.parameters():
        p.grad = None
    loss.backward()
    return [p.grad.copy() for p in model.parameters()]


# %% [markdown]
# ## 1. Summing the ranks' gradients is the big batch
#
# One process: the loss is the mean over all B x T positions. N ranks: rank r computes the mean
# over its own rows. Its gradient, weighted by its share of the global batch (rows/B), summed
# over the ranks, is the one-process gradient: $\nabla \frac1{BT}\sum_{i} \ell_i =
# \sum_r \frac{b_r}{B} \nabla \frac1{b_r T} \sum_{i \in r} \ell_i$.
# The dropout masks come from the shared generator, replayed per rank, each rank keeping its
# rows (`GlobalRowMasks`).

# %%
mgrandom.manual_seed(5)
big = gradients(model.loss(x, y))

N = 4
summed = [np.zeros_like(g) for g in big]
for rows in row_slices(B, N):                     # rank r holds rows[r] of the global batch
    mgrandom.manual_seed(5)                       # every rank: the same random state
    with GlobalRowMasks(B).rows(rows):
        loss_r = model.loss(x[rows], y[rows])     # the mean over this rank's rows
    share = (rows.stop - rows.start) / B
    for s, g in zip(summed, gradients(loss_r * share)):
        s += g                                    # what the all-reduce adds up
worst = max(float(np.abs(s - g).max()) for s, g in zip(summed, big))
print(f"largest difference from the big batch's gradient: {worst:.1e}")
assert worst < 1e-12

# %% [markdown]
# ## 2. The ring all-reduce, step by step
#
# N ranks in a ring, each buffer cut into N chunks. **Reduce-scatter** (N-1 steps): at step s,
# rank r sends chunk (r - s) mod N to rank r+1, which adds it to its own. After N-1 steps rank
# r holds the full sum of chunk (r+1) mod N. **All-gather** (N-1 steps): the finished chunks go
# round the ring once more, copied instead of added. Each rank sends 2(N-1) chunks of 1/N of the
# buffer: 2 (N-1)/N x bytes, almost independent of N. (MPI and NCCL choose such algorithms for
# us; minigpt calls `Allreduce`.)

# %%
def ring_allreduce(buffers, trace=None):
    """Sum of the ranks' buffers on every rank (each a 1-D array), by the ring algorithm."""
    n = len(buffers)
    bufs = [b.copy() for b in buffers]
    chunks = [np.array_split(np.arange(len(bufs[0])), n) for _ in range(n)][0]
    for s in range(n - 1):                                  # reduce-scatter
        sent = [bufs[r][chunks[(r - s) % n]].copy() for r in range(n)]
        for r in range(n):
            bufs[(r + 1) % n][chunks[(r - s) % n]] += sent[r]
        if trace is not None:
            trace.append([b.copy() for b in bufs])
    for s in range(n - 1):                                  # all-gather
        sent = [bufs[r][chunks[(r + 1 - s) % n]].copy() for r in range(n)]
        for r in range(n):
            bufs[(r + 1) % n][chunks[(r + 1 - s) % n]] = sent[r]
        if trace is not None:
            trace.append([b.copy() for b in bufs])
    return bufs


ranks = [np.eye(4)[r] * (r + 1) for r in range(4)]          # rank r holds r+1 in slot r
trace = [[b.copy() for b in ranks]]
out = ring_allreduce(ranks, trace)
for b in out:
    assert np.array_equal(b, sum(ranks))
buffers = [np.random.default_rng(r).standard_normal(10) for r in range(3)]  # 10 into 3 chunks
assert all(np.allclose(b, sum(buffers)) for b in ring_allreduce(buffers))

# %%
import matplotlib.pyplot as plt

plt.rcParams["figure.dpi"] = 110

fig, axes = plt.subplots(1, len(trace), figsize=(2.0 * len(trace), 2.2))
titles = ["start"] + [f"reduce-scatter {s + 1}" for s in range(3)] + \
         [f"all-gather {s + 1}" for s in range(3)]
for ax, state, title in zip(axes, trace, titles):
    ax.imshow(np.stack(state), cmap="Blues", vmin=0, vmax=10)
    for r in range(4):
        for c in range(4):
            ax.text(c, r, f"{state[r][c]:g}", ha="center", va="center", fontsize=8)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([]); ax.set_yticks(range(4)); ax.set_yticklabels([f"rank {r}" for r in range(4)],
                                                                  fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. The cost model
#
# Time per step $\approx 2\frac{N-1}{N}\cdot\frac{\text{bytes}}{\text{bandwidth}}$. GPT-1 has
# 117M parameters: 466 MB of float32 gradients.

# %%
nbytes = 4 * 116_534_784
for name, gbps in (("NVLink, 300 GB/s", 300.0), ("100 Gb/s Ethernet, 12.5 GB/s", 12.5)):
    for n in (2, 8, 64):
        t = 2 * (n - 1) / n * nbytes / (gbps * 1e9)
        print(f"{name:30} N={n:3}: predicted all-reduce per step {t * 1e3:6.1f} (milliseconds)")

# %% [markdown]
# ## 4. Why the sampler must be global
#
# If each rank drew its own rows from its own generator (seeded by its rank), the batches, and
# so the whole run, would change with N. minigpt's ranks draw the **same** global batch (the
# same generator state on every rank) and each takes its slice: the rows do not depend on N.

# %%
def local_sampler(n, seed=0):
    rows = []
    for r in range(n):                                 # each rank its own stream
        rows.append(np.random.default_rng(seed + r).integers(0, 1000, B // n))
    return np.concatenate(rows)


def global_sampler(n, seed=0):
    batch = np.random.default_rng(seed).integers(0, 1000, B)  # the same on every rank
    return np.concatenate([batch[s] for s in row_slices(B, n)])


assert not np.array_equal(local_sampler(1), local_sampler(2))
assert all(np.array_equal(global_sampler(1), global_sampler(n)) for n in (2, 4, 8))
print("global sampler, N = 1, 2, 4, 8:", global_sampler(4))
