#!/usr/bin/env python3
"""The one prepared GPU check (make gpu-check): installs nothing, runs in under 5 minutes.

    python3 tools/gpu_check.py                 # from the repository root, on a GPU machine
    GPU_CHECK_BUDGET_S=280 GPU_CHECK_SKIP=sanitizer,attention python3 tools/gpu_check.py

Sections, in this order (each one runs in its own process with its own time limit; a failure
or a timeout is reported with its reason and the next section still runs):
  env        GPU, driver, CuPy, PyTorch versions
  compile    every kernels/*.cu through the loader (CuPy RawModule, NVRTC), timed
  tests      pytest tests/test_gpu*.py: every kernel against float64 references, determinism,
             the Functions, Adam bit for bit, a GPT trained on CuPy against the NumPy run
  model      whole-model training tokens/s: minigpt on CuPy with the kernels (fused) and
             without (plain), PyTorch float32 eager (explicit masked softmax, per-tensor AdamW)
             and best (SDPA + fused AdamW), same initial weights; presets small (B=16, T=128)
             and gpt1 (B=8, T=512), GPT-1's dropout (0.1) on and off
  profile    cProfile of 5 training steps of the small preset on CuPy: where the host time goes
  kernels    per-kernel table: each new kernel against the plain CuPy path it replaces (the
             reference op on CuPy arrays), ms and effective GB/s, at GPT-1's sizes
  sanitizer  compute-sanitizer memcheck and racecheck over one small launch of every kernel
  attention  benchmarks/bench_attention_gpu.py at B=8, nh=12, hs=64, T = 512 (and 1024 when the
             budget is over 200 s)
Each part gets its share (SHARES) of the time left for it and the parts after it, out of
GPU_CHECK_BUDGET_S (default 285 s).
Logs and JSON go to $OUT (or ./gpu_check_out); the tables are printed last.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("OUT") or REPO / "gpu_check_out")
BUDGET_S = float(os.environ.get("GPU_CHECK_BUDGET_S", 285))
SKIP = {s.strip() for s in os.environ.get("GPU_CHECK_SKIP", "").split(",") if s.strip()}
T0 = time.time()


def left() -> float:
    return BUDGET_S - (time.time() - T0)


# each timed part's share of the budget, in the order they run
# (measured on an H100, fresh machine: compile ~15 s, 216 GPU tests ~30 s, a GPT-1 model with
# its first steps ~10 s, memcheck ~3 s, racecheck > 14 s)
SHARES = {"compile": 0.07, "tests": 0.2, "model-small": 0.15, "model-gpt1": 0.25,
          "profile": 0.04, "kernels": 0.08, "memcheck": 0.04, "racecheck": 0.09, "attention": 0.08}
_done: set = set()


def share(part: str, cap: float) -> float:
    """The time limit of a part: what is left, split between it and the parts still to run in
    proportion to their shares (so time a part did not use goes to the later ones), at most
    cap seconds."""
    pending = sum(f for k, f in SHARES.items() if k not in _done)
    _done.add(part)
    return max(5.0, min(cap, left() * SHARES[part] / max(pending, 1e-9)))


def sh(cmd, timeout, log_name=None, env=None):
    """Run cmd, save its output under OUT; returns (rc, output). Never raises."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(env or {})}
    t = time.time()
    timeout = max(5.0, timeout)
    try:
        res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=timeout)
        rc, out = res.returncode, res.stdout + res.stderr
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        rc, out = 124, out + f"\n[timed out after {timeout:.0f} s]"
    except Exception as e:  # noqa: BLE001  (a missing program, say: report and go on)
        rc, out = 127, f"[could not run: {e!r}]"
    if log_name:
        (OUT / log_name).write_text(out)
    shown = " ".join(str(c) if len(str(c)) < 60 else "<script>" for c in cmd)
    print(f"$ {shown}   [rc={rc}, {time.time() - t:.1f} s]", flush=True)
    return rc, out


def tagged(out: str, tag: str):
    """The JSON after each line starting with `tag `."""
    found = []
    for line in out.splitlines():
        if line.startswith(tag + " "):
            try:
                found.append(json.loads(line.split(" ", 1)[1]))
            except ValueError:
                pass
    return found


