"""minigpt vs PyTorch on the CPU: one GPT-1 training step (forward, backward, Adam), side by side.

    python benchmarks/bench_cpu.py                          # tiny, small and gpt1 (~10 min on 2 cores)
    python benchmarks/bench_cpu.py --configs tiny --rounds 5 --no-extras   # a quick look
    python benchmarks/bench_cpu.py --threads 1             # one thread each
    python benchmarks/bench_cpu.py --compare HEAD~5        # also that commit's minigpt, side by side
    python benchmarks/bench_cpu.py --impls minigpt,minigpt_reference   # tuned vs readable ops
    python benchmarks/bench_cpu.py --configs small --impls minigpt,minigpt/1t,torch_eager,torch_eager/1t
                                                           # 1 -> 2 threads, both libraries, one run

Only a run on an idle machine is a result: a load average above 0.5 at the start prints
"machine busy: not a result" above the table, and every config reports the load average before
and after it (which counts the benchmark's own processes) and the CPU that other processes took
while it ran (the machine's busy time from /proc/stat minus the benchmark's own; more than a
quarter of a core marks that config BUSY). Other processes take cores from the libraries
unequally: PyTorch's OpenMP threads suffer more, which once made minigpt look 1.8x faster
than it is.

Implementations, each in its own process (benchmarks/_bench_worker.py), all float32, all
starting from minigpt's initial weights and training on the same batches with dropout off
(dropout draws different random masks in each library, so it is off for comparability):
  minigpt      this repository
  torch_eager  the same model in PyTorch: explicit masked softmax, torch.optim.AdamW's default
               (for-loop) implementation, with eps and weight decay reset every step so that it
               applies GPT-1's Adam formula exactly (see the worker)
  torch_best   scaled_dot_product_attention (fused attention) + fused AdamW
  minigpt_reference  this repository with the readable reference ops (MINIGPT_OPS=reference)
  minigpt@REV  another commit of minigpt (a git worktree made by --compare REV), to show that a
               change made nothing slower: same process layout, same batches
  NAME/Nt      any of the above with N threads (OMP, OpenBLAS, MKL and minigpt's pool) in its
               process, whatever --threads says: thread scaling from one interleaved run. The
               ratio of minigpt/1t is minigpt's speed-up from 1 thread to the default; PyTorch's
               is ratio(torch_eager/1t) / ratio(torch_eager)

Method: the driver asks each process for one step at a time, round-robin, the order reversed
every round, so that a change in the machine's load hits every implementation alike, with a
quiet gap (--gap, 0.3 s) before each step: a library's idle workers spin for a while after
its last call (OpenBLAS's, OpenMP's), and without the gap the step after another process's
took that spinning core. Measured 2026-12-03 (idle, 2 cores): the implementation that ran
right after the sgemm process in every other round took 210 ms a tiny step instead of 155,
whichever commit it was, and PyTorch eager took 161 after PyTorch best against 138 after
minigpt (benchmarks/NOTES.md, issue 26). The warm-up steps are excluded; per round it takes the ratio minigpt speed / PyTorch speed
(= PyTorch's step time / minigpt's step time; above 1 minigpt is faster) and reports medians.
Correctness guard: after the timed steps the training loss of the last step and the loss of
every implementation on a held-out batch must agree to --tol (default 5e-5, i.e. to 4
decimals), otherwise the benchmark exits with status 1.

MFU: model FLOPs per token (6N + 12 L T d, N = the parameters used in matmuls: every block
weight and the tied token embedding as the output layer; position embeddings and biases are
lookups and adds) times tokens/s, over the sgemm rate this machine reaches: a fourth process
times one 2048^3 NumPy/OpenBLAS matmul in every round, between the steps, and MFU is the
median of the per-round ratios, so a busy machine lowers both sides alike. (A best-of-8
sgemm measured once at the start, in both libraries, is printed too.)
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "benchmarks" / "_bench_worker.py"

CONFIGS = {  # name -> (model config, batch size, default timed rounds, sampled tokens)
    "tiny": (dict(vocab_size=65, n_ctx=64, n_layer=4, n_embd=128, n_head=4), 32, 20, 63),
    "small": (dict(vocab_size=512, n_ctx=128, n_layer=6, n_embd=384, n_head=6), 16, 8, 127),
    "gpt1": (dict(vocab_size=40478, n_ctx=512, n_layer=12, n_embd=768, n_head=12), 1, 5, 64),
    "micro": (dict(vocab_size=32, n_ctx=16, n_layer=2, n_embd=32, n_head=2), 4, 2, 8),  # tests
}
IMPLS = ("minigpt", "torch_eager", "torch_best")
IDLE_LOAD = 0.5  # load average above which a measurement is not a result
COMPARE_ROOTS: dict[str, Path] = {}  # "minigpt@REV" -> a worktree of REV (filled by --compare)


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "MINIGPT_NUM_THREADS")


def split_threads(impl: str) -> tuple[str, int | None]:
    """"minigpt/1t" -> ("minigpt", 1); a name without a /Nt suffix -> (name, None)."""
    base, sep, tail = impl.rpartition("/")
    if sep and tail.endswith("t") and tail[:-1].isdigit() and int(tail[:-1]) > 0:
        return base, int(tail[:-1])
    return impl, None


def worker_command(impl: str) -> tuple[str, dict]:
    """(the worker's implementation name, environment overrides) for an entry of --impls."""
    impl, threads = split_threads(impl)
    env = {var: str(threads) for var in THREAD_VARS} if threads else {}
    if impl == "minigpt_reference":
        return "minigpt", {"MINIGPT_OPS": "reference", **env}
    if impl in COMPARE_ROOTS:
        return "minigpt", {"MINIGPT_BENCH_ROOT": str(COMPARE_ROOTS[impl]), "MINIGPT_OPS": "", **env}
    return impl, env


def add_worktree(rev: str) -> str:
    """Check out `rev` of this repository in a temporary git worktree; its impl name."""
    import tempfile
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True,
                         text=True)
    if sha.returncode:
        raise SystemExit(f"bench_cpu: --compare {rev!r}: not a commit of this repository "
                         f"({sha.stderr.strip()})")
    path = Path(tempfile.mkdtemp(prefix=f"minigpt-bench-{sha.stdout.strip()}-"))
    subprocess.run(["git", "worktree", "add", "--detach", "--force", str(path), rev], cwd=ROOT,
                   check=True, capture_output=True)
    name = f"minigpt@{sha.stdout.strip()}"
    COMPARE_ROOTS[name] = path
    return name


