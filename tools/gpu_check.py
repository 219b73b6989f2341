#!/usr/bin/env python3
"""The one prepared GPU check (make gpu-check): installs nothing, runs in under 5 minutes.

    python3 tools/gpu_check.py                 # from the repository root, on a GPU machine
    python3 tools/gpu_check.py --dry-run       # anywhere: the plan and the CPU-side self-checks
    GPU_CHECK_BUDGET_S=280 GPU_CHECK_SKIP=racecheck,attention python3 tools/gpu_check.py

First a preflight (`env`: GPU, driver, CuPy, PyTorch versions; minigpt imports with its
dependencies). Without CuPy or a GPU it says so and exits with status 2, running nothing else.
Then the parts, most important first (each in its own process with its own time limit; a
failure or a timeout is reported with its reason and the next part still runs):
  compile      every kernels/*.cu through the loader (CuPy RawModule, NVRTC), timed; fills
               CuPy's kernel cache for the parts after it
  model-small  whole-model training tokens/s of the small preset (B=16, T=128), GPT-1's
               dropout (0.1) and none: minigpt on CuPy with the kernels (fused) and without
               (plain), PyTorch float32 eager (explicit masked softmax, per-tensor AdamW) and
               best (SDPA + fused AdamW), same initial weights
  model-gpt1   the same for the gpt1 preset (B=8, T=512)
  tests        pytest tests/test_gpu*.py and the test_*on_cupy* tests of other files: every
               kernel against float64 references, determinism, the Functions, Adam bit for bit,
               a GPT trained on CuPy against the NumPy run
  kernels      per-kernel table: each new kernel against the plain CuPy path it replaces (the
               reference op on CuPy arrays), ms and effective GB/s, at GPT-1's sizes
  attention    benchmarks/bench_attention_gpu.py at B=8, nh=12, hs=64, T = 512 (and 1024
               when its time limit allows)
  profile      cProfile of 5 training steps of the small preset on CuPy: where the host time goes
  memcheck     compute-sanitizer memcheck over one small launch of every kernel
  racecheck    compute-sanitizer racecheck over the same launches
A part's time limit is its share (PARTS) of the time left for it and the parts after it, at
least its floor (what it needs on a fresh H100) and at most its cap; a part whose floor no
longer fits in GPU_CHECK_BUDGET_S (default 285 s) is skipped, so a short budget loses the
least important parts, never the model table. The tables are printed last (the per-kernel
and the whole-model table at the very end); logs and summary.json go to $OUT (or
./gpu_check_out).

The work of each part is a function below (case_*), run as `gpu_check.py --case NAME ...` in a
child process; the PyTorch twin of GPT-1 that the model table compares against (torch_gpt) is
checked on the CPU against minigpt's own model by --dry-run and tests/test_gpu_check.py.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("OUT") or REPO / "gpu_check_out")
BUDGET_S = float(os.environ.get("GPU_CHECK_BUDGET_S", 285))
SKIP = {s.strip() for s in os.environ.get("GPU_CHECK_SKIP", "").split(",") if s.strip()}
T0 = time.time()
ENV_TIMEOUT_S = 60

# The parts in the order they run (most important first): name -> (floor s, share, cap s).
# Floors from the H100 run of 2026-11-26 on a fresh machine (benchmarks/gpu_check_2026-11-26_
# h100.txt): compile 10 files ~15 s; a model process ~8 s of start-up (imports, model, first
# steps) then ~3 s a cell, 8 cells; 217 GPU tests ~30 s after ~5 s of start-up; the per-kernel
# table > 11 s; the attention benchmark at T=512 9 s; profile 2.3 s; memcheck 2.8 s; racecheck
# > 14 s. The floors add up to 230 s, under the default budget less the preflight (~8 s).
PARTS = {
    "compile": (20, 0.07, 90),
    "model-small": (30, 0.14, 75),
    "model-gpt1": (45, 0.22, 90),
    "tests": (45, 0.20, 120),
    "kernels": (25, 0.09, 60),
    "attention": (15, 0.08, 45),
    "profile": (10, 0.04, 40),
    "memcheck": (10, 0.05, 60),
    "racecheck": (30, 0.11, 90),
}
_done: set = set()


def left() -> float:
    return BUDGET_S - (time.time() - T0)


def time_limit(part: str, time_left: float) -> float | None:
    """The time limit of a part, given the time left: its share of what is left for it and the
    parts still to run (time a part did not use goes to the later ones), at least its floor,
    at most its cap and what is left; None when its floor no longer fits (skip it)."""
    floor, frac, cap = PARTS[part]
    pending = sum(PARTS[k][1] for k in PARTS if k not in _done)
    _done.add(part)
    if time_left < floor:
        return None
    return min(cap, time_left, max(floor, time_left * frac / max(pending, 1e-9)))


def sh(cmd, timeout, log_name=None, env=None):
    """Run cmd, save its output under OUT; returns (rc, output). Never raises. On a timeout the
    whole process group is killed (compute-sanitizer's child too, which would otherwise hold
    the output pipe open and keep this waiting) and the output so far is kept."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(env or {})}
    t = time.time()
    timeout = max(5.0, timeout)
    try:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                start_new_session=True)
    except Exception as e:  # noqa: BLE001  (a missing program, say: report and go on)
        rc, out = 127, f"[could not run: {e!r}]"
    else:
        try:
            out, _ = proc.communicate(timeout=timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                proc.kill()
            out, _ = proc.communicate()
            rc, out = 124, (out or "") + f"\n[timed out after {timeout:.0f} s]"
    if log_name:
        (OUT / log_name).write_text(out)
    shown = " ".join(str(c) if len(str(c)) < 60 else "<long>" for c in cmd)
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


def emit(tag: str, obj) -> None:
    print(f"{tag} {json.dumps(obj)}", flush=True)


# ---- the work of each part, run in a child process (gpu_check.py --case NAME ...) -------------

def case_env():
    """Versions, and whether this machine can run the check at all (exit 3 if not)."""
    try:
        import numpy

        import minigpt  # (a missing dependency fails here, not in every part)
        del minigpt
    except ImportError as e:
        print(f"CANNOT_RUN minigpt cannot be imported by {sys.executable}: {e}")
        return 3
    from minigpt.backend import BackendError, cupy_module
    try:
        cp = cupy_module()
    except BackendError as e:
        print(f"CANNOT_RUN no GPU: {e}")
        return 3
    name = cp.cuda.runtime.getDeviceProperties(0)["name"]
    print(f"numpy {numpy.__version__} cupy {cp.__version__} cuda runtime "
          f"{cp.cuda.runtime.runtimeGetVersion()} device {name.decode() if isinstance(name, bytes) else name}")
    try:
        import torch
        print("torch", torch.__version__, "cuda", torch.cuda.is_available())
    except Exception as e:  # noqa: BLE001
        print("torch: none", e)
    return 0


def case_compile():
    from minigpt.cuda import loader as L
    prov = L.get_provider()
    for f in sorted(set(L.KERNEL_FILES.values())):
        t = time.time()
        try:
            prov.module(f)
            emit("COMPILE", {f: round(time.time() - t, 2)})
        except Exception as e:  # noqa: BLE001
            emit("COMPILE", {f: "FAILED " + str(e)[:300]})
    return 0


def torch_gpt(torch, cfg, state, best, dev):
    """GPT-1 in PyTorch float32 with minigpt's weights (a state_dict of NumPy arrays): the same
    post-LN blocks, tanh GELU, tied output embedding, AdamW with decay on matrices only and the
    gradient clipped to norm 1, as minigpt.optim.Adam. best: SDPA and fused AdamW; else an
    explicit masked softmax and per-tensor AdamW (eager). Returns (forward(idx) -> logits
    (B*T, V), step(x, y): one training step)."""
    import math

    import numpy as np
    TF = torch.nn.functional
    p = {k: torch.nn.Parameter(torch.from_numpy(np.array(v, copy=True)).to(dev))
         for k, v in state.items()}
    C, nh = cfg.n_embd, cfg.n_head
    hs = C // nh
    eps = cfg.layer_norm_epsilon
    mask = torch.ones(cfg.n_ctx, cfg.n_ctx, dtype=torch.bool, device=dev).tril()

    def forward(idx):
        Bn, Tn = idx.shape
        drop = lambda t, q: TF.dropout(t, q, training=True)  # noqa: E731
        h = drop(TF.embedding(idx, p["tokens_embed.weight"]) + p["positions_embed.weight"][:Tn],
                 cfg.embd_pdrop)                                            # (B, T, C)
        for i in range(cfg.n_layer):
            w = lambda n: p[f"h.{i}.{n}"]  # noqa: E731
            qkv = torch.addmm(w("attn.c_attn.bias"), h.reshape(Bn * Tn, C),
                              w("attn.c_attn.weight"))                      # (B*T, 3C)
            q, k, v = qkv.view(Bn, Tn, 3, nh, hs).permute(2, 0, 3, 1, 4)    # 3 x (B, nh, T, hs)
            if best:
                y = TF.scaled_dot_product_attention(q, k, v, dropout_p=cfg.attn_pdrop,
                                                    is_causal=True)
            else:
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))     # (B, nh, T, T)
                att = att.masked_fill(~mask[:Tn, :Tn], float("-inf"))
                y = drop(torch.softmax(att, dim=-1), cfg.attn_pdrop) @ v    # (B, nh, T, hs)
            y = y.transpose(1, 2).reshape(Bn * Tn, C)                       # (B*T, C)
            a = drop(torch.addmm(w("attn.c_proj.bias"), y, w("attn.c_proj.weight")),
                     cfg.resid_pdrop)
            n_ = TF.layer_norm(h + a.view(Bn, Tn, C), (C,), w("ln_1.weight"), w("ln_1.bias"), eps)
            m = TF.gelu(torch.addmm(w("mlp.c_fc.bias"), n_.reshape(Bn * Tn, C),
                                    w("mlp.c_fc.weight")), approximate="tanh")  # (B*T, 4C)
            m = drop(torch.addmm(w("mlp.c_proj.bias"), m, w("mlp.c_proj.weight")), cfg.resid_pdrop)
            h = TF.layer_norm(n_ + m.view(Bn, Tn, C), (C,), w("ln_2.weight"), w("ln_2.bias"), eps)
        return h.reshape(Bn * Tn, C) @ p["tokens_embed.weight"].T              # (B*T, V)

    groups = [{"params": [q for q in p.values() if q.ndim >= 2], "weight_decay": 0.01},
              {"params": [q for q in p.values() if q.ndim < 2], "weight_decay": 0.0}]
    kind = {"fused": True} if best else {"foreach": False}
    opt = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, **kind)
    params = list(p.values())

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        TF.cross_entropy(forward(x), y.reshape(-1)).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    return forward, step


