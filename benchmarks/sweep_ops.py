"""Every tuned CPU op against its reference and against PyTorch, over a grid of shapes: find the cliffs.

    python benchmarks/sweep_ops.py                    # the whole grid (see --list for its size)
    python benchmarks/sweep_ops.py --quick            # a few shapes per op (~1 min on 2 cores)
    python benchmarks/sweep_ops.py --ops linear --widths 16,48,384 --rows 1,64,2048
    python benchmarks/sweep_ops.py --list             # the cases, without timing anything
    python benchmarks/sweep_ops.py --threads 1 --json sweep.json

A speed-up measured on three model presets says nothing about the shapes between them: a
rule that looks at the wrong dimension (issue 26: "few rows" read from dW = x^T g, whose rows
are n_embd, sent every weight gradient of a model narrower than 64 to a path 20x slower) hides
until someone trains a narrow model. This sweep times each op of minigpt/fast/ on a grid:

    widths       16 ... 1024   (n_embd C; linear maps C -> 4C, gelu runs on (N, 4C),
                                cross-entropy has C classes, layer_norm and embedding are C wide)
    rows         1 ... 8192    (tokens N = batch x context; 1 is one sampled token)
    head sizes   8 ... 128     (attention: nh = C / hs heads, context T = min(N, 256), B = N / T)

and for every case the op's three implementations: `tuned` (minigpt.use("fast")),
`reference` (minigpt.use("reference"), the readable ops of minigpt/ops/) and `torch`
(PyTorch 2's eager ops on the same shapes: addmm, F.layer_norm, F.gelu(approximate="tanh"),
an explicit masked softmax for attention, F.cross_entropy, F.embedding). Pass `train` is
forward + backward with a fixed upstream gradient (every case); pass `infer` is the forward
under no_grad (cases of <= 64 rows: sampling's shapes).

Method: NumPy (minigpt, both tiers) and PyTorch run in two worker processes of their own (so
OpenBLAS's and OpenMP's thread pools never share a process), started with the same thread
settings. For each case, each implementation is first timed twice (warm-up; the second time
sets how many calls one measurement repeats, --target-ms), then --rounds measurements
round-robin, the order reversed every round, so that a change in the machine's load hits all
three alike. A measurement is the mean of its repeated calls; a time below is the median of
the rounds, and a ratio is a ratio of those medians: `tuned/ref` = reference time / tuned
time (above 1: the tuned op is faster), `tuned/torch` = PyTorch time / tuned time (above 1:
minigpt is faster).

Flags (the point of the sweep):
    SLOWER-THAN-REF  the tuned op takes more than --slower x the reference's time
    TORCH-2X         PyTorch is more than 2x faster than the tuned op
    DIP              tuned/torch and tuned/ref are both below half of a neighbour's along
                     rows or widths (the same op, pass and other dimensions): a cliff's
                     edge (both, so that one library's noisy measurement does not make one)
A flag on a busy machine is a hint, not a result: the header names the CPU, the BLAS
libraries and thread counts (threadpoolctl, in each worker), the load average before and
after, and the CPU other processes took meanwhile (as bench_cpu.py measures it).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_cpu import (IDLE_LOAD, OTHERS_BUSY, loadavg, machine_busy_seconds,  # noqa: E402
                       machine_info, process_cpu_seconds)

OPS = ("linear", "linear_tied", "layer_norm", "gelu", "attention", "cross_entropy", "embedding")
WIDTHS = (16, 32, 48, 64, 128, 256, 384, 768, 1024)
ROWS = (1, 8, 64, 256, 1024, 2048, 8192)
HEAD_SIZES = (8, 16, 32, 64, 128)
QUICK = dict(widths=(16, 48, 128, 384), rows=(1, 64, 2048), head_sizes=(16, 64))
ATTN_T_MAX = 256        # attention's context: T = min(rows, ATTN_T_MAX), B = rows // T
EMBED_VOCAB = 512       # the embedding's table: (EMBED_VOCAB, C)
INFER_ROWS_MAX = 64     # the no-grad forward pass is timed for cases up to this many rows
IMPLS = ("tuned", "reference", "torch")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "MINIGPT_NUM_THREADS")


@dataclass(frozen=True)
class Case:
    """One op on one shape. rows = tokens N, width = C, head_size = hs (attention only)."""

    op: str
    rows: int
    width: int
    head_size: int = 0

    def attention_shape(self) -> tuple[int, int, int, int]:
        """(B, nh, T, hs) of q, k and v."""
        T = min(self.rows, ATTN_T_MAX)
        return self.rows // T, self.width // self.head_size, T, self.head_size

    def label(self) -> str:
        N, C = self.rows, self.width
        if self.op in ("linear", "linear_tied"):
            w = f"W^T ({4 * C}, {C})" if self.op == "linear_tied" else f"W ({C}, {4 * C})"
            return f"x ({N}, {C}) {w}"
        if self.op == "gelu":
            return f"x ({N}, {4 * C})"
        if self.op == "attention":
            B, nh, T, hs = self.attention_shape()
            return f"q,k,v ({B}, {nh}, {T}, {hs})"
        if self.op == "cross_entropy":
            return f"logits ({N}, {C})"
        if self.op == "embedding":
            return f"W ({EMBED_VOCAB}, {C}), {N} ids"
        return f"x ({N}, {C})"

    def gflop(self) -> float:
        """Rough forward + backward GFLOP (matmul ops: 3 products; others: ~20 per element)."""
        N, C = self.rows, self.width
        if self.op in ("linear", "linear_tied"):
            return 3 * 2 * N * C * 4 * C / 1e9
        if self.op == "attention":
            B, nh, T, hs = self.attention_shape()
            return 6 * 2 * B * nh * T * T * hs / 1e9
        return 20 * N * C * (4 if self.op == "gelu" else 1) / 1e9


def make_cases(ops=OPS, widths=WIDTHS, rows=ROWS, head_sizes=HEAD_SIZES,
               max_gflop: float = 4.0) -> list[Case]:
    """The grid: every op x width x rows (x head size for attention), the cases above
    max_gflop left out (the largest linear and attention shapes)."""
    cases = []
    for op in ops:
        if op not in OPS:
            raise ValueError(f"unknown op {op!r}; choose from {', '.join(OPS)}")
        for C in widths:
            for N in rows:
                for hs in (head_sizes if op == "attention" else (0,)):
                    if op == "attention" and (C % hs or C < hs):
                        continue
                    case = Case(op, N, C, hs)
                    if case.gflop() <= max_gflop:
                        cases.append(case)
    return cases


def passes(case: Case) -> tuple[str, ...]:
    return ("train", "infer") if case.rows <= INFER_ROWS_MAX else ("train",)


# ---- the ops on one case, in each library ----------------------------------------------------

def case_arrays(case: Case, seed: int = 0) -> tuple[list, dict]:
    """The float32 inputs of a case (NumPy arrays; the differentiable ones first, in call
    order) and its integer data (ids, targets). The same in both workers."""
    import numpy as np
    rng = np.random.default_rng(seed)
    N, C = case.rows, case.width
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    if case.op == "linear":
        return [f32(N, C), f32(C, 4 * C) * np.float32(0.02), f32(4 * C)], {}
    if case.op == "linear_tied":  # weight stored (out, in) and read transposed: W_e^T
        return [f32(N, C), f32(4 * C, C) * np.float32(0.02)], {}
    if case.op == "layer_norm":
        return [f32(N, C), 1 + f32(C) * np.float32(0.1), f32(C)], {}
    if case.op == "gelu":
        return [f32(N, 4 * C)], {}
    if case.op == "attention":
        B, nh, T, hs = case.attention_shape()
        return [f32(B, nh, T, hs), f32(B, nh, T, hs), f32(B, nh, T, hs)], {}
    if case.op == "cross_entropy":
        return [f32(N, C)], {"targets": rng.integers(0, C, N)}
    if case.op == "embedding":
        return [f32(EMBED_VOCAB, C)], {"ids": rng.integers(0, EMBED_VOCAB, N)}
    raise ValueError(f"unknown op {case.op!r}")


def minigpt_fn(case: Case, data: dict):
    """fn(*tensors) -> Tensor: the case's op through minigpt's public functions."""
    import minigpt.functional as F
    return {
        "linear": lambda x, w, b: F.linear(x, w, b),
        "linear_tied": lambda x, e: F.linear(x, e.T),  # the tied output layer: h @ W_e^T
        "layer_norm": lambda x, w, b: F.layer_norm(x, w, b),
        "gelu": lambda x: F.gelu(x),
        "attention": lambda q, k, v: F.attention(q, k, v, causal=True),
        "cross_entropy": lambda z: F.cross_entropy(z, data.get("targets")),
        "embedding": lambda w: F.embedding(data.get("ids"), w),
    }[case.op]


def torch_fn(case: Case, data: dict):
    """The same op in PyTorch's eager ops."""
    import torch
    import torch.nn.functional as TF
    mask = None
    if case.op == "attention":
        T = case.attention_shape()[2]
        mask = torch.ones(T, T, dtype=torch.bool).tril()

    def attention(q, k, v):  # explicit masked softmax, as bench_cpu.py's torch_eager
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
        return torch.softmax(att.masked_fill(~mask, float("-inf")), dim=-1) @ v

    targets = torch.from_numpy(data["targets"]) if "targets" in data else None
    ids = torch.from_numpy(data["ids"]) if "ids" in data else None
    return {
        "linear": lambda x, w, b: torch.addmm(b, x, w),
        "linear_tied": lambda x, e: x @ e.T,
        "layer_norm": lambda x, w, b: TF.layer_norm(x, (x.shape[-1],), w, b, 1e-5),
        "gelu": lambda x: TF.gelu(x, approximate="tanh"),
        "attention": attention,
        "cross_entropy": lambda z: TF.cross_entropy(z, targets),
        "embedding": lambda w: TF.embedding(ids, w),
    }[case.op]