def remove_worktrees() -> None:
    for path in COMPARE_ROOTS.values():
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT,
                       capture_output=True)


class Worker:
    """One implementation in its own process, answering one JSON line per command."""

    def __init__(self, impl: str, opts: dict, threads: int | None = None):
        self.impl = impl
        env = dict(os.environ)
        if threads:  # every thread pool either library may use
            for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                env[var] = str(threads)
        worker_impl, overrides = worker_command(impl)
        env.update(overrides)
        self.proc = subprocess.Popen([sys.executable, str(WORKER), worker_impl, json.dumps(opts)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     cwd=ROOT, env=env)
        self.read()  # {"ready": true} once the model and optimizer exist

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.impl} worker exited with status {self.proc.wait()}")
        return json.loads(line)

    def ask(self, cmd: str) -> dict:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        self.proc.wait(timeout=60)


def run_python(code: str, timeout: float = 600) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=timeout, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(out.stderr)
    return out.stdout.strip()


SGEMM = """
import time, numpy as np
n = 2048
a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
b = a.T.copy(); c = np.empty_like(a)
best = 1e9
for _ in range(8):
    t0 = time.perf_counter(); np.matmul(a, b, out=c); best = min(best, time.perf_counter() - t0)
print(2 * n**3 / best / 1e9)
"""

SGEMM_TORCH = """
import time, torch
n = 2048
a = torch.randn(n, n); b = a.T.contiguous(); c = torch.empty(n, n)
best = 1e9
for _ in range(8):
    t0 = time.perf_counter(); torch.mm(a, b, out=c); best = min(best, time.perf_counter() - t0)
print(2 * n**3 / best / 1e9)
"""

