"""Where one minigpt training step spends its time on the CPU: every op, in wall and CPU time.

    python benchmarks/profile_cpu.py                              # tiny, small, gpt1; default threads and 1
    python benchmarks/profile_cpu.py --configs small --threads default --steps 5
    MINIGPT_NUM_THREADS=1 python benchmarks/profile_cpu.py --configs small --threads default
                                                                  # BLAS threads, no pool of ours

One training step as bench_cpu.py times it (GPT(config, seed=0), dropout off, forward +
backward + Adam with weight decay 0.01 and clipping at 1, float32, the benchmark's batch
sizes), each (config, threads) in a process of its own (thread counts are fixed when NumPy
loads). After --warmup steps, --steps steps are profiled and the per-step mean is printed:

  op rows    every Function's forward and backward (named by its reference op, with the
             implementation minigpt.dispatch ran: "fast", "reference"; "" for autograd's
             elementary ops such as Add, Reshape, GetItem), exclusive of nested ops
  glue rows  forward glue (Python between the ops: module calls, dispatch), the autograd
             engine (topological order, gradient sums of tensors used twice, the leaves'
             .grad), Adam's gradient norm, Adam's update, zero_grad, loss.item()

Columns: wall ms per step (time.perf_counter); CPU ms of the whole process (time.process_time,
every thread); CPU/wall (1 = one core busy, 2 = both of 2 cores); the main thread's own CPU
(time.thread_time); and "other thr" = process - main thread = what OpenBLAS's threads and
minigpt's pool burnt meanwhile. On an op that runs on the main thread alone (autograd's
elementary ops, the engine), "other thr" > 0 is OpenBLAS's threads spin-waiting after the
previous BLAS call; main-thread CPU well below wall is the main thread waiting (joins,
wake-ups, a descheduled core).

How: minigpt.autograd calls its OBSERVERS (minigpt.trace's hook) after each forward and
backward only, so an observer can time the gaps between ops but not tell an op from the
engine work before it. The profiler therefore wraps the two places that call the observers,
Function.apply and Function._run_backward, and Function.run_forward (the graph-free forward
of GPT.decode, which sampling runs), for the duration of the profiled steps (a stack
makes nested ops exclusive), and restores them after. The timing costs ~10 us per op: the
profiled step is printed next to an unprofiled one.

Only an idle machine gives a result: the load average is printed before and after each
process, and a start above 0.5 prints "machine busy: not a result".
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_cpu import CONFIGS, IDLE_LOAD, loadavg, machine_info  # noqa: E402

DEFAULT_STEPS = {"tiny": 10, "small": 4, "gpt1": 3, "micro": 2}
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "MINIGPT_NUM_THREADS")


# ---- the child: one config, one thread setting -----------------------------------------------

class Profiler:
    """Exclusive wall/CPU/main-thread-CPU time per (phase, op) while active."""

    def __init__(self):
        from minigpt import dispatch
        self.names = {}  # Function class -> (op name, implementation)
        for impls in dispatch.registered().values():
            ref = impls.get("reference")
            for impl, cls in impls.items():
                if isinstance(cls, type):
                    self.names[cls] = (getattr(ref, "__name__", cls.__name__), impl)
        self.rows = {}  # (phase, op, impl) -> [calls, wall, cpu, thread]
        self.stack = []  # [wall0, cpu0, thr0, child_wall, child_cpu, child_thr]

    @staticmethod
    def now():
        return time.perf_counter(), time.process_time(), time.thread_time()

    def enter(self):
        self.stack.append([*self.now(), 0.0, 0.0, 0.0])

    def leave(self, key):
        w1, c1, t1 = self.now()
        w0, c0, t0, cw, cc, ct = self.stack.pop()
        dw, dc, dt = w1 - w0, c1 - c0, t1 - t0
        if self.stack:  # charge the parent with our total: it counts only its own time
            parent = self.stack[-1]
            parent[3] += dw
            parent[4] += dc
            parent[5] += dt
        row = self.rows.setdefault(key, [0, 0.0, 0.0, 0.0])
        row[0] += 1
        row[1] += dw - cw
        row[2] += dc - cc
        row[3] += dt - ct

    def op_key(self, phase, cls):
        op, impl = self.names.get(cls, (cls.__name__, ""))
        return (phase, op, impl)

    def timed(self, key, fn, *args, **kw):
        self.enter()
        try:
            return fn(*args, **kw)
        finally:
            self.leave(key)

    def install(self):
        from minigpt import optim
        from minigpt.autograd import Function
        self.saved = (Function.__dict__["apply"], Function._run_backward, optim.global_grad_norm,
                      Function.__dict__["run_forward"])
        apply0, run_backward0, norm0 = self.saved[0].__func__, self.saved[1], self.saved[2]
        run_forward0 = self.saved[3].__func__
        prof = self

        def apply(cls, *inputs, **options):
            return prof.timed(prof.op_key("forward", cls), apply0, cls, *inputs, **options)

        def run_forward(cls, *arrays, **options):  # GPT.decode's ops (sampling): no graph
            return prof.timed(prof.op_key("forward", cls), run_forward0, cls, *arrays, **options)

        def run_backward(fn, grad_output, retain_graph):
            return prof.timed(prof.op_key("backward", type(fn)), run_backward0, fn, grad_output,
                              retain_graph)

        Function.apply = classmethod(apply)
        Function.run_forward = classmethod(run_forward)
        Function._run_backward = run_backward
        optim.global_grad_norm = lambda params: prof.timed(("adam", "grad norm", ""), norm0, params)

    def uninstall(self):
        from minigpt import optim
        from minigpt.autograd import Function
        Function.apply, Function._run_backward, optim.global_grad_norm, Function.run_forward = \
            self.saved


def batch(vocab: int, T: int, B: int, step: int, seed: int = 0):
    """The benchmark's batches: token ids (B, T) and next-token targets (B, T) for step `step`."""
    import numpy as np
    data = np.random.default_rng([seed, step]).integers(0, vocab, (B, T + 1))
    return data[:, :-1], data[:, 1:]


