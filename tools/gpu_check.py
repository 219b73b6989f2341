#!/usr/bin/env python3
"""The one prepared GPU check (make gpu-check): installs nothing, runs in under 5 minutes.

    python3 tools/gpu_check.py                 # from the repository root, on a GPU machine

Steps (each one's failure is reported and the next still runs):
  1. environment: GPU, driver, CuPy, PyTorch versions;
  2. compile every kernel file through the loader (CuPy RawModule), timing each;
  3. pytest tests/test_gpu.py: every kernel against float64 references, determinism, the
     fused Functions, and a GPT trained 50 steps on CuPy against the NumPy run;
  4. the attention benchmark (benchmarks/bench_attention_gpu.py) at B=8, nh=12, hs=64,
     T = 512, 1024, 2048;
  5. training throughput of the `small` GPT preset on CuPy with the fused kernels on and off,
     and of PyTorch float32 eager and SDPA + fused AdamW on the same card;
  6. with the time left, compute-sanitizer memcheck and racecheck over one small launch of
     every kernel, when compute-sanitizer is on PATH (out-of-bounds accesses, shared-memory
     races).
Logs and JSON go to $OUT (or ./gpu_check_out; at most 8 files, what the GPU lease tool brings
back); a short table is printed last.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("OUT") or REPO / "gpu_check_out")
BUDGET_S = float(os.environ.get("GPU_CHECK_BUDGET_S", 280))
T0 = time.time()


def left() -> float:
    return BUDGET_S - (time.time() - T0)


def sh(cmd, timeout, log_name=None, env=None):
    """Run cmd, echo its output, save it under OUT; returns (rc, output)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(env or {})}
    t = time.time()
    try:
        res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=max(5, timeout))
        rc, out = res.returncode, res.stdout + res.stderr
    except subprocess.TimeoutExpired as e:
        out = ((e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or ""))
        rc, out = 124, out + f"\n[timed out after {timeout:.0f} s]"
    if log_name:
        (OUT / log_name).write_text(out)
    shown = " ".join(str(c) if len(str(c)) < 80 else "<script>" for c in cmd)
    print(f"$ {shown}   [rc={rc}, {time.time() - t:.1f} s]", flush=True)
    return rc, out


SANITIZE_CASE = r"""
import numpy as np, cupy as cp
from minigpt.cuda import attention as K
rng = np.random.default_rng(0)
for hs in (32, 64, 128):
    q, k, v, g = (cp.asarray(rng.standard_normal((2, 2, 70, hs)).astype(np.float32)) for _ in range(4))
    pm = cp.asarray((rng.random((2, 70)) > 0.3).astype(np.float32))
    for variant in ("flash", "naive"):
        o, lse = K.attention_forward(q, k, v, True, pm, variant)
        K.attention_backward(q, k, v, o, lse, g, True, pm, variant)
x = cp.asarray(rng.standard_normal((2, 70, 70)).astype(np.float32))
for variant in ("naive", "warp"):
    y = K.softmax_forward(x, 0.5, True, variant)
    K.softmax_backward(y, x, 0.5, True, variant)
cp.cuda.Device().synchronize()
print("sanitize case done")
"""

COMPILE_CASE = r"""
import time, json
from minigpt.cuda import loader as K
prov = K.get_provider()
times = {}
for f in K.KERNEL_FILES.values():
    t = time.time(); prov.module(f); times[f] = round(time.time() - t, 2)
print("COMPILE_TIMES " + json.dumps(times))
"""