GRADCHECK = """
import time, numpy as np
from minigpt import GPT, GPTConfig, gradcheck
cfg = GPTConfig(vocab_size=13, n_ctx=8, n_layer=2, n_embd=8, n_head=2, embd_pdrop=0.0,
                attn_pdrop=0.0, resid_pdrop=0.0, dtype="float64")
model = GPT(cfg)
rng = np.random.default_rng(0)
idx, targets = rng.integers(0, 13, (2, 5)), rng.integers(0, 13, (2, 5))
names, params = zip(*model.named_parameters())
t0 = time.perf_counter()
gradcheck(lambda *ps: model.loss(idx, targets), params, names=list(names))
print(time.perf_counter() - t0, sum(p.size for p in params))
"""


def flops_per_token(cfg: dict) -> float:
    """6N + 12 L T d: N = matmul parameters (blocks' weights + tied output embedding)."""
    d, L, T, V = cfg["n_embd"], cfg["n_layer"], cfg["n_ctx"], cfg["vocab_size"]
    n_matmul = L * 12 * d * d + V * d
    return 6 * n_matmul + 12 * L * T * d


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy
    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": numpy.__version__, "torch": torch_version,
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")}


def loadavg() -> float:
    try:
        return float(open("/proc/loadavg").read().split()[0])
    except OSError:
        return float("nan")


OTHERS_BUSY = 0.25  # cores' worth of CPU used by other processes during a config: disturbed


def machine_busy_seconds() -> float:
    """CPU seconds spent by every process on the machine so far (all cores; /proc/stat)."""
    try:
        fields = open("/proc/stat").readline().split()[1:]  # the "cpu" line: jiffies by kind
    except OSError:
        return float("nan")
    user, nice, system, idle, iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process, all its threads (/proc/PID/stat)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def own_cpu_seconds(workers) -> float:
    """CPU seconds of this benchmark: the driver and its live workers."""
    t = os.times()
    return t.user + t.system + sum(process_cpu_seconds(w.proc.pid) for w in workers)


def bench_config(name: str, impls, rounds: int, warmup: int, sample_rounds: int, opts_extra: dict,
                 log, threads: int | None = None, gap: float = 0.3) -> dict:
    """One config, every implementation side by side. Besides the load average (which counts
    the benchmark's own processes too), it measures the CPU that *other* processes used while
    it ran: the machine's busy time minus the benchmark's own, in cores (0 on an idle machine)."""
    model_cfg, B, _, n_sample = CONFIGS[name]
    opts = {"config": model_cfg, "batch": B, "seed": 0, **opts_extra}
    load0 = loadavg()
    workers = [Worker(impl, opts, threads) for impl in list(impls) + ["sgemm"]]
    busy0, own0, wall0 = machine_busy_seconds(), own_cpu_seconds(workers), time.perf_counter()
    try:
        for w in workers:
            w.ask("reset_peak")
        times = {w.impl: [] for w in workers}
        cpu = {w.impl: [] for w in workers}
        losses = {}
        for r in range(warmup + rounds):
            order = workers if r % 2 == 0 else workers[::-1]
            for w in order:
                time.sleep(gap)  # let the previous step's spinning workers go to sleep
                res = w.ask("step")
                if r >= warmup:
                    times[w.impl].append(res["dt"])
                    cpu[w.impl].append(res["cpu"])
                losses[w.impl] = res["loss"]
            log(f"  {name} round {r + 1}/{warmup + rounds}: " + ", ".join(
                f"{w.impl} {1e3 * times[w.impl][-1] if r >= warmup else float('nan'):.0f} ms"
                for w in workers))
        models = [w for w in workers if w.impl != "sgemm"]
        evals = {w.impl: w.ask("eval")["loss"] for w in models}
        stats = {w.impl: w.ask("stats") for w in models}
        samples = {w.impl: [] for w in models}
        ids = {}
        for r in range(sample_rounds):
            for w in (models if r % 2 == 0 else models[::-1]):
                time.sleep(gap)
                res = w.ask(f"sample {n_sample}")
                samples[w.impl].append(n_sample / res["dt"])
                ids[w.impl] = res["ids"]
        others = ((machine_busy_seconds() - busy0) - (own_cpu_seconds(workers) - own0)) \
            / (time.perf_counter() - wall0)
    finally:
        for w in workers:
            w.close()
    T = model_cfg["n_ctx"]
    n = 2048  # the sgemm worker's matrix size
    sgemm_rates = [2 * n ** 3 / dt for dt in times["sgemm"]]  # FLOP/s, one per round
    out = {"config": name, "batch": B, "tokens_per_step": B * T, "rounds": rounds,
           "warmup": warmup, "load_before": load0, "load_after": loadavg(),
           "others_cores": max(0.0, others), "gap_s": gap, "impls": {},
           "sgemm_gflops_median": statistics.median(sgemm_rates) / 1e9}
    fpt = flops_per_token(model_cfg)
    base = times.get("minigpt")
    for impl in impls:
        t = times[impl]
        entry = {"median_s": statistics.median(t), "tokens_per_s": B * T / statistics.median(t),
                 "last_loss": losses[impl], "eval_loss": evals[impl],
                 "peak_rss_mb": stats[impl]["peak_rss_mb"], "threads": stats[impl]["threads"],
                 "minigpt_from": stats[impl].get("minigpt_from"),
                 "times": t, "cpu_median_s": statistics.median(cpu[impl]),
                 "mfu": statistics.median(fpt * B * T / ti / rate for ti, rate in zip(t, sgemm_rates))}
        if base is not None and impl != "minigpt":
            ratios = [ti / tm for ti, tm in zip(t, base)]  # PyTorch time / minigpt time
            entry["ratio_median"] = statistics.median(ratios)
            entry["ratio_min"], entry["ratio_max"] = min(ratios), max(ratios)
        if samples[impl]:
            entry["sample_tokens_per_s"] = statistics.median(samples[impl])
            entry["sample_ids_equal_minigpt"] = ids.get("minigpt") == ids[impl]
        out["impls"][impl] = entry
    return out