def minigpt_runners(case: Case, seed: int = 0) -> dict:
    """{(impl, pass): call} for impl tuned and reference: one call = the op once (train:
    forward + backward with a fixed upstream gradient; infer: the forward under no_grad)."""
    import numpy as np
    import minigpt
    from minigpt import Tensor
    arrays, data = case_arrays(case, seed)
    fn = minigpt_fn(case, data)
    tensors = [Tensor(a, requires_grad=True) for a in arrays]
    with minigpt.no_grad():
        shape = fn(*tensors).shape
    upstream = np.random.default_rng(seed + 1).standard_normal(shape).astype(np.float32)

    def train(mode):
        def call():
            for t in tensors:
                t.grad = None
            with minigpt.use(mode):
                fn(*tensors).backward(upstream)
        return call

    def infer(mode):
        def call():
            with minigpt.use(mode), minigpt.no_grad():
                fn(*tensors)
        return call

    return {(impl, p): (train if p == "train" else infer)(mode)
            for impl, mode in (("tuned", "fast"), ("reference", "reference"))
            for p in ("train", "infer")}


def torch_runners(case: Case, seed: int = 0) -> dict:
    import numpy as np
    import torch
    arrays, data = case_arrays(case, seed)
    fn = torch_fn(case, data)
    tensors = [torch.from_numpy(a).requires_grad_(True) for a in arrays]
    with torch.no_grad():
        shape = tuple(fn(*tensors).shape)
    upstream = torch.from_numpy(np.random.default_rng(seed + 1).standard_normal(shape)
                                .astype(np.float32))

    def train():
        for t in tensors:
            t.grad = None
        fn(*tensors).backward(upstream)

    def infer():
        with torch.no_grad():
            fn(*tensors)

    return {("torch", "train"): train, ("torch", "infer"): infer}