THROUGHPUT_CASE = r"""
# training tokens/s of the `small` preset (attn_pdrop 0 so the fused path can run) on this card:
# minigpt on CuPy with the kernels on and off, and PyTorch float32 eager (explicit masked
# softmax, AdamW) and SDPA + fused AdamW, with minigpt's initial weights (benchmarks/_bench_worker.py)
import sys, time, json, numpy as np
sys.path.insert(0, "benchmarks")
from minigpt.model import GPT, GPTConfig
cfg = GPTConfig.preset("small", attn_pdrop=0.0, embd_pdrop=0.0, resid_pdrop=0.0)
B, T, n = 16, cfg.n_ctx, 10
idx_np = np.random.default_rng(0).integers(0, cfg.vocab_size, (B, T + 1))
res = {}

def timed(step, sync):
    for _ in range(3): step()
    sync(); t = time.time()
    for _ in range(n): step()
    sync()
    return B * T * n / (time.time() - t)

try:
    import cupy as cp
    from minigpt.cuda import loader as K
    from minigpt.optim import Adam
    idx = cp.asarray(idx_np)
    for mode in ("fused", "plain"):
        with K.use_fused(mode == "fused"):
            model = GPT(cfg, seed=0).to("cuda")
            opt = Adam(model.parameters(), lr=1e-4)
            def step():
                loss = model.loss(idx[:, :-1], idx[:, 1:]); opt.zero_grad(); loss.backward(); opt.step()
            res["minigpt-" + mode] = timed(step, cp.cuda.Device().synchronize)
except Exception as e:
    print("minigpt on CuPy failed:", repr(e))
try:
    import torch
    from _bench_worker import TorchRunner
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    x = torch.as_tensor(idx_np[:, :-1], device=dev); y = torch.as_tensor(idx_np[:, 1:], device=dev)
    for best in (False, True):
        r = TorchRunner(cfg, {"seed": 0, "lr": 1e-4, "weight_decay": 0.01}, best=best)
        for p in r.p.values():
            p.data = p.data.to(dev)
        r.mask = r.mask.to(dev)
        def step():
            r.opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(r.forward(x), y.reshape(-1)); loss.backward()
            torch.nn.utils.clip_grad_norm_(list(r.p.values()), 1.0); r.opt.step()
        sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
        res[("torch-sdpa-fusedadamw" if best else "torch-eager") + ("" if dev == "cuda" else "-cpu")] = timed(step, sync)
except Exception as e:
    print("torch run failed:", repr(e))
print("THROUGHPUT " + json.dumps({"preset": "small", "B": B, "T": T, "tokens_per_s": res}))
"""


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    summary = {"steps": {}}
    py = sys.executable

    # 1. environment
    env_lines = [f"python {sys.version.split()[0]} ({py})"]
    if shutil.which("nvidia-smi"):
        rc, out = sh(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,"
                      "clocks.max.sm,temperature.gpu,power.draw", "--format=csv"], 30)
        env_lines.append(out.strip())
    rc, out = sh([py, "-c", "import numpy, cupy; print('numpy', numpy.__version__, 'cupy', "
                  "cupy.__version__, 'cuda runtime', cupy.cuda.runtime.runtimeGetVersion());\n"
                  "try:\n import torch; print('torch', torch.__version__, torch.cuda.is_available())\n"
                  "except Exception as e: print('torch: none', e)"], 60)
    env_lines.append(out.strip())
    summary["env"] = env_lines
    print("\n".join(env_lines), flush=True)
    gpu_name = env_lines[1].splitlines()[-1].split(",")[0] if len(env_lines) > 2 else "?"

    # 2. compile every kernel through the loader
    rc, out = sh([py, "-c", COMPILE_CASE], min(120, left()), "compile.log")
    summary["steps"]["compile"] = "ok" if rc == 0 else f"FAILED rc={rc}"
    for line in out.splitlines():
        if line.startswith("COMPILE_TIMES "):
            summary["compile_s"] = json.loads(line.split(" ", 1)[1])
    if rc != 0:
        print(out[-3000:])

    # 3. the GPU tests
    rc, out = sh([py, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                  "tests/test_gpu.py"],
                 min(200, left() - 60), "pytest.log")
    tail = [line for line in out.strip().splitlines() if line.strip()][-1:] or ["?"]
    ok = rc == 0 and " passed" in tail[0]  # all skipped (no CuPy/GPU seen) is a failure here
    summary["steps"]["tests"] = f"{'ok' if ok else 'FAILED'}: {tail[0]}"
    if not ok:
        print(out[-6000:])

    # 4. the attention benchmark
    bench_json = OUT / "bench.json"
    Ts = ["512", "1024", "2048"] if left() > 60 else ["512"]
    rc, out = sh([py, "benchmarks/bench_attention_gpu.py", "--T", *Ts, "--reps", "10",
                  "--json", str(bench_json)], min(150, max(20, left() - 50)), "bench.log")
    summary["steps"]["benchmark"] = "ok" if rc == 0 else f"FAILED rc={rc}"
    if rc != 0:
        print(out[-3000:])

    # 5. model throughput, fused vs plain
    if left() > 60:
        rc, out = sh([py, "-c", THROUGHPUT_CASE], min(90, left() - 20), "throughput.log")
        for line in out.splitlines():
            if line.startswith("THROUGHPUT "):
                summary["throughput"] = json.loads(line.split(" ", 1)[1])
        summary["steps"]["throughput"] = "ok" if rc == 0 else f"FAILED rc={rc}"
        if rc != 0:
            print(out[-1500:])

    # 6. compute-sanitizer (memcheck + racecheck) on one small launch of every kernel
    cs = shutil.which("compute-sanitizer")
    if cs is None:
        for cand in sorted(Path("/usr/local").glob("cuda*/bin/compute-sanitizer")):
            cs = str(cand)
    if cs and left() > 40:
        for tool in ("memcheck", "racecheck"):
            rc, out = sh([cs, f"--tool={tool}", "--error-exitcode=3", py, "-c", SANITIZE_CASE],
                         (left() - 5) / (2 if tool == 'memcheck' else 1), f"sanitizer_{tool}.log")
            clean = rc == 0 and "sanitize case done" in out
            summary["steps"][f"sanitizer-{tool}"] = "clean" if clean else f"ISSUES rc={rc}"
            if not clean:
                print(out[-2500:])
    else:
        summary["steps"]["sanitizer"] = "skipped (no compute-sanitizer or no time)"

    summary["wall_s"] = round(time.time() - T0, 1)
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1))

    # the short table, last
    print("\n================ gpu_check summary ================")
    print(f"GPU: {gpu_name}   date: {time.strftime('%Y-%m-%d')}   wall: {summary['wall_s']} s")
    for step, status in summary["steps"].items():
        print(f"  {step:<20} {status}")
    if "compile_s" in summary:
        print("  compile s: " + ", ".join(f"{k.split('_')[0]}={v}" for k, v in summary["compile_s"].items()))
    if bench_json.exists():
        sys.path.insert(0, str(REPO / "benchmarks"))
        from bench_attention_gpu import table
        print(table(json.loads(bench_json.read_text())))
    if "throughput" in summary:
        tp = summary["throughput"]
        print(f"small GPT train step, B={tp['B']} T={tp['T']}: "
              + ", ".join(f"{k} {v:,.0f} tok/s" for k, v in tp["tokens_per_s"].items()))
    failed = [s for s, v in summary["steps"].items() if "FAIL" in v or "ISSUES" in v]
    print("RESULT:", "all steps passed" if not failed else "problems in " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