def check_losses(result: dict, tol: float) -> list[str]:
    impls = result["impls"]
    problems = []
    if "minigpt" not in impls:
        return problems
    for impl, e in impls.items():
        for key in ("last_loss", "eval_loss"):
            diff = abs(e[key] - impls["minigpt"][key])
            if diff > tol:
                problems.append(f"{result['config']}: {impl} {key} {e[key]:.6f} vs minigpt "
                                f"{impls['minigpt'][key]:.6f} (|diff| {diff:.2e} > {tol})")
    return problems


def print_table(info: dict, results: list, sgemm: dict, gradcheck_s, file=None):
    p = lambda *a: print(*a, file=file or sys.stdout)  # noqa: E731  (sys.stdout of the moment)
    p(f"\n## CPU benchmark: {info['date']}")
    if info.get("busy"):
        p(f"**machine busy: not a result** (load average {info['load_start']:.2f} at the start, "
          f"above {IDLE_LOAD}: other processes take cores from the libraries unequally)")
    else:
        p(f"idle machine: load average {info['load_start']:.2f} at the start (<= {IDLE_LOAD})")
    p(f"machine: {info['cpu']}, {info['cores']} cores; numpy {info['numpy']}, torch {info['torch']}, "
      f"python {info['python']}, OPENBLAS_CORETYPE={info['OPENBLAS_CORETYPE']}")
    p(f"sgemm at the start (2048^3, best of 8): NumPy/OpenBLAS {sgemm['numpy']:.0f} GFLOP/s, "
      f"PyTorch/MKL {sgemm.get('torch', float('nan')):.0f} GFLOP/s; MFU below: against the "
      "NumPy sgemm timed in every round (median of per-round ratios)")
    p("float32, dropout off, Adam (GPT-1 formula) with weight decay 0.01 and clipping at 1; "
      "ratio = minigpt speed / PyTorch speed, median of per-round ratios [min-max]\n")
    p("| config | implementation | ms/step | tokens/s | minigpt speed / this | MFU | peak RSS MiB | "
      "sample tok/s (KV cache) | CPU ms/step |")
    p("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for res in results:
        for impl, e in res["impls"].items():
            ratio = (f"{e['ratio_median']:.2f}x [{e['ratio_min']:.2f}-{e['ratio_max']:.2f}]"
                     if "ratio_median" in e else "-")
            mfu = e["mfu"]
            st = f"{e['sample_tokens_per_s']:.0f}" if "sample_tokens_per_s" in e else "-"
            p(f"| {res['config']} (B={res['batch']}) | {impl} | {1e3 * e['median_s']:.1f} | "
              f"{e['tokens_per_s']:.0f} | {ratio} | {100 * mfu:.0f}% | {e['peak_rss_mb']:.0f} | {st} | "
              f"{1e3 * e['cpu_median_s']:.0f} |")
    p("")
    for res in results:
        p(f"{res['config']}: {res['rounds']} timed rounds after {res['warmup']} warm-up, "
          f"{res.get('gap_s', 0):g} s quiet before each step; load "
          f"average {res['load_before']:.1f} before, {res['load_after']:.1f} after (this benchmark's "
          f"processes included); other processes used {res['others_cores']:.2f} cores; sgemm in the "
          f"rounds {res['sgemm_gflops_median']:.0f} GFLOP/s (median); losses " +
          ", ".join(f"{i} {e['last_loss']:.5f}/{e['eval_loss']:.5f}" for i, e in res["impls"].items())
          + " (last step / held-out)"
          + (f"  BUSY (other processes > {OTHERS_BUSY} cores): not a result"
             if res["others_cores"] > OTHERS_BUSY else ""))
        for i, e in res["impls"].items():
            p(f"  {res['config']} {i} threads: {e['threads']}")
    if gradcheck_s is not None:
        p(f"whole-model float64 gradcheck (2 layers, 8 wide, {gradcheck_s[1]} parameters): "
          f"{gradcheck_s[0]:.1f} s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="tiny,small,gpt1")
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds (default per config)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--gap", type=float, default=0.3,
                    help="seconds of quiet before each step (other processes' idle workers "
                         "stop spinning; 0: none)")
    ap.add_argument("--sample-rounds", type=int, default=3)
    ap.add_argument("--lr", type=float, default=2.5e-4)
    ap.add_argument("--tol", type=float, default=5e-5, help="loss agreement tolerance")
    ap.add_argument("--no-extras", action="store_true",
                    help="skip the sgemm measurement and the gradcheck timing (--sample-rounds 0 "
                         "skips sampling)")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads per implementation (default: each library's own, all cores)")
    ap.add_argument("--compare", action="append", default=[], metavar="REV",
                    help="also time minigpt as of this commit (a temporary git worktree); "
                         "repeatable")
    args = ap.parse_args(argv)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    impls = [i for i in args.impls.split(",") if i]
    try:
        impls += [add_worktree(rev) for rev in args.compare]
        return run(args, impls, log)
    finally:
        remove_worktrees()


def run(args, impls, log) -> int:
    info = machine_info()
    info["load_start"] = loadavg()
    info["busy"] = info["load_start"] > IDLE_LOAD
    if info["busy"]:
        log(f"machine busy: load average {info['load_start']:.2f} > {IDLE_LOAD}: not a result")
    sgemm = {"numpy": float("nan")}
    gradcheck_s = None
    if not args.no_extras:
        sgemm["numpy"] = float(run_python(SGEMM))
        try:
            sgemm["torch"] = float(run_python(SGEMM_TORCH))
        except RuntimeError:
            pass
        log(f"sgemm: {sgemm}")
    results, problems = [], []
    for name in [c for c in args.configs.split(",") if c]:
        rounds = args.rounds if args.rounds is not None else CONFIGS[name][2]
        t0 = time.perf_counter()
        res = bench_config(name, impls, rounds, args.warmup,
                           args.sample_rounds,
                           {"lr": args.lr, "weight_decay": 0.01}, log, args.threads, args.gap)
        log(f"  {name}: {time.perf_counter() - t0:.0f} s")
        results.append(res)
        problems += check_losses(res, args.tol)
    if not args.no_extras:
        secs, n = run_python(GRADCHECK).split()
        gradcheck_s = (float(secs), int(n))
    print_table(info, results, sgemm, gradcheck_s)
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "sgemm": sgemm, "results": results,
                                               "gradcheck_s": gradcheck_s, "problems": problems},
                                              indent=1))
    if problems:
        print("\nFAIL: the implementations' losses disagree:\n  " + "\n  ".join(problems))
        return 1
    print(f"\nlosses agree to {args.tol} in every config")
    if info["busy"]:
        print("machine busy: not a result")
    return 0


if __name__ == "__main__":
    sys.exit(main())