def time_calls(call, k: int) -> float:
    """Seconds per call, the mean of k calls in a row."""
    t0 = time.perf_counter()
    for _ in range(k):
        call()
    return (time.perf_counter() - t0) / k


# ---- the worker: one library, one JSON line per command ----------------------------------------

def blas_info() -> list:
    from threadpoolctl import threadpool_info
    return [{k: i.get(k) for k in ("internal_api", "version", "num_threads", "architecture",
                                   "threading_layer")} for i in threadpool_info()]


def worker(library: str) -> None:
    """Commands (one JSON object a line): {"setup": case} -> {}; {"time": [impl, pass], "k": k}
    -> {"s": seconds per call}; {"info": 1} -> libraries and threads; {"quit": 1}."""
    if library == "numpy":
        import minigpt  # noqa: F401  (loads OpenBLAS and minigpt's pool before any timing)
        build = minigpt_runners
    else:
        import torch  # noqa: F401
        build = torch_runners
    reply = lambda obj: print(json.dumps(obj), flush=True)  # noqa: E731
    runners = {}
    reply({"ready": True})
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            if "setup" in cmd:
                runners = build(Case(**cmd["setup"]))
                reply({})
            elif "time" in cmd:
                reply({"s": time_calls(runners[tuple(cmd["time"])], cmd["k"])})
            elif "info" in cmd:
                info = {"blas": blas_info()}
                if library == "torch":
                    import torch
                    info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                                mkl=torch.backends.mkl.is_available())
                else:
                    from minigpt.fast import runtime
                    info["minigpt_threads"] = runtime.num_threads()
                reply(info)
            elif "quit" in cmd:
                break
        except Exception as e:  # noqa: BLE001  (reported to the driver, which says which case)
            reply({"error": f"{type(e).__name__}: {e}"})


