"""`minigpt prepare` throughput and memory, and `pretrain`'s memory on prepared folders.

    python benchmarks/make_corpus.py --mb 1000 --out /tmp/c1g
    python benchmarks/bench_prepare.py prepare --data /tmp/c1g --work /tmp/bp   # char, bpe x 1, 2 workers
    python benchmarks/bench_prepare.py pretrain --folders /tmp/bp/p10m /tmp/bp/p1g --steps 200

Each measured command runs in its own process; a sampler reads /proc every 50 ms and keeps
the peak of the process tree's resident memory (the sum over the command and its workers:
what the machine must hold) and the peak of its largest process, split into anonymous memory
(the process's own arrays and objects) and file-backed pages (memory-mapped shards: the kernel
can drop them at any time). Throughput is MB of input text per second of wall time, and tokens
per second, the whole command included (start-up, checking pass, tokenizer, encoding).
Only a run on an otherwise idle machine is a throughput result: the load average before each
run is printed beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tree(root: int) -> list[int]:
    """root and its descendants (from /proc/*/stat parent ids)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _memory(pid: int) -> dict:
    """VmRSS, RssAnon, RssFile of one process in bytes (zeros once it is gone)."""
    m = {"rss": 0, "anon": 0, "file": 0}
    keys = {"VmRSS:": "rss", "RssAnon:": "anon", "RssFile:": "file"}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                parts = line.split()
                if parts and parts[0] in keys:
                    m[keys[parts[0]]] = int(parts[1]) * 1024
    except OSError:
        pass
    return m


def run_measured(cmd: list[str], env=None) -> dict:
    """Run `cmd`; wall time and peak memory of its process tree (see the module docstring)."""
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    peak = {"tree_rss": 0, "tree_anon": 0, "max_rss": 0, "max_anon": 0, "max_file": 0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            mems = [_memory(p) for p in _tree(proc.pid)]
            peak["tree_rss"] = max(peak["tree_rss"], sum(m["rss"] for m in mems))
            peak["tree_anon"] = max(peak["tree_anon"], sum(m["anon"] for m in mems))
            for m in mems:
                peak["max_rss"] = max(peak["max_rss"], m["rss"])
                peak["max_anon"] = max(peak["max_anon"], m["anon"])
                peak["max_file"] = max(peak["max_file"], m["file"])
            done.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    output = proc.communicate()[0]
    done.set()
    thread.join()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-3000:]}")
    return {"wall_s": wall, "load_before": load, "output": output, **peak}


def _size(paths) -> int:
    total = 0
    for p in map(Path, paths):
        files = [p] if p.is_file() else [f for f in p.rglob("*.txt") if f.is_file()]
        total += sum(f.stat().st_size for f in files)
    return total


def cmd_prepare(args) -> None:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    nbytes = _size(args.data)
    print(f"input: {nbytes / 1e6:,.1f} MB ({', '.join(args.data)}); cores: {os.cpu_count()}")
    print("| tokenizer | workers | wall s | MB/s | tokens/s | peak RSS, all processes (anon) "
          "| peak RSS, largest process | load before |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for kind in args.tokenizers:
        for workers in args.workers:
            out = work / f"{kind}-w{workers}"
            shutil.rmtree(out, ignore_errors=True)
            cmd = [sys.executable, "-m", "minigpt", "prepare", "--data", *args.data, "--out",
                   str(out), "--tokenizer", kind, "--workers", str(workers), "--no-progress"]
            if kind == "bpe":
                cmd += ["--vocab-size", str(args.vocab_size)]
            r = run_measured(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)})
            index = json.loads((out / "index.json").read_text())
            tokens = sum(s["tokens"] for s in index["splits"].values())
            print(f"| {kind} | {workers} | {r['wall_s']:.1f} | {nbytes / 1e6 / r['wall_s']:.1f} "
                  f"| {tokens / r['wall_s']:,.0f} | {r['tree_rss'] / 2**20:,.0f} MiB "
                  f"({r['tree_anon'] / 2**20:,.0f}) | {r['max_rss'] / 2**20:,.0f} MiB "
                  f"| {r['load_before']:.2f} |", flush=True)
            if not args.keep:
                shutil.rmtree(out, ignore_errors=True)


def cmd_pretrain(args) -> None:
    print(f"pretrain --preset {args.preset} --steps {args.steps} --batch-size {args.batch_size}"
          f" --block-size {args.block_size}, one process each")
    print("| folder | train tokens | peak RSS | of which anonymous | file-backed (mapped "
          "shards, code) | wall s | load before |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for folder in args.folders:
        index = json.loads((Path(folder) / "index.json").read_text())
        run = Path(args.work) / f"run-{Path(folder).name}"
        shutil.rmtree(run, ignore_errors=True)
        cmd = [sys.executable, "-m", "minigpt", "pretrain", "--data", folder, "--preset",
               args.preset, "--steps", str(args.steps), "--batch-size", str(args.batch_size),
               "--block-size", str(args.block_size), "--eval-interval", str(args.steps),
               "--out", str(run), "--no-progress"]
        r = run_measured(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)})
        print(f"| {folder} | {index['splits']['train']['tokens']:,} | "
              f"{r['max_rss'] / 2**20:,.0f} MiB | {r['max_anon'] / 2**20:,.0f} MiB | "
              f"{r['max_file'] / 2**20:,.0f} MiB | {r['wall_s']:.1f} | "
              f"{r['load_before']:.2f} |", flush=True)
        shutil.rmtree(run, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    a = sub.add_parser("prepare", help="throughput and peak memory of minigpt prepare")
    a.add_argument("--data", nargs="+", required=True)
    a.add_argument("--work", required=True, help="scratch folder for the prepared output")
    a.add_argument("--tokenizers", nargs="+", default=["char", "bpe"])
    a.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    a.add_argument("--vocab-size", type=int, default=1000)
    a.add_argument("--keep", action="store_true", help="keep the prepared folders")
    a.set_defaults(func=cmd_prepare)
    b = sub.add_parser("pretrain", help="peak memory of minigpt pretrain on prepared folders")
    b.add_argument("--folders", nargs="+", required=True)
    b.add_argument("--work", default="/tmp/bench_prepare_runs")
    b.add_argument("--preset", default="tiny")
    b.add_argument("--steps", type=int, default=200)
    b.add_argument("--batch-size", type=int, default=32)
    b.add_argument("--block-size", type=int, default=64)
    b.set_defaults(func=cmd_pretrain)
    args = p.parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