def profile_sampling(model, n: int) -> dict:
    """Greedy KV-cache sampling of n tokens (bench_cpu.py's "sample N"), profiled like a step."""
    from minigpt.sample import generate
    generate(model, [1], n, temperature=0)  # warm-up
    t0 = time.perf_counter()
    generate(model, [1], n, temperature=0)
    plain = time.perf_counter() - t0
    prof = Profiler()
    prof.install()
    try:
        w0, c0, t0 = prof.now()
        prof.timed(("sample", "(glue)", ""), generate, model, [1], n, temperature=0)
        w1, c1, t1 = prof.now()
    finally:
        prof.uninstall()
    return {"rows": [[*k, *v] for k, v in prof.rows.items()], "steps": n,
            "total": [(w1 - w0) / n, (c1 - c0) / n, (t1 - t0) / n], "plain_step_s": plain / n}


def child(name: str, steps: int, warmup: int, sample: bool = False) -> dict:
    from minigpt import GPT, GPTConfig
    from minigpt.optim import Adam
    model_cfg, B = CONFIGS[name][0], CONFIGS[name][1]
    cfg = GPTConfig(**model_cfg, embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0)
    model = GPT(cfg, seed=0)
    opt = Adam(model.parameters(), lr=2.5e-4, weight_decay=0.01, max_grad_norm=1.0)
    V, T = model_cfg["vocab_size"], model_cfg["n_ctx"]

    def step(i, prof=None):
        x, y = batch(V, T, B, i)
        t = prof.timed if prof else (lambda key, fn, *a: fn(*a))
        t(("step", "zero_grad", ""), opt.zero_grad)
        loss = t(("forward", "(glue)", ""), model.loss, x, y)
        t(("backward", "(autograd engine)", ""), loss.backward)
        t(("adam", "update (+ clipping)", ""), opt.step)
        return t(("step", "loss.item()", ""), loss.item)

    i = 0
    for _ in range(warmup):
        step(i)
        i += 1
    plain = []
    for _ in range(steps):  # unprofiled steps: the profiler's own cost is their difference
        t0 = time.perf_counter()
        step(i)
        plain.append(time.perf_counter() - t0)
        i += 1
    prof = Profiler()
    prof.install()
    try:
        w0, c0, t0 = prof.now()
        for _ in range(steps):
            step(i, prof)
            i += 1
        w1, c1, t1 = prof.now()
    finally:
        prof.uninstall()
    from threadpoolctl import threadpool_info
    from minigpt.fast import runtime
    return {"rows": [[*k, *v] for k, v in prof.rows.items()], "steps": steps,
            "total": [(w1 - w0) / steps, (c1 - c0) / steps, (t1 - t0) / steps],
            "plain_step_s": sorted(plain)[len(plain) // 2],
            "sampling": profile_sampling(model, CONFIGS[name][3]) if sample else None,
            "pools": [(p["internal_api"], p["num_threads"]) for p in threadpool_info()],
            "minigpt_threads": runtime.num_threads(),
            "env": {v: os.environ.get(v) for v in THREAD_VARS}}


# ---- the driver --------------------------------------------------------------------------------

def run_child(name: str, threads: str, steps: int, warmup: int, sample: bool) -> dict:
    env = dict(os.environ)
    if threads != "default":
        for var in THREAD_VARS:
            env[var] = threads
    load0 = loadavg()
    out = subprocess.run([sys.executable, __file__, "--child", name, "--steps", str(steps),
                          "--warmup", str(warmup)] + ["--sample"] * sample, env=env,
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"profile of {name} ({threads} threads) failed:\n{out.stderr}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res.update(config=name, threads=threads, load_before=load0, load_after=loadavg())
    if res["sampling"]:
        res["sampling"].update({k: res[k] for k in ("config", "threads", "load_before",
                                                    "load_after", "pools", "minigpt_threads")})
    return res


def table(res: dict, top: int | None = None, sampling: bool = False) -> str:
    wall, cpu, thr = res["total"]
    n = res["steps"]
    what = "greedy KV-cache sampling, per token" if sampling else f"B={CONFIGS[res['config']][1]}"
    unit = "token" if sampling else "step"
    lines = [f"### {res['config']} ({what}), threads {res['threads']}: "
             f"BLAS {res['pools']}, minigpt pool {res['minigpt_threads']}",
             f"load average {res['load_before']:.2f} before, {res['load_after']:.2f} after "
             "(this profiler's earlier processes included: the start of the run decides)",
             f"profiled {unit} {1e3 * wall:.1f} ms wall, {1e3 * cpu:.1f} ms CPU "
             f"({cpu / wall:.2f} cores), main thread {1e3 * thr:.1f} ms; unprofiled {unit} "
             f"{1e3 * res['plain_step_s']:.1f} ms "
             + (f"(mean of {n})" if sampling else f"(median of {n}); means of {n} profiled steps"),
             "",
             "| phase | op | impl | calls | wall ms | % | CPU ms | CPU/wall | main thr ms | other thr ms |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    rows = sorted(res["rows"], key=lambda r: -r[4])
    if top:
        rows = rows[:top]
    for phase, op, impl, calls, w, c, t in rows:
        w, c, t = 1e3 * w / n, 1e3 * c / n, 1e3 * t / n
        d = 2 if sampling else 1
        ratio = f"{c / w:.2f}" if w > 0.05 / 10 ** (d - 1) else "-"
        lines.append(f"| {phase} | {op} | {impl or '-'} | {calls / n:g} | {w:.{d}f} | "
                     f"{100 * w / (1e3 * wall):.1f} | {c:.{d}f} | {ratio} | {t:.{d}f} | "
                     f"{max(c - t, 0.0):.{d}f} |")
    by_phase = {}
    for phase, op, impl, calls, w, c, t in res["rows"]:
        acc = by_phase.setdefault(phase, [0.0, 0.0])
        acc[0] += w / n
        acc[1] += c / n
    lines.append("")
    lines.append("by phase (wall ms / CPU ms): " + ", ".join(
        f"{p} {1e3 * w:.0f}/{1e3 * c:.0f}" for p, (w, c) in sorted(by_phase.items(), key=lambda kv: -kv[1][0])))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="tiny,small,gpt1")
    ap.add_argument("--threads", default="default,1",
                    help="comma-separated: 'default' (each library's own: all cores) or a count "
                         "(sets OMP/OPENBLAS/MKL/MINIGPT_NUM_THREADS)")
    ap.add_argument("--steps", type=int, default=None, help="profiled steps (default per config)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--top", type=int, default=None, help="print only the N largest rows")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    ap.add_argument("--sample", action="store_true",
                    help="also profile greedy KV-cache sampling (bench_cpu.py's token counts)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        steps = args.steps or DEFAULT_STEPS.get(args.child, 3)
        print(json.dumps(child(args.child, steps, args.warmup, args.sample)))
        return 0
    info = machine_info()
    load0 = loadavg()
    print(f"## CPU profile of one training step: {info['date']}")
    print(f"machine: {info['cpu']}, {info['cores']} cores; numpy {info['numpy']}, python "
          f"{info['python']}; load average {load0:.2f} at the start"
          + (f"\n**machine busy: not a result** (load above {IDLE_LOAD})" if load0 > IDLE_LOAD else ""))
    env = {v: os.environ[v] for v in THREAD_VARS if v in os.environ}
    if env:
        print(f"environment: {env}")
    results = []
    for name in [c for c in args.configs.split(",") if c]:
        for threads in [t for t in args.threads.split(",") if t]:
            steps = args.steps or DEFAULT_STEPS.get(name, 3)
            res = run_child(name, threads, steps, args.warmup, args.sample)
            results.append(res)
            print()
            print(table(res, args.top), flush=True)
            if res["sampling"]:
                print()
                print(table(res["sampling"], args.top, sampling=True), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "load_start": load0,
                                               "results": results}, indent=1))
    if load0 > IDLE_LOAD:
        print("\nmachine busy: not a result")
    return 0


if __name__ == "__main__":
    sys.exit(main())