COMPILE_CASE = r"""
import time, json
from minigpt.cuda import loader as L
prov = L.get_provider()
for f in sorted(set(L.KERNEL_FILES.values())):
    t = time.time()
    try:
        prov.module(f); print("COMPILE " + json.dumps({f: round(time.time() - t, 2)}))
    except Exception as e:
        print("COMPILE " + json.dumps({f: "FAILED " + str(e)[:300]}))
"""

SANITIZE_CASE = r"""
import numpy as np, cupy as cp
from minigpt.cuda import attention as A, layers, adam, loader as L
rng = np.random.default_rng(0)
dev = lambda *s: cp.asarray(rng.standard_normal(s).astype(np.float32))
def part(name, fn):
    try:
        fn(); cp.cuda.Device().synchronize(); print("ok", name)
    except Exception as e:
        print("PART FAILED", name, repr(e)[:300])
def attention():
    for hs in (32, 64, 128):
        q, k, v, g = (dev(2, 2, 70, hs) for _ in range(4))
        pm = cp.asarray((rng.random((2, 70)) > 0.3).astype(np.float32))
        for variant in A.ATTENTION_VARIANTS:
            for p in ((0.0, 0.1) if variant != "naive" else (0.0,)):
                o, lse = A.attention_forward(q, k, v, True, pm, variant, dropout_p=p, seed=3)
                A.attention_backward(q, k, v, o, lse, g, True, pm, variant, dropout_p=p, seed=3)
def softmax():
    x = dev(2, 70, 70)
    for variant in A.SOFTMAX_VARIANTS:
        y = A.softmax_forward(x, 0.5, True, variant); A.softmax_backward(y, x, 0.5, True, variant)
def layernorm():
    x, r, g = dev(37, 200), dev(37, 200), dev(37, 200)
    w, b = dev(200), dev(200)
    for res in (None, r):
        y, s, m, rs = layers.layer_norm_forward(x, w, b, 1e-5, residual=res)
        layers.layer_norm_backward(s, w, m, rs, g)
def xent():
    z = dev(9, 1000); t = cp.asarray(rng.integers(0, 1000, 9)); t[2] = -100
    losses, lse, stats = layers.xent_forward(z, t)
    layers.xent_backward(z, t, lse, stats, cp.ones(1, np.float32))
    layers.xent_forward(z, t, grad_scale=0.125)
def adam_():
    shapes = [(300, 70), (70,), (5000,)]
    ps, gs, ms, vs = ([dev(*s) for s in shapes] for _ in range(4))
    vs = [cp.abs(v) for v in vs]
    adam.grad_norm(gs)
    adam.update_arrays(ps, gs, ms, vs, [0.01, 0.0, 0.0], 1e-3, (0.9, 0.999), 1e-8, 0.5)
def gelu():
    from minigpt.cuda import gelu as G
    x, g, b = dev(33, 300), dev(33, 300), dev(300)
    G.bias_gelu_forward(x, b); G.bias_gelu_backward(g, x, b)
for name, fn in (("attention", attention), ("softmax", softmax), ("layernorm", layernorm),
                 ("xent", xent), ("adam", adam_), ("gelu", gelu)):
    part(name, fn)
print("sanitize case done")
"""

