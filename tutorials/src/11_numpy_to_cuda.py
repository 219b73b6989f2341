# %% [markdown]
# # 11. From NumPy to CUDA: tiled attention with an online softmax
#
# `F.attention` materialises the whole score matrix $S = QK^T/\sqrt{d}$ of shape (T, T) per
# head. The CUDA kernels in `kernels/04_attention_flash_fwd.cu` and `05_attention_flash_bwd.cu`
# never do: they walk over tiles of keys and keep a running maximum and a running sum per query
# row. `minigpt/cuda/tiled_attention.py` is the same algorithm in NumPy, loop for loop. This
# notebook checks that the two agree, shows the one idea that makes tiling possible
# (rescaling a partial softmax when a larger maximum appears), and maps each NumPy loop to the
# part of the kernel that runs it. The GPU cells at the end run only where CuPy finds a GPU.

# %%
import inspect
import numpy as np
import matplotlib.pyplot as plt
import minigpt
from minigpt import Tensor
import minigpt.functional as F
from minigpt.cuda import tiled_attention, loader

rng = np.random.default_rng(0)
plt.rcParams["figure.dpi"] = 120

# %% [markdown]
# ## The online softmax
# For scores $s_1..s_n$ seen in two chunks, keep $m$ (max so far) and
# $\ell = \sum e^{s_j - m}$. When a new chunk raises the max to $m'$, the old sum is rescaled
# by $e^{m - m'}$.

# %%
s = rng.standard_normal(10) * 3
m, l = -np.inf, 0.0
for chunk in (s[:4], s[4:]):
    m_new = max(m, chunk.max())
    l = l * np.exp(m - m_new) + np.exp(chunk - m_new).sum()
    m = m_new
online_lse = m + np.log(l)
print("online log-sum-exp == direct:", np.isclose(online_lse, np.log(np.exp(s).sum())))

# %% [markdown]
# ## Tiled attention against the reference op
# Any T works, including one that is not a multiple of the tile size, with causal and padding
# masks (the mask rule is the one function of `minigpt/ops/attention.py`, sliced tile by tile).

# %%
B, nh, T, hs = 2, 3, 100, 16                       # T = 100: one full tile of 64 and a partial one
q, k, v = (rng.standard_normal((B, nh, T, hs)) for _ in range(3))
pad = np.ones((B, T), dtype=bool)
pad[1, 90:] = False                                # the second sequence ends with padding
with minigpt.use("reference"):
    naive = F.attention(Tensor(q), Tensor(k), Tensor(v), causal=True, padding_mask=pad).data
o, lse = tiled_attention.flash_attention_forward(q, k, v, causal=True, padding_mask=pad,
                                                 block_q=64, block_k=64)
forward_diff = np.abs(o - naive).max()
print("max |tiled - reference| =", forward_diff)

# %% [markdown]
# ## What the forward saves: O and one number per row
# The reference backward needs the whole probability matrix P. The tiled backward recomputes
# each tile of P from Q, K and the saved row log-sum-exp: $P_{ij} = e^{s_{ij} - \mathrm{lse}_i}$.
# Memory drops from O(T²) to O(T) per head.

# %%
g = rng.standard_normal(o.shape)                   # a random upstream gradient dO
dq, dk, dv = tiled_attention.flash_attention_backward(q, k, v, o, lse, g, causal=True,
                                                      padding_mask=pad)
tq, tk, tv = (Tensor(a, requires_grad=True) for a in (q, k, v))
with minigpt.use("reference"):
    F.attention(tq, tk, tv, causal=True, padding_mask=pad).backward(g)
backward_diffs = {}
for name, a, b in (("dq", dq, tq.grad), ("dk", dk, tk.grad), ("dv", dv, tv.grad)):
    backward_diffs[name] = np.abs(a - b).max()
    print(name, "max difference", backward_diffs[name])
print("reference P would hold", B * nh * T * T, "numbers; lse holds", lse.size)

# %%
Ts = np.array([128, 256, 512, 1024, 2048])
fig, ax = plt.subplots(figsize=(5.5, 3))
ax.loglog(Ts, 4 * Ts ** 2 / 2 ** 20, "o-", label="P, float32 (reference)")
ax.loglog(Ts, 4 * Ts / 2 ** 20, "s-", label="lse, float32 (tiled)")
ax.set_xlabel("T")
ax.set_ylabel("MiB per head and sequence")
ax.set_title("what the backward keeps per head")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## From the NumPy loops to the kernel
# The forward, as `tiled_attention.py` writes it:

# %%
print(inspect.getsource(tiled_attention.flash_attention_forward))