class Worker:
    def __init__(self, library: str, threads: int | None):
        env = dict(os.environ)
        if threads:
            for var in THREAD_VARS:
                env[var] = str(threads)
        self.library = library
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", library],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env)
        self.ask(None)

    def ask(self, cmd):
        if cmd is not None:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.library} worker exited (status {self.proc.wait()})")
        out = json.loads(line)
        if "error" in out:
            raise RuntimeError(f"{self.library} worker: {out['error']} (command {cmd})")
        return out

    def close(self):
        try:
            self.proc.stdin.write(json.dumps({"quit": 1}) + "\n")
            self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        self.proc.wait(timeout=60)


# ---- the driver -------------------------------------------------------------------------------

def measure(case: Case, p: str, workers: dict, rounds: int, target_s: float) -> dict:
    """{impl: [seconds per call, one per round]} for one case and pass, round-robin."""
    impls = [i for i in IMPLS if workers.get(i) is not None]
    k = {}
    for impl in impls:  # warm-up twice; the second decides the repeat count
        w = workers[impl]
        w.ask({"time": [impl, p], "k": 1})
        t = w.ask({"time": [impl, p], "k": 1})["s"]
        k[impl] = max(1, min(10_000, round(target_s / max(t, 1e-7))))
    times = {impl: [] for impl in impls}
    for r in range(rounds):
        for impl in (impls if r % 2 == 0 else impls[::-1]):
            times[impl].append(workers[impl].ask({"time": [impl, p], "k": k[impl]})["s"])
    return times


def summarise(case: Case, p: str, times: dict, slower: float) -> dict:
    med = {impl: statistics.median(t) for impl, t in times.items()}
    row = {"case": asdict(case), "pass": p, "label": case.label(), "median_s": med,
           "times": times, "flags": []}
    if "reference" in med:
        row["tuned_vs_ref"] = med["reference"] / med["tuned"]
        if row["tuned_vs_ref"] < 1 / slower:
            row["flags"].append("SLOWER-THAN-REF")
    if "torch" in med:
        row["tuned_vs_torch"] = med["torch"] / med["tuned"]
        if row["tuned_vs_torch"] < 0.5:
            row["flags"].append("TORCH-2X")
    return row