KERNELS_CASE = r"""
# each new kernel against the plain CuPy path it replaces (the reference op on CuPy arrays),
# at GPT-1's sizes: N = B*T = 8*512 rows, C = 768, V = 40478, GPT-1's 148 parameter arrays
import json, math, statistics, numpy as np, cupy as cp
from minigpt.cuda import layers, adam
from minigpt.ops.layer_norm import LayerNorm
from minigpt.ops.cross_entropy import CrossEntropy
from minigpt.optim import adam_update
from minigpt import dispatch
rng = np.random.default_rng(0)
dev = lambda *s: cp.asarray(rng.standard_normal(s).astype(np.float32))
sync = cp.cuda.Device().synchronize
def ms(fn, reps=10):
    fn(); sync()
    a, b = cp.cuda.Event(), cp.cuda.Event(); t = []
    for _ in range(reps):
        a.record(); fn(); b.record(); b.synchronize(); t.append(cp.cuda.get_elapsed_time(a, b))
    return statistics.median(t)
def row(name, nbytes, fused, plain, reps=10):
    try:
        f = ms(fused, reps); p = ms(plain, reps)
        print("KERNEL " + json.dumps({"kernel": name, "fused_ms": f, "plain_ms": p,
                                       "fused_GBs": nbytes / f / 1e6, "plain_GBs": nbytes / p / 1e6}))
    except Exception as e:
        print("KERNEL " + json.dumps({"kernel": name, "error": repr(e)[:200]}))
N, C, V = 8 * 512, 768, 40478
x, r, g = dev(N, C), dev(N, C), dev(N, C); w, b = dev(C), dev(C)
y, s, mean, rstd = layers.layer_norm_forward(x, w, b)
ref = LayerNorm(); ref.forward(x, w, b)
row("layernorm fwd (06)", 8 * N * C, lambda: layers.layer_norm_forward(x, w, b),
    lambda: LayerNorm().forward(x, w, b))
row("add+layernorm fwd (06)", 16 * N * C, lambda: layers.layer_norm_forward(x, w, b, residual=r),
    lambda: LayerNorm().forward(x + r, w, b))
# does fusing the residual add pay? against the CuPy add followed by kernel 06 without it
row("  vs add (CuPy) + layernorm (06)", 16 * N * C,
    lambda: layers.layer_norm_forward(x, w, b, residual=r),
    lambda: layers.layer_norm_forward(x + r, w, b))
row("layernorm bwd (06)", 12 * N * C, lambda: layers.layer_norm_backward(s, w, mean, rstd, g),
    lambda: ref.backward(g))
del r, y, s, ref
z = dev(N, V); t = cp.asarray(rng.integers(0, V, N))
losses, lse, stats = layers.xent_forward(z, t)
one = cp.ones((), np.float32)
xref = CrossEntropy(); xref.forward(z, targets=t, ignore_index=-100)
row("softmax+xent fwd (08)", 4 * N * V, lambda: layers.xent_forward(z, t),
    lambda: CrossEntropy().forward(z, targets=t, ignore_index=-100), reps=5)
row("softmax+xent bwd (08)", 8 * N * V, lambda: layers.xent_backward(z, t, lse, stats, one),
    lambda: xref.backward(one), reps=5)
del z, xref, losses, lse
shapes = [(40478, 768), (512, 768)] + [sh for _ in range(12) for sh in [
    (768, 2304), (2304,), (768, 768), (768,), (768,), (768,), (768, 3072), (3072,), (3072, 768),
    (768,), (768,), (768,)]]
n = sum(math.prod(sh) for sh in shapes)
ps, gs, ms_, vs = ([dev(*sh) * 0.01 for sh in shapes] for _ in range(4))
vs = [cp.abs(v) for v in vs]
wds = [0.01 if len(sh) >= 2 else 0.0 for sh in shapes]
def plain_adam():
    for p, gg, m, v, wd in zip(ps, gs, ms_, vs, wds):
        adam_update(p, gg, m, v, lr_t=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
row(f"adam step, {len(shapes)} arrays (09)", 28 * n,
    lambda: adam.update_arrays(ps, gs, ms_, vs, wds, 1e-4, (0.9, 0.999), 1e-8), plain_adam, reps=5)
plain_norm = dispatch.registered()["grad_norm"]["reference"]
row("grad norm (09)", 4 * n, lambda: adam.grad_norm(gs), lambda: plain_norm(gs), reps=5)
try:
    from minigpt.cuda import gelu as G
    from minigpt.ops.gelu import GELU
    h, hb = dev(N, 4 * C), dev(4 * C)
    row("bias+gelu fwd (07)", 8 * N * 4 * C, lambda: G.bias_gelu_forward(h, hb),
        lambda: GELU().forward(h + hb))
except Exception as e:
    print("KERNEL " + json.dumps({"kernel": "bias+gelu (07)", "error": repr(e)[:200]}))
"""