def case_model(preset, B, T, budget):
    """Training tokens/s of one preset: minigpt on CuPy fused / plain, PyTorch eager / best,
    dropout as GPT-1 (0.1) or off, minigpt's initial weights; one MODEL line per cell, the
    cells that matter most first (a short budget loses the last ones)."""
    import gc

    import numpy as np
    from minigpt.backend import cupy_module
    from minigpt.cuda import loader as L
    from minigpt.model import GPT, GPTConfig
    from minigpt.optim import Adam
    cp = cupy_module()
    B, T, budget = int(B), int(T), float(budget)
    t_start = time.time()

    def timed(step, sync, share):
        # warm up 2 steps, then time at least 3 steps or `share` seconds, at most 20 steps
        for _ in range(2):
            step()
        sync()
        t = time.time()
        n = 0
        while n < 3 or (time.time() - t < share and n < 20):
            step()
            n += 1
            if n == 3:
                sync()
        sync()
        return B * T * n / (time.time() - t)

    rng = np.random.default_rng(0)
    for dropout in (0.1, 0.0):
        cfg = GPTConfig.preset(preset, embd_pdrop=dropout, attn_pdrop=dropout, resid_pdrop=dropout)
        idx = rng.integers(0, cfg.vocab_size, (B, T + 1))
        state = model = opt = None  # one minigpt model per setting: fused and plain share it
        for mode in ("fused", "torch-eager", "torch-best", "plain"):
            time_left = budget - (time.time() - t_start)
            key = {"preset": preset, "B": B, "T": T, "dropout": dropout, "impl": mode}
            if time_left < 4:
                emit("MODEL", {**key, "error": "no time left"})
                continue
            try:
                if mode in ("fused", "plain"):
                    if model is None:
                        model = GPT(cfg, seed=0)
                        state = {k: np.array(v, copy=True) for k, v in model.state_dict().items()}
                        model.to("cuda")
                        model.train()
                        opt = Adam(model.parameters(), lr=1e-4)
                    x, y = cp.asarray(idx[:, :-1]), cp.asarray(idx[:, 1:])

                    def step():
                        loss = model.loss(x, y)
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
                    with L.use_fused(mode == "fused"):
                        tps = timed(step, cp.cuda.Device().synchronize, min(2.0, time_left / 6))
                else:
                    import torch
                    if state is None:
                        state = GPT(cfg, seed=0).state_dict()
                    _, tstep = torch_gpt(torch, cfg, state, mode == "torch-best", "cuda")
                    x = torch.as_tensor(idx[:, :-1], device="cuda")
                    y = torch.as_tensor(idx[:, 1:], device="cuda")
                    tps = timed(lambda: tstep(x, y), torch.cuda.synchronize,
                                min(2.0, time_left / 6))
                    del tstep
                    torch.cuda.empty_cache()
                emit("MODEL", {**key, "tokens_per_s": tps})
            except Exception as e:  # noqa: BLE001
                emit("MODEL", {**key, "error": repr(e)[:300]})
            gc.collect()
            cp.get_default_memory_pool().free_all_blocks()
        model = opt = None
        gc.collect()
        cp.get_default_memory_pool().free_all_blocks()
    return 0