def flag_dips(rows: list) -> None:
    """DIP: tuned/torch and tuned/ref both below half of a neighbour's, along rows or widths."""
    index = {(r["case"]["op"], r["pass"], r["case"]["rows"], r["case"]["width"],
              r["case"]["head_size"]): r for r in rows
             if "tuned_vs_torch" in r and "tuned_vs_ref" in r}
    for axis in ("rows", "width"):
        lines = {}
        for key, r in index.items():
            c = r["case"]
            other = (c["width"] if axis == "rows" else c["rows"])
            lines.setdefault((c["op"], r["pass"], c["head_size"], other), []).append(r)
        for line in lines.values():
            line.sort(key=lambda r: r["case"][axis])
            for i, r in enumerate(line):
                for j in (i - 1, i + 1):
                    if not 0 <= j < len(line) or "DIP" in r["flags"]:
                        continue
                    n = line[j]
                    if (r["tuned_vs_torch"] < 0.5 * n["tuned_vs_torch"]
                            and r["tuned_vs_ref"] < 0.5 * n["tuned_vs_ref"]):
                        r["flags"].append("DIP")


def header(info: dict, workers: dict, load0: float, threads) -> list[str]:
    lines = [f"## Op sweep: tuned vs reference vs PyTorch, {info['date']}",
             f"machine: {info['cpu']}, {info['cores']} cores; numpy {info['numpy']}, torch "
             f"{info['torch']}, python {info['python']}; threads: "
             + (f"{threads} per library" if threads else "each library's default")]
    for name, w in (("minigpt (NumPy)", workers.get("tuned")), ("PyTorch", workers.get("torch"))):
        if w is None:
            continue
        got = w.ask({"info": 1})
        blas = "; ".join(f"{b['internal_api']} {b['version'] or ''} {b['num_threads']} threads"
                         + (f" {b['architecture']}" if b.get("architecture") else "")
                         for b in got["blas"])
        extra = (f", minigpt pool {got['minigpt_threads']} threads" if "minigpt_threads" in got
                 else f", torch {got.get('torch')} intra-op threads {got.get('torch_threads')}, "
                      f"MKL {got.get('mkl')}")
        lines.append(f"{name} worker: {blas}{extra}")
    lines.append(f"load average {load0:.2f} at the start"
                 + (f": **machine busy, not a result** (above {IDLE_LOAD})" if load0 > IDLE_LOAD
                    else f" (idle: <= {IDLE_LOAD})"))
    return lines