MODEL_CASE = r"""
# training tokens/s of one preset: minigpt on CuPy with the kernels (fused) and without
# (plain), PyTorch float32 eager and best (SDPA + fused AdamW), minigpt's initial weights,
# dropout as GPT-1 (0.1) or off. Usage: MODEL_CASE PRESET B T MAX_SECONDS
import gc, json, math, sys, time, numpy as np
preset, B, T, budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
t_start = time.time()
from minigpt.model import GPT, GPTConfig
from minigpt.optim import Adam
from minigpt.cuda import loader as L
import cupy as cp

def timed(step, sync, share):
    # warm up 2 steps, then time at least 3 steps or `share` seconds, at most 20 steps
    for _ in range(2):
        step()
    sync(); t = time.time(); n = 0
    while n < 3 or (time.time() - t < share and n < 20):
        step(); n += 1
        if n == 3:
            sync()
    sync()
    return B * T * n / (time.time() - t)

def torch_gpt(torch, cfg, state, best, dev):
    TF = torch.nn.functional
    p = {k: torch.nn.Parameter(torch.from_numpy(np.array(v, copy=True)).to(dev)) for k, v in state.items()}
    C, nh = cfg.n_embd, cfg.n_head
    hs = C // nh
    eps = cfg.layer_norm_epsilon
    mask = torch.ones(cfg.n_ctx, cfg.n_ctx, dtype=torch.bool, device=dev).tril()
    def forward(idx):
        Bn, Tn = idx.shape
        h = TF.dropout(TF.embedding(idx, p["tokens_embed.weight"]) + p["positions_embed.weight"][:Tn], cfg.embd_pdrop)
        for i in range(cfg.n_layer):
            w = lambda n: p[f"h.{i}.{n}"]
            qkv = torch.addmm(w("attn.c_attn.bias"), h.reshape(Bn * Tn, C), w("attn.c_attn.weight"))
            q, k, v = qkv.view(Bn, Tn, 3, nh, hs).permute(2, 0, 3, 1, 4)
            if best:
                y = TF.scaled_dot_product_attention(q, k, v, dropout_p=cfg.attn_pdrop, is_causal=True)
            else:
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
                att = att.masked_fill(~mask[:Tn, :Tn], float("-inf"))
                y = TF.dropout(torch.softmax(att, dim=-1), cfg.attn_pdrop) @ v
            y = y.transpose(1, 2).reshape(Bn * Tn, C)
            a = TF.dropout(torch.addmm(w("attn.c_proj.bias"), y, w("attn.c_proj.weight")), cfg.resid_pdrop)
            n_ = TF.layer_norm(h + a.view(Bn, Tn, C), (C,), w("ln_1.weight"), w("ln_1.bias"), eps)
            m = TF.gelu(torch.addmm(w("mlp.c_fc.bias"), n_.reshape(Bn * Tn, C), w("mlp.c_fc.weight")), approximate="tanh")
            m = TF.dropout(torch.addmm(w("mlp.c_proj.bias"), m, w("mlp.c_proj.weight")), cfg.resid_pdrop)
            h = TF.layer_norm(n_ + m.view(Bn, Tn, C), (C,), w("ln_2.weight"), w("ln_2.bias"), eps)
        return h.reshape(Bn * Tn, C) @ p["tokens_embed.weight"].T
    groups = [{"params": [q for q in p.values() if q.ndim >= 2], "weight_decay": 0.01},
              {"params": [q for q in p.values() if q.ndim < 2], "weight_decay": 0.0}]
    kind = {"fused": True} if best else {"foreach": False}
    opt = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, **kind)
    params = list(p.values())
    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = TF.cross_entropy(forward(x), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    return step

rng = np.random.default_rng(0)
for dropout in (0.1, 0.0):
    cfg = GPTConfig.preset(preset, embd_pdrop=dropout, attn_pdrop=dropout, resid_pdrop=dropout)
    idx = rng.integers(0, cfg.vocab_size, (B, T + 1))
    state = model = opt = None  # one minigpt model per setting: the fused and plain runs share it
    # the cells that matter most first (a short budget loses the last ones)
    for mode in ("fused", "torch-eager", "torch-best", "plain"):
        left = budget - (time.time() - t_start)
        key = {"preset": preset, "B": B, "T": T, "dropout": dropout, "impl": mode}
        if left < 4:
            print("MODEL " + json.dumps({**key, "error": "no time left"})); continue
        try:
            if mode in ("fused", "plain"):
                if model is None:
                    model = GPT(cfg, seed=0)
                    state = {k: np.array(v, copy=True) for k, v in model.state_dict().items()}
                    model.to("cuda"); model.train()
                    opt = Adam(model.parameters(), lr=1e-4)
                x, y = cp.asarray(idx[:, :-1]), cp.asarray(idx[:, 1:])
                def step():
                    loss = model.loss(x, y); opt.zero_grad(); loss.backward(); opt.step()
                with L.use_fused(mode == "fused"):
                    tps = timed(step, cp.cuda.Device().synchronize, min(2.0, left / 6))
            else:
                import torch
                dev = "cuda"
                stepper = torch_gpt(torch, cfg, state if state is not None else GPT(cfg, seed=0).state_dict(),
                                    mode == "torch-best", dev)
                x = torch.as_tensor(idx[:, :-1], device=dev); y = torch.as_tensor(idx[:, 1:], device=dev)
                tps = timed(lambda: stepper(x, y), torch.cuda.synchronize, min(2.0, left / 6))
                del stepper
                torch.cuda.empty_cache()
            print("MODEL " + json.dumps({**key, "tokens_per_s": tps}), flush=True)
        except Exception as e:
            print("MODEL " + json.dumps({**key, "error": repr(e)[:300]}), flush=True)
        gc.collect()
        cp.get_default_memory_pool().free_all_blocks()
    model = opt = None
    gc.collect()
    cp.get_default_memory_pool().free_all_blocks()
"""