def case_kernels(N=8 * 512, C=768, V=40478, n_layer=12):
    """Each new kernel against the plain CuPy path it replaces (the reference op on CuPy
    arrays), at GPT-1's sizes: N = B*T = 8*512 rows, C = 768, V = 40478, GPT-1's 148 arrays."""
    import math
    import statistics

    import numpy as np
    from minigpt import dispatch
    from minigpt.backend import cupy_module
    from minigpt.cuda import adam, layers
    from minigpt.ops.cross_entropy import CrossEntropy
    from minigpt.ops.layer_norm import LayerNorm
    from minigpt.optim import adam_update
    cp = cupy_module()
    rng = np.random.default_rng(0)
    dev = lambda *s: cp.asarray(rng.standard_normal(s).astype(np.float32))  # noqa: E731
    sync = cp.cuda.Device().synchronize

    def ms(fn, reps):
        fn()
        sync()
        a, b = cp.cuda.Event(), cp.cuda.Event()
        t = []
        for _ in range(reps):
            a.record()
            fn()
            b.record()
            b.synchronize()
            t.append(cp.cuda.get_elapsed_time(a, b))
        return statistics.median(t)

    def row(name, nbytes, fused, plain, reps=10):
        try:
            f, p = ms(fused, reps), ms(plain, reps)
            emit("KERNEL", {"kernel": name, "fused_ms": f, "plain_ms": p,
                            "fused_GBs": nbytes / f / 1e6, "plain_GBs": nbytes / p / 1e6})
        except Exception as e:  # noqa: BLE001
            emit("KERNEL", {"kernel": name, "error": repr(e)[:200]})

    N, C, V, n_layer = int(N), int(C), int(V), int(n_layer)
    x, r, g = dev(N, C), dev(N, C), dev(N, C)
    w, b = dev(C), dev(C)
    _, s, mean, rstd = layers.layer_norm_forward(x, w, b)
    ref = LayerNorm()
    ref.forward(x, w, b)
    row("layernorm fwd (06)", 8 * N * C, lambda: layers.layer_norm_forward(x, w, b),
        lambda: LayerNorm().forward(x, w, b))
    row("layernorm bwd (06)", 12 * N * C, lambda: layers.layer_norm_backward(s, w, mean, rstd, g),
        lambda: ref.backward(g))
    row("add+layernorm fwd (06)", 16 * N * C,
        lambda: layers.layer_norm_forward(x, w, b, residual=r),
        lambda: LayerNorm().forward(x + r, w, b))
    # does fusing the residual add pay? against the CuPy add followed by kernel 06 without it
    row("  vs add (CuPy) + layernorm (06)", 16 * N * C,
        lambda: layers.layer_norm_forward(x, w, b, residual=r),
        lambda: layers.layer_norm_forward(x + r, w, b))
    r = s = ref = None  # (frees GPU memory for the next rows)
    from minigpt.cuda import gelu as G
    from minigpt.ops.gelu import GELU
    h, hb, gh = dev(N, 4 * C), dev(4 * C), dev(N, 4 * C)
    gref = GELU()
    gref.forward(h + hb)
    row("bias+gelu fwd (07)", 8 * N * 4 * C, lambda: G.bias_gelu_forward(h, hb),
        lambda: GELU().forward(h + hb))
    row("bias+gelu bwd, dx and db (07)", 12 * N * 4 * C, lambda: G.bias_gelu_backward(gh, h, hb),
        lambda: gref.backward(gh)[0].sum(axis=0))
    h = hb = gh = gref = None
    z = dev(N, V)
    t = cp.asarray(rng.integers(0, V, N))
    _, lse, stats = layers.xent_forward(z, t)
    one = cp.ones((), np.float32)
    xref = CrossEntropy()
    xref.forward(z, targets=t, ignore_index=-100)
    row("softmax+xent fwd (08)", 4 * N * V, lambda: layers.xent_forward(z, t),
        lambda: CrossEntropy().forward(z, targets=t, ignore_index=-100), reps=5)
    row("softmax+xent bwd (08)", 8 * N * V, lambda: layers.xent_backward(z, t, lse, stats, one),
        lambda: xref.backward(one), reps=5)
    z = xref = lse = None
    shapes = [(V, C), (512, C)] + [sh_ for _ in range(n_layer) for sh_ in [
        (C, 3 * C), (3 * C,), (C, C), (C,), (C,), (C,), (C, 4 * C), (4 * C,), (4 * C, C), (C,),
        (C,), (C,)]]                                   # GPT-1's parameter arrays
    n = sum(math.prod(sh_) for sh_ in shapes)
    ps, gs, ms_, vs = ([dev(*sh_) * 0.01 for sh_ in shapes] for _ in range(4))
    vs = [cp.abs(v) for v in vs]
    wds = [0.01 if len(sh_) >= 2 else 0.0 for sh_ in shapes]

    def plain_adam():
        for p, gg, m, v, wd in zip(ps, gs, ms_, vs, wds):
            adam_update(p, gg, m, v, lr_t=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
    row(f"adam step, {len(shapes)} arrays (09)", 28 * n,
        lambda: adam.update_arrays(ps, gs, ms_, vs, wds, 1e-4, (0.9, 0.999), 1e-8), plain_adam,
        reps=5)
    plain_norm = dispatch.registered()["grad_norm"]["reference"]
    row("grad norm (09)", 4 * n, lambda: adam.grad_norm(gs), lambda: plain_norm(gs), reps=5)
    return 0


def case_sanitize():
    """One small launch of every kernel (every attention variant, dropout on and off, each head
    size; softmax; LayerNorm with and without the residual; cross-entropy; Adam; bias+GELU)."""
    import numpy as np
    from minigpt.backend import cupy_module
    from minigpt.cuda import adam, layers
    from minigpt.cuda import attention as A
    from minigpt.cuda import gelu as G
    cp = cupy_module()
    rng = np.random.default_rng(0)
    dev = lambda *s: cp.asarray(rng.standard_normal(s).astype(np.float32))  # noqa: E731

    def attention():
        for hs in (32, 64, 128):
            q, k, v, g = (dev(2, 2, 70, hs) for _ in range(4))
            pm = cp.asarray((rng.random((2, 70)) > 0.3).astype(np.float32))
            for variant in A.ATTENTION_VARIANTS:
                for p in ((0.0, 0.1) if variant != "naive" else (0.0,)):
                    o, lse = A.attention_forward(q, k, v, True, pm, variant, dropout_p=p, seed=3)
                    A.attention_backward(q, k, v, o, lse, g, True, pm, variant, dropout_p=p,
                                         seed=3)

    def softmax():
        x = dev(2, 70, 70)
        for variant in A.SOFTMAX_VARIANTS:
            y = A.softmax_forward(x, 0.5, True, variant)
            A.softmax_backward(y, x, 0.5, True, variant)

    def layernorm():
        x, r, g = dev(37, 200), dev(37, 200), dev(37, 200)
        w, b = dev(200), dev(200)
        for res in (None, r):
            y, s, m, rs = layers.layer_norm_forward(x, w, b, 1e-5, residual=res)
            layers.layer_norm_backward(s, w, m, rs, g)

    def xent():
        z = dev(9, 1000)
        t = cp.asarray(rng.integers(0, 1000, 9))
        t[2] = -100
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
        x, g, b = dev(33, 300), dev(33, 300), dev(300)
        G.bias_gelu_forward(x, b)
        G.bias_gelu_backward(g, x, b)

    for name, fn in (("attention", attention), ("softmax", softmax), ("layernorm", layernorm),
                     ("xent", xent), ("adam", adam_), ("gelu", gelu)):
        try:
            fn()
            cp.cuda.Device().synchronize()
            print("ok", name, flush=True)
        except Exception as e:  # noqa: BLE001
            print("PART FAILED", name, repr(e)[:300], flush=True)
    print("sanitize case done")
    return 0


def case_profile():
    """Where a training step of the small preset (B=16, T=128, dropout 0.1, kernels on) spends
    its host time: cProfile over 5 steps (after 3 warm-up steps), functions by own time."""
    import cProfile
    import io
    import pstats

    import numpy as np
    from minigpt.backend import cupy_module
    from minigpt.model import GPT, GPTConfig
    from minigpt.optim import Adam
    cp = cupy_module()
    cfg = GPTConfig.preset("small")
    model = GPT(cfg, seed=0).to("cuda")
    model.train()
    opt = Adam(model.parameters(), lr=1e-4)
    idx = cp.asarray(np.random.default_rng(0).integers(0, cfg.vocab_size, (16, 129)))

    def step():
        loss = model.loss(idx[:, :-1], idx[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    for _ in range(3):
        step()
    cp.cuda.Device().synchronize()
    prof = cProfile.Profile()
    t = time.time()
    prof.enable()
    for _ in range(5):
        step()
    cp.cuda.Device().synchronize()
    prof.disable()
    wall = (time.time() - t) / 5
    buf = io.StringIO()
    st = pstats.Stats(prof, stream=buf)
    st.sort_stats("tottime").print_stats(14)
    total = sum(v[2] for v in st.stats.values()) / 5
    print(f"PROFILE step {wall * 1e3:.1f} ms wall (profiled), {total * 1e3:.1f} ms inside "
          "Python functions")
    for line in buf.getvalue().splitlines():
        if line.strip()[:1].isdigit():
            print("PROFILE " + line.strip()[:140])
    return 0


CASES = {"env": case_env, "compile": case_compile, "model": case_model,
         "kernels": case_kernels, "sanitize": case_sanitize, "profile": case_profile}


def twin_check(torch) -> tuple[float, float]:
    """The PyTorch twin (torch_gpt) against minigpt's GPT on the CPU, dropout off, the same
    weights (drawn 15 times wider than GPT-1's initialisation, so that the activations reach
    where GELU's and LayerNorm's details show). Returns (the largest difference of the initial
    logits relative to their largest magnitude, the largest difference after one training step
    of each relative to the largest change that step made); AssertionError above 2e-5 or 1e-2:
    the two are not the same model or optimizer. (Float32 gives ~1e-6; after the step ~5e-4,
    from where Adam's eps sits: minigpt adds it to sqrt(v) before the bias correction, as
    GPT-1 did, PyTorch after it.)"""
    import numpy as np
    from minigpt.model import GPT, GPTConfig
    from minigpt.optim import Adam
    cfg = GPTConfig(vocab_size=61, n_ctx=16, n_layer=2, n_embd=48, n_head=4, embd_pdrop=0.0,
                    attn_pdrop=0.0, resid_pdrop=0.0, initializer_range=0.3)
    state = {k: np.array(v, copy=True) for k, v in GPT(cfg, seed=3).state_dict().items()}
    idx = np.random.default_rng(1).integers(0, cfg.vocab_size, (3, 13))
    x, y = idx[:, :-1], idx[:, 1:]
    tx, ty = torch.as_tensor(x), torch.as_tensor(y)
    worst = [0.0, 0.0]
    for best in (False, True):
        tforward, tstep = torch_gpt(torch, cfg, state, best, "cpu")
        model = GPT(cfg, seed=3)
        opt = Adam(model.parameters(), lr=1e-4)
        logits = []
        for _ in range(2):  # the initial weights, then after one step of each
            with torch.no_grad():
                logits.append((model(x).data.reshape(-1, cfg.vocab_size),   # (B*T, V)
                               tforward(tx).numpy()))
            loss = model.loss(x, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tstep(tx, ty)
        (want0, got0), (want1, got1) = logits
        err0 = float(np.abs(got0 - want0).max() / np.abs(want0).max())
        err1 = float(np.abs(got1 - want1).max() / np.abs(want1 - want0).max())
        assert err0 < 2e-5, (f"torch_gpt(best={best}): its logits differ from minigpt's GPT's "
                             f"by {err0:.1e} of their scale (the same weights)")
        assert err1 < 1e-2, (f"torch_gpt(best={best}): after one training step its logits differ "
                             f"from minigpt's by {err1:.1e} of the change the step made")
        worst = [max(worst[0], err0), max(worst[1], err1)]
    return worst[0], worst[1]


# ---- the tables ----------------------------------------------------------------------------

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


# ---- the run ---------------------------------------------------------------------------------

def dry_run() -> int:
    """No GPU needed: the plan under this budget, the case functions present, the tables
    formatted from sample rows, and the PyTorch twin against minigpt on the CPU."""
    print(f"gpu_check dry run: budget {BUDGET_S:.0f} s (GPU_CHECK_BUDGET_S), skip {sorted(SKIP) or '-'}")
    print(f"  {'part':<12}{'floor s':>8}{'share':>7}{'cap s':>7}")
    for name, (floor, frac, cap) in PARTS.items():
        print(f"  {name:<12}{floor:>8}{frac:>7.2f}{cap:>7}" + ("   (skipped)" if name in SKIP else ""))
    floors = sum(f for k, (f, _, _) in PARTS.items() if k not in SKIP)
    print(f"  floors {floors} s + preflight (<= {ENV_TIMEOUT_S} s, ~8 s on an H100) against the "
          f"budget {BUDGET_S:.0f} s")
    problems = []
    if floors > BUDGET_S:
        problems.append(f"the floors ({floors} s) exceed the budget: the last parts will be skipped")
    if abs(sum(s for _, s, _ in PARTS.values()) - 1.0) > 1e-6:
        problems.append("the shares do not add up to 1")
    sample = [{"preset": "small", "B": 16, "T": 128, "dropout": 0.1, "impl": "fused",
               "tokens_per_s": 1000.0}, {"preset": "small", "B": 16, "T": 128, "dropout": 0.1,
                                         "impl": "plain", "error": "sample"}]
    print(model_table(sample))
    print(kernel_table([{"kernel": "sample", "fused_ms": 1.0, "plain_ms": 2.0, "fused_GBs": 2.0,
                         "plain_GBs": 1.0}]))
    try:
        import torch
    except ImportError:
        print("PyTorch twin check skipped: no torch here")
    else:
        try:
            err0, err1 = twin_check(torch)
            print(f"PyTorch twin of GPT-1 = minigpt's GPT on the CPU: logits {err0:.1e} of their "
                  f"scale apart, after one training step {err1:.1e} of the step's change")
        except AssertionError as e:
            problems.append(str(e))
    for p in problems:
        print("PROBLEM:", p)
    print("dry run:", "ok" if not problems else f"{len(problems)} problems")
    return 1 if problems else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true",
                    help="no GPU needed: print the plan and run the CPU-side self-checks")
    ap.add_argument("--case", nargs="+", metavar=("NAME", "ARG"),
                    help=f"run one part's work in this process ({', '.join(CASES)})")
    args = ap.parse_args(argv)
    if args.case:
        name, *rest = args.case
        if name not in CASES:
            ap.error(f"unknown case {name!r}; choose one of {', '.join(CASES)}")
        return CASES[name](*rest)
    if args.dry_run:
        return dry_run()

    OUT.mkdir(parents=True, exist_ok=True)
    summary = {"steps": {}, "model": [], "kernels": []}
    py = sys.executable
    me = str(Path(__file__).resolve())

    # preflight: without CuPy and a GPU nothing below can run
    env_lines = [f"python {sys.version.split()[0]} ({py})"]
    gpu = "?"
    if shutil.which("nvidia-smi"):
        rc, out = sh(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,"
                      "clocks.max.sm,temperature.gpu,power.draw", "--format=csv,noheader"], 30)
        env_lines.append(out.strip())
        if rc == 0 and out.strip():
            gpu = out.strip().splitlines()[0].split(",")[0]
    rc, out = sh([py, me, "--case", "env"], ENV_TIMEOUT_S, "env.log")
    env_lines.append(out.strip())
    print("\n".join(env_lines), flush=True)
    if gpu == "?" and " device " in out:  # no nvidia-smi: the name CuPy reported
        gpu = out.split(" device ", 1)[1].splitlines()[0].strip()
    if rc != 0:
        reason = next((ln[len("CANNOT_RUN "):] for ln in out.splitlines() if ln.startswith("CANNOT_RUN ")),
                      None)
        print(f"\ngpu_check: cannot run here: {reason}" if reason else
              f"\ngpu_check: the preflight failed (rc={rc}); see the output above", file=sys.stderr)
        print("Nothing was run. `python3 tools/gpu_check.py --dry-run` checks the script itself "
              "without a GPU.", file=sys.stderr)
        return 2
    summary["steps"]["env"] = "ok"
    summary["env"] = env_lines

    def part(name, run):
        """Run one part within its time limit; a bug in gpu_check itself loses only this part."""
        if name in SKIP:
            _done.add(name)
            summary["steps"][name] = "skipped (GPU_CHECK_SKIP)"
            return
        limit = time_limit(name, left())
        if limit is None:
            summary["steps"][name] = (f"skipped (no time left: needs {PARTS[name][0]} s, "
                                      f"{max(left(), 0):.0f} s left)")
            return
        try:
            run(limit)
        except Exception as e:  # noqa: BLE001
            summary["steps"][name] = f"FAILED in gpu_check itself: {e!r}"

    def compile_(limit):
        rc, out = sh([py, me, "--case", "compile"], limit, "compile.log")
        times = {k: v for d in tagged(out, "COMPILE") for k, v in d.items()}
        summary["compile_s"] = times
        bad = [k for k, v in times.items() if isinstance(v, str)]
        summary["steps"]["compile"] = ("ok" if rc == 0 and times and not bad
                                       else f"FAILED rc={rc} {' '.join(bad)}")
        if rc != 0 or bad:
            print(out[-3000:])

    def model(preset, B, T):
        def run(limit):
            # the child stops starting cells 8 s before its limit (a cell takes up to ~3 s plus
            # its warm-up); the rows it printed survive a timeout
            rc, out = sh([py, me, "--case", "model", preset, str(B), str(T), f"{limit - 8:.1f}"],
                         limit, f"model_{preset}.log")
            rows = tagged(out, "MODEL")
            summary["model"] += rows
            errors = [r for r in rows if "error" in r]
            summary["steps"][f"model-{preset}"] = ("ok" if rc == 0 and rows and not errors
                                                   else f"FAILED rc={rc}, {len(errors)} errors")
            if rc != 0 or not rows:
                print(out[-2500:])
        return run

    def tests(limit):
        files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_gpu*.py")
                       if p.name != "test_gpu_check.py")  # (this script's own CPU tests)
        for path in sorted((REPO / "tests").glob("test_*.py")):  # GPU tests in other files
            if not path.name.startswith("test_gpu"):
                names = re.findall(r"^def (test_\w*on_cupy\w*)\(", path.read_text(), re.M)
                files += [f"tests/{path.name}::{n}" for n in names]
        rc, out = sh([py, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *files],
                     limit, "pytest.log")
        tail = [line for line in out.strip().splitlines() if line.strip()][-1:] or ["?"]
        ok = rc == 0 and " passed" in tail[0]  # all skipped (no CuPy/GPU seen) is a failure
        summary["steps"]["tests"] = f"{'ok' if ok else 'FAILED'}: {tail[0]}"
        if not ok:
            fails = [ln for ln in out.splitlines() if ln.startswith(("FAILED", "ERROR"))]
            print("\n".join(fails[:30]))
            print(out[-5000:])

    def kernels(limit):
        rc, out = sh([py, me, "--case", "kernels"], limit, "kernels.log")
        rows = tagged(out, "KERNEL")
        summary["kernels"] = rows
        summary["steps"]["kernels"] = ("ok" if rc == 0 and rows and not any("error" in r for r in rows)
                                       else f"FAILED rc={rc}")
        if rc != 0:
            print(out[-2500:])

    bench_json = OUT / "bench.json"

    def attention(limit):
        # T=1024 and the thread-per-row naive kernel (100 ms a call at T=512) only when its
        # limit allows (~20 s more)
        extra = ["512", "1024"] if limit >= 40 else ["512", "--skip", "naive-cu"]
        rc, out = sh([py, "benchmarks/bench_attention_gpu.py", "--reps", "10", "--json",
                      str(bench_json), "--T", *extra], limit, "bench.log")
        summary["steps"]["attention"] = "ok" if rc == 0 else f"FAILED rc={rc}"
        if rc != 0:
            print(out[-2000:])

    profile_lines = []

    def profile(limit):
        rc, out = sh([py, me, "--case", "profile"], limit, "profile.log")
        profile_lines.extend(ln[len("PROFILE "):] for ln in out.splitlines()
                             if ln.startswith("PROFILE "))
        summary["steps"]["profile"] = "ok" if rc == 0 and profile_lines else f"FAILED rc={rc}"
        if rc != 0:
            print(out[-1500:])

    cs = shutil.which("compute-sanitizer")
    for cand in ([] if cs else sorted(Path("/usr/local").glob("cuda*/bin/compute-sanitizer"))):
        cs = str(cand)

    def sanitizer(tool):
        def run(limit):
            rc, out = sh([cs, f"--tool={tool}", "--error-exitcode=3", py, me, "--case", "sanitize"],
                         limit, f"sanitizer_{tool}.log")
            parts_failed = [ln for ln in out.splitlines() if ln.startswith("PART FAILED")]
            clean = rc == 0 and "sanitize case done" in out and not parts_failed
            summary["steps"][tool] = ("clean" if clean else
                                      f"ISSUES rc={rc} {len(parts_failed)} parts failed")
            if not clean:
                print("\n".join(parts_failed))
                print(out[-2500:])
        return run

    runs = {"compile": compile_, "model-small": model("small", 16, 128),
            "model-gpt1": model("gpt1", 8, 512), "tests": tests, "kernels": kernels,
            "attention": attention, "profile": profile, "memcheck": sanitizer("memcheck"),
            "racecheck": sanitizer("racecheck")}
    assert list(runs) == list(PARTS)
    for name, run in runs.items():
        if name in ("memcheck", "racecheck") and not cs:
            _done.add(name)
            summary["steps"][name] = "skipped (no compute-sanitizer)"
            continue
        part(name, run)

    summary["wall_s"] = round(time.time() - T0, 1)
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1, default=str))

    # the tables, last: the per-kernel table, then the whole-model table at the very end
    print("\n================ gpu_check summary ================")
    print(f"GPU: {gpu}   date: {time.strftime('%Y-%m-%d %H:%M')}   wall: {summary['wall_s']} s"
          f"   budget: {BUDGET_S:.0f} s")
    for step, status in summary["steps"].items():
        print(f"  {step:<20} {status}")
    if summary.get("compile_s"):
        print("  compile s: " + ", ".join(f"{k.split('_')[0]}={str(v)[:40]}"
                                          for k, v in summary["compile_s"].items()))
    sys.path.insert(0, str(REPO / "benchmarks"))
    for what, fn in (("profile", lambda: "host profile, small preset step (cProfile, by own "
                      "time; ncalls tottime percall cumtime percall function):\n  "
                      + "\n  ".join(profile_lines) if profile_lines else ""),
                     ("attention", lambda: __import__("bench_attention_gpu").table(
                         json.loads(bench_json.read_text())) if bench_json.exists() else ""),
                     ("kernels", lambda: kernel_table(summary["kernels"])),
                     ("model", lambda: model_table(summary["model"]))):
        try:
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