# %% [markdown]
# | NumPy (`flash_attention_forward`) | CUDA (`04_attention_flash_fwd.cu`, `tiles.cuh`) |
# | --- | --- |
# | `for q0 in range(0, Tq, block_q)`: one query tile of 64 rows | one thread block (256 threads) per query tile and head: the grid is (query tiles, B·nh) |
# | `qt = q[:, :, q0:q1]` | Q tile loaded once into shared memory |
# | `for k0 in range(0, _key_end(...), block_k)` | K and V stream through shared memory BN rows at a time; causal blocks stop at the diagonal |
# | `s = qt @ k_tile.T * scale` | `tile_dot`: each thread owns 4 rows × BN/16 columns of S, in registers |
# | `m`, `l`, `acc` and the rescale by `alpha` | per-row running max and sum in registers; `exp2f` on scores pre-multiplied by log2 e |
# | `acc += p @ v_tile` | `tile_pv`: P goes through shared memory, O accumulates in registers |
# | `o = acc / l`, `lse = m + log l` | the only global writes: O and one lse per row |
#
# The backward (`05_attention_flash_bwd.cu`) has the same shape with the loops swapped: one block
# per *key* tile accumulates dK and dV over the query tiles that see it, and a second kernel (or
# rung 10's one-pass variant) accumulates dQ. The whole ladder of kernels, from the first line of
# each file:

# %%
kdir = loader.kernel_dir()
for name in sorted(loader.KERNEL_FILES.values()):
    print(loader.load_source(name, kdir).splitlines()[0].lstrip("/ "))

# %% [markdown]
# With the causal mask a query tile needs only the key tiles up to the diagonal: the kernels
# skip the rest, about half the work at Tq = Tk. Here are the tile pairs one (batch, head)
# visits for T = 512 with 64 × 64 tiles:

# %%
T_big, bq, bk = 512, 64, 64
visited = np.zeros((T_big // bq, T_big // bk), dtype=bool)
for qi, q0 in enumerate(range(0, T_big, bq)):
    q1 = q0 + bq
    for ki, k0 in enumerate(range(0, min(T_big, q1), bk)):   # the causal key end, as in the NumPy
        visited[qi, ki] = True
fig, ax = plt.subplots(figsize=(3.5, 3.5))
ax.imshow(visited, cmap="Blues", vmin=0, vmax=1.2)
ax.set_xlabel("key tile (BN = 64 rows of K, V)")
ax.set_ylabel("query tile = thread block")
ax.set_title(f"{visited.sum()} of {visited.size} tile pairs")
plt.show()
blocks = 8 * 12 * (T_big // bq)
print(f"GPT-1 shapes (B=8, 12 heads, T=512): {blocks} thread blocks of 256 threads")

# %% [markdown]
# ## On a GPU
# With CuPy and an NVIDIA GPU, `minigpt.dispatch` sends float32 CuPy inputs of `F.attention`
# to the fused kernels (`minigpt.use("auto")`, the default). Without one, these cells say so
# and skip.

# %%
from minigpt import dispatch
from minigpt.backend import cupy_module
try:
    cp = cupy_module()
    gpu_reason = None
except Exception as e:                              # no CuPy, or no GPU
    cp, gpu_reason = None, str(e)
print("GPU:", "yes" if cp is not None else f"no ({gpu_reason}); the GPU cells skip")

# %%
if cp is None:
    print("skipped: no GPU")
else:
    qg, kg, vg = (cp.asarray(a.astype(np.float32)) for a in (q, k, v))
    padg = cp.asarray(pad)
    impl = dispatch.choose("attention", qg, kg, vg, causal=True, padding_mask=padg)
    og = F.attention(Tensor(qg), Tensor(kg), Tensor(vg), causal=True, padding_mask=padg).data
    gpu_diff = float(np.abs(cp.asnumpy(og) - o).max())
    print(f"hs = 16 runs {impl.__name__}: max |GPU float32 - tiled NumPy float64| = {gpu_diff:.2e}")
    x = cp.asarray(rng.standard_normal((8, 12, 512, 64)).astype(np.float32))
    print("GPT-1-sized inputs run:", dispatch.choose("attention", x, x, x, causal=True).__name__)
    o_big = F.attention(Tensor(x), Tensor(x), Tensor(x), causal=True).data
    print("GPT-1-sized attention forward (8 x 12 heads x 512 x 64): output", o_big.shape,
          "finite:", bool(cp.isfinite(o_big).all()))
    # (timings: benchmarks/, not a notebook whose outputs are committed)
    assert gpu_diff < 1e-4

# %% [markdown]
# ## Exercises
# 1. Run `flash_attention_forward` with `block_k=7`. Does anything change in the result? In
#    the number of rescalings?
# 2. The kernels keep scores in base-2 units ($s \log_2 e$) and use `exp2f`. Rewrite the
#    online softmax cell that way and check the log-sum-exp.
# 3. Count the reads of K from global memory for the reference (one per query row) and the
#    tiled forward (one per query tile) at T = 512.

# %%
assert np.isclose(online_lse, np.log(np.exp(s).sum()))
assert forward_diff < 1e-12 and max(backward_diffs.values()) < 1e-10
assert lse.size * T == B * nh * T * T
assert visited.sum() == (T_big // bq) * (T_big // bq + 1) // 2     # the lower triangle only
assert len(loader.KERNEL_FILES) >= 10
print("all claims hold")