PROFILE_CASE = r"""
# where a training step of the small preset (B=16, T=128, dropout 0.1, kernels on) spends its
# time on the host: cProfile over 5 steps (after 3 warm-up steps), functions by own time
import cProfile, pstats, io, time, numpy as np, cupy as cp
from minigpt.model import GPT, GPTConfig
from minigpt.optim import Adam
cfg = GPTConfig.preset("small")
model = GPT(cfg, seed=0).to("cuda"); model.train()
opt = Adam(model.parameters(), lr=1e-4)
idx = cp.asarray(np.random.default_rng(0).integers(0, cfg.vocab_size, (16, 129)))
def step():
    loss = model.loss(idx[:, :-1], idx[:, 1:]); opt.zero_grad(); loss.backward(); opt.step()
for _ in range(3):
    step()
cp.cuda.Device().synchronize()
prof = cProfile.Profile()
t = time.time(); prof.enable()
for _ in range(5):
    step()
cp.cuda.Device().synchronize()
prof.disable(); wall = (time.time() - t) / 5
buf = io.StringIO()
st = pstats.Stats(prof, stream=buf); st.sort_stats("tottime").print_stats(14)
total = sum(v[2] for v in st.stats.values()) / 5
print(f"PROFILE step {wall * 1e3:.1f} ms wall (profiled), {total * 1e3:.1f} ms inside Python functions")
for line in buf.getvalue().splitlines():
    if line.strip()[:1].isdigit():
        print("PROFILE " + line.strip()[:140])
"""


def model_table(rows) -> str:
    by = {}
    for r in rows:
        by.setdefault((r["preset"], r["B"], r["T"], r["dropout"]), {})[r["impl"]] = r
    lines = ["whole-model training, tokens/s (float32; fused/plain = minigpt on CuPy with/without "
             "the kernels)",
             f"  {'preset':<8}{'B x T':>9}{'dropout':>8}{'fused':>11}{'plain':>11}{'torch-eager':>13}"
             f"{'torch-best':>12}{'fused/eager':>13}{'fused/best':>12}"]

    def cell(d, k):
        r = d.get(k, {})
        return f"{r['tokens_per_s']:,.0f}" if "tokens_per_s" in r else ("err" if "error" in r else "-")

    for (preset, B, T, p), d in by.items():
        f = d.get("fused", {}).get("tokens_per_s")
        e = d.get("torch-eager", {}).get("tokens_per_s")
        b = d.get("torch-best", {}).get("tokens_per_s")
        ratio = lambda a, c: f"{a / c:.2f}x" if a and c else "-"  # noqa: E731
        lines.append(f"  {preset:<8}{f'{B}x{T}':>9}{p:>8}{cell(d, 'fused'):>11}{cell(d, 'plain'):>11}"
                     f"{cell(d, 'torch-eager'):>13}{cell(d, 'torch-best'):>12}{ratio(f, e):>13}"
                     f"{ratio(f, b):>12}")
        for k, r in d.items():
            if "error" in r:
                lines.append(f"    {k}: {r['error']}")
    return "\n".join(lines)