def table(rows: list) -> list[str]:
    out = ["| op | shape | pass | tuned ms | reference ms | torch ms | tuned/ref | tuned/torch | flags |",
           "|---|---|---|---:|---:|---:|---:|---:|---|"]
    ms = lambda r, i: f"{1e3 * r['median_s'][i]:.3f}" if i in r["median_s"] else "-"  # noqa: E731
    ratio = lambda r, k: f"{r[k]:.2f}x" if k in r else "-"  # noqa: E731
    for r in rows:
        out.append(f"| {r['case']['op']} | {r['label']} | {r['pass']} | {ms(r, 'tuned')} | "
                   f"{ms(r, 'reference')} | {ms(r, 'torch')} | {ratio(r, 'tuned_vs_ref')} | "
                   f"{ratio(r, 'tuned_vs_torch')} | {' '.join(r['flags'])} |")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ints = lambda s: tuple(int(v) for v in s.split(",") if v)  # noqa: E731
    ap.add_argument("--ops", default=",".join(OPS))
    ap.add_argument("--widths", type=ints, default=None, help=f"default {WIDTHS}")
    ap.add_argument("--rows", type=ints, default=None, help=f"default {ROWS}")
    ap.add_argument("--head-sizes", type=ints, default=None, help=f"default {HEAD_SIZES}")
    ap.add_argument("--quick", action="store_true", help=f"a small grid: {QUICK}")
    ap.add_argument("--max-gflop", type=float, default=4.0,
                    help="leave out cases above this many GFLOP per forward + backward")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per case and pass")
    ap.add_argument("--target-ms", type=float, default=3.0,
                    help="one measurement repeats the call to last about this long")
    ap.add_argument("--slower", type=float, default=1.25,
                    help="flag SLOWER-THAN-REF when the tuned op takes more than this x the "
                         "reference's time")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads per library (default: each library's own, all cores)")
    ap.add_argument("--no-torch", action="store_true", help="tuned vs reference only")
    ap.add_argument("--list", action="store_true", help="print the cases and exit")
    ap.add_argument("--json", default=None, help="also write every measurement to this file")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0
    grid = dict(QUICK) if args.quick else dict(widths=WIDTHS, rows=ROWS, head_sizes=HEAD_SIZES)
    for key in ("widths", "rows", "head_sizes"):
        if getattr(args, key) is not None:
            grid[key] = getattr(args, key)
    try:
        cases = make_cases([o for o in args.ops.split(",") if o], max_gflop=args.max_gflop, **grid)
    except ValueError as e:
        ap.error(str(e))
    if args.list:
        for c in cases:
            print(f"{c.op:14s} {c.label():40s} {', '.join(passes(c))}  ~{c.gflop():.3f} GFLOP")
        print(f"{len(cases)} cases, {sum(len(passes(c)) for c in cases)} (case, pass) pairs")
        return 0
    info = machine_info()
    load0 = loadavg()
    numpy_worker = Worker("numpy", args.threads)
    torch_worker = None if args.no_torch else Worker("torch", args.threads)
    workers = {"tuned": numpy_worker, "reference": numpy_worker, "torch": torch_worker}
    all_workers = [w for w in (numpy_worker, torch_worker) if w is not None]
    busy0 = machine_busy_seconds()
    own0 = os.times().user + os.times().system + sum(process_cpu_seconds(w.proc.pid)
                                                      for w in all_workers)
    wall0 = time.perf_counter()
    rows = []
    try:
        lines = header(info, workers, load0, args.threads)
        print("\n".join(lines), flush=True)
        for i, case in enumerate(cases):
            for w in all_workers:
                w.ask({"setup": asdict(case)})
            for p in passes(case):
                times = measure(case, p, workers, args.rounds, args.target_ms / 1e3)
                rows.append(summarise(case, p, times, args.slower))
            print(f"  [{i + 1}/{len(cases)}] {case.op} {case.label()}", file=sys.stderr, flush=True)
        own = os.times().user + os.times().system + sum(process_cpu_seconds(w.proc.pid)
                                                         for w in all_workers)
        others = ((machine_busy_seconds() - busy0) - (own - own0)) / (time.perf_counter() - wall0)
    finally:
        for w in all_workers:
            w.close()
    flag_dips(rows)
    load1 = loadavg()
    busy = load0 > IDLE_LOAD or others > OTHERS_BUSY
    summary = (f"load average {load0:.2f} before, {load1:.2f} after (this sweep's processes "
               f"included); other processes used {max(others, 0.0):.2f} cores while it ran"
               + (" : **BUSY, not a result**" if busy else ""))
    print()
    print("\n".join(table(rows)))
    print()
    print(summary)
    flagged = [r for r in rows if r["flags"]]
    print(f"{len(rows)} (case, pass) pairs; {len(flagged)} flagged: "
          + (", ".join(sorted({f for r in flagged for f in r['flags']})) or "none"))
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "header": lines, "summary": summary,
                                               "others_cores": others, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