def kernel_table(rows) -> str:
    lines = ["per-kernel, GPT-1 sizes (N=4096 rows, C=768, V=40478; plain = the reference op on "
             "CuPy), median ms and effective GB/s",
             f"  {'kernel':<34}{'fused ms':>10}{'plain ms':>10}{'speed-up':>10}{'fused GB/s':>12}"
             f"{'plain GB/s':>12}"]
    for r in rows:
        if "error" in r:
            lines.append(f"  {r['kernel']:<34} error: {r['error']}")
            continue
        lines.append(f"  {r['kernel']:<34}{r['fused_ms']:>10.3f}{r['plain_ms']:>10.3f}"
                     f"{r['plain_ms'] / r['fused_ms']:>9.1f}x{r['fused_GBs']:>12.0f}"
                     f"{r['plain_GBs']:>12.0f}")
    return "\n".join(lines)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    summary = {"steps": {}, "model": [], "kernels": []}
    py = sys.executable

    def section(name, fn):
        if name in SKIP:
            summary["steps"][name] = "skipped (GPU_CHECK_SKIP)"
            _done.update({"model": ("model-small", "model-gpt1"),
                          "sanitizer": ("memcheck", "racecheck")}.get(name, (name,)))
            return
        try:
            fn()
        except Exception as e:  # noqa: BLE001  (one section's bug must not lose the others)
            summary["steps"][name] = f"FAILED in gpu_check itself: {e!r}"

    # env
    env_lines = [f"python {sys.version.split()[0]} ({py})"]
    gpu = ["?"]

    def env():
        if shutil.which("nvidia-smi"):
            rc, out = sh(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,"
                          "clocks.max.sm,temperature.gpu,power.draw", "--format=csv,noheader"], 30)
            env_lines.append(out.strip())
            if rc == 0 and out.strip():
                gpu[0] = out.strip().splitlines()[0].split(",")[0]
        rc, out = sh([py, "-c", "import numpy, cupy; print('numpy', numpy.__version__, 'cupy', "
                      "cupy.__version__, 'cuda runtime', cupy.cuda.runtime.runtimeGetVersion());\n"
                      "try:\n import torch; print('torch', torch.__version__, torch.cuda.is_available())\n"
                      "except Exception as e: print('torch: none', e)"], 60)
        env_lines.append(out.strip())
        summary["steps"]["env"] = "ok" if rc == 0 else f"FAILED rc={rc}"
        print("\n".join(env_lines), flush=True)

    section("env", env)
    summary["env"] = env_lines

    def compile_():
        rc, out = sh([py, "-c", COMPILE_CASE], share("compile", 90), "compile.log")
        times = {k: v for d in tagged(out, "COMPILE") for k, v in d.items()}
        summary["compile_s"] = times
        bad = [k for k, v in times.items() if isinstance(v, str)]
        summary["steps"]["compile"] = ("ok" if rc == 0 and times and not bad
                                       else f"FAILED rc={rc} {' '.join(bad)}")
        if rc != 0 or bad:
            print(out[-3000:])

    section("compile", compile_)

    def tests():
        files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_gpu*.py"))
        for path in sorted((REPO / "tests").glob("test_*.py")):  # GPU tests in other files
            if not path.name.startswith("test_gpu"):
                names = re.findall(r"^def (test_\w*on_cupy\w*)\(", path.read_text(), re.M)
                files += [f"tests/{path.name}::{n}" for n in names]
        rc, out = sh([py, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *files],
                     share("tests", 120), "pytest.log")
        tail = [line for line in out.strip().splitlines() if line.strip()][-1:] or ["?"]
        ok = rc == 0 and " passed" in tail[0]  # all skipped (no CuPy/GPU seen) is a failure
        summary["steps"]["tests"] = f"{'ok' if ok else 'FAILED'}: {tail[0]}"
        if not ok:
            fails = [ln for ln in out.splitlines() if ln.startswith(("FAILED", "ERROR"))]
            print("\n".join(fails[:30]))
            print(out[-5000:])

    section("tests", tests)

    def model():
        for preset, B, T in (("small", 16, 128), ("gpt1", 8, 512)):
            budget = share(f"model-{preset}", 75)
            if budget < 15:
                summary["steps"][f"model-{preset}"] = "skipped (no time left)"
                continue
            rc, out = sh([py, "-c", MODEL_CASE, preset, str(B), str(T), str(budget - 8)],
                         budget, f"model_{preset}.log")
            rows = tagged(out, "MODEL")
            summary["model"] += rows
            errors = [r for r in rows if "error" in r]
            summary["steps"][f"model-{preset}"] = ("ok" if rc == 0 and rows and not errors
                                                   else f"FAILED rc={rc}, {len(errors)} errors")
            if rc != 0 or not rows:
                print(out[-2500:])

    section("model", model)

    profile_lines = []

    def profile():
        rc, out = sh([py, "-c", PROFILE_CASE], share("profile", 40), "profile.log")
        profile_lines.extend(ln[len("PROFILE "):] for ln in out.splitlines()
                             if ln.startswith("PROFILE "))
        summary["steps"]["profile"] = "ok" if rc == 0 and profile_lines else f"FAILED rc={rc}"
        if rc != 0:
            print(out[-1500:])

    section("profile", profile)

    def kernels():
        rc, out = sh([py, "-c", KERNELS_CASE], share("kernels", 45), "kernels.log")
        rows = tagged(out, "KERNEL")
        summary["kernels"] = rows
        summary["steps"]["kernels"] = ("ok" if rc == 0 and rows and not any("error" in r for r in rows)
                                       else f"FAILED rc={rc}")
        if rc != 0:
            print(out[-2500:])

    section("kernels", kernels)


    def sanitizer():
        cs = shutil.which("compute-sanitizer")
        if cs is None:
            for cand in sorted(Path("/usr/local").glob("cuda*/bin/compute-sanitizer")):
                cs = str(cand)
        if not cs:
            summary["steps"]["sanitizer"] = "skipped (no compute-sanitizer)"
            _done.update(("memcheck", "racecheck"))
            return
        for tool in ("memcheck", "racecheck"):
            if left() < 15:
                summary["steps"][f"sanitizer-{tool}"] = "skipped (no time left)"
                _done.add(tool)
                continue
            rc, out = sh([cs, f"--tool={tool}", "--error-exitcode=3", py, "-c", SANITIZE_CASE],
                         share(tool, 60), f"sanitizer_{tool}.log")
            parts_failed = [ln for ln in out.splitlines() if ln.startswith("PART FAILED")]
            clean = rc == 0 and "sanitize case done" in out and not parts_failed
            summary["steps"][f"sanitizer-{tool}"] = ("clean" if clean else
                                                     f"ISSUES rc={rc} {len(parts_failed)} parts failed")
            if not clean:
                print("\n".join(parts_failed))
                print(out[-2500:])

    section("sanitizer", sanitizer)

    bench_json = OUT / "bench.json"

    def attention():
        Ts = ["512", "1024"] if BUDGET_S > 200 else ["512"]
        skip = [] if BUDGET_S > 200 else ["--skip", "naive-cu"]  # 100 ms a call at T=512
        rc, out = sh([py, "benchmarks/bench_attention_gpu.py", "--T", *Ts, "--reps", "10", *skip,
                      "--json", str(bench_json)], share("attention", 40), "bench.log")
        summary["steps"]["attention"] = "ok" if rc == 0 else f"FAILED rc={rc}"
        if rc != 0:
            print(out[-2000:])

    section("attention", attention)

    summary["wall_s"] = round(time.time() - T0, 1)
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1, default=str))

    # the tables, last
    print("\n================ gpu_check summary ================")
    print(f"GPU: {gpu[0]}   date: {time.strftime('%Y-%m-%d %H:%M')}   wall: {summary['wall_s']} s")
    for step, status in summary["steps"].items():
        print(f"  {step:<20} {status}")
    if summary.get("compile_s"):
        print("  compile s: " + ", ".join(f"{k.split('_')[0]}={str(v)[:40]}"
                                          for k, v in summary["compile_s"].items()))
    for what, fn in (("kernels", lambda: kernel_table(summary["kernels"])),
                     ("attention", lambda: __import__("bench_attention_gpu").table(
                         json.loads(bench_json.read_text())) if bench_json.exists() else ""),
                     ("profile", lambda: "host profile, small preset step (cProfile, by own "
                      "time; ncalls tottime percall cumtime percall function):\n  "
                      + "\n  ".join(profile_lines) if profile_lines else ""),
                     ("model", lambda: model_table(summary["model"]))):
        try:
            sys.path.insert(0, str(REPO / "benchmarks"))
            text = fn()
            if text:
                print(text)
        except Exception as e:  # noqa: BLE001
            print(f"[{what} table could not be printed: {e!r}]")
    failed = [s for s, v in summary["steps"].items() if "FAIL" in v or "ISSUES" in v]
    print("RESULT:", "all steps passed" if not failed else "problems in " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
