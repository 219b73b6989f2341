"""Data-parallel numbers for README "Beyond one machine" (issue 22).

    python benchmarks/bench_allreduce.py                      # bytes per step, cost model
    .venv/bin/mpiexec -n 2 .venv/bin/python benchmarks/bench_allreduce.py --time gpt1

Without mpiexec: the bytes one step all-reduces for each preset (every parameter's float32
gradient; the formula is checked against GPT(...).num_parameters() for the small presets), and
the ring all-reduce cost model, 2 (N-1)/N x bytes / bandwidth, for 8 GPUs on NVLink and on
100 Gb/s Ethernet, and what it predicts for GPT-1's recipe. With mpiexec and --time PRESET:
the time of minigpt.distributed.allreduce_gradients over that preset's gradients (the same
bucketed buffers training uses), median of --repeat runs, printed by rank 0 with the load
average (this machine is shared: label the numbers with it).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from minigpt.model import PRESETS, GPT, GPTConfig

NVLINK_GBPS = 300.0      # GB/s per direction, A100 NVLink 3 (600 GB/s both ways)
ETHERNET_GBPS = 12.5     # 100 Gb/s Ethernet = 12.5 GB/s
GPT1_BATCH_TOKENS = 64 * 512
BOOKSCORPUS_WORDS = 800e6
TOKENS_PER_WORD = 1.3    # an assumption for GPT-1's 40k BPE on books (not measured here)
EPOCHS = 100


def shapes(cfg: GPTConfig) -> list[tuple]:
    """The parameter shapes of GPT(cfg) (tied output layer: no separate head)."""
    C, L = cfg.n_embd, cfg.n_layer
    block = [(C, 3 * C), (3 * C,), (C, C), (C,), (C,), (C,), (C, 4 * C), (4 * C,), (4 * C, C),
             (C,), (C,), (C,)]
    return [(cfg.vocab_size, C), (cfg.n_ctx, C)] + block * L


def n_params(cfg: GPTConfig) -> int:
    return int(sum(np.prod(s) for s in shapes(cfg)))


def ring_seconds(nbytes: float, n: int, gbps: float) -> float:
    return 2 * (n - 1) / n * nbytes / (gbps * 1e9)


def report():
    for name in ("tiny", "small"):  # the formula is the model's count
        cfg = GPTConfig.preset(name)
        assert n_params(cfg) == GPT(cfg).num_parameters(), name
    print("preset  parameters  bytes all-reduced per step (float32)")
    for name in sorted(PRESETS):
        cfg = GPTConfig.preset(name)
        print(f"{name:6}  {n_params(cfg):>11,}  {4 * n_params(cfg) / 2**20:9.1f} MiB")
    nbytes = 4 * n_params(GPTConfig.preset("gpt1"))
    steps = EPOCHS * BOOKSCORPUS_WORDS * TOKENS_PER_WORD / GPT1_BATCH_TOKENS
    print(f"\nring all-reduce of GPT-1's gradients ({nbytes / 1e6:.0f} MB), 8 GPUs: each sends "
          f"and receives 2*7/8 x bytes = {1.75 * nbytes / 1e6:.0f} MB per step")
    for what, gbps in (("NVLink (300 GB/s per direction)", NVLINK_GBPS),
                       ("100 Gb/s Ethernet (12.5 GB/s)", ETHERNET_GBPS)):
        t = ring_seconds(nbytes, 8, gbps)
        print(f"  {what:34} {t * 1e3:7.1f} ms per step; x {steps:,.0f} steps (100 epochs of "
              f"{BOOKSCORPUS_WORDS / 1e6:.0f}M words x {TOKENS_PER_WORD} tokens/word / "
              f"{GPT1_BATCH_TOKENS} tokens per step) = {t * steps / 3600:,.1f} hours")


class Grad:
    def __init__(self, shape):
        self.data = np.zeros(shape, np.float32)
        self.grad = np.ones(shape, np.float32)


def time_allreduce(preset: str, repeat: int):
    from minigpt.distributed import allreduce_gradients, get_world
    world = get_world()
    params = [Grad(s) for s in shapes(GPTConfig.preset(preset))]
    times = []
    for _ in range(repeat + 1):
        world.barrier()
        t0 = time.perf_counter()
        allreduce_gradients(params, world, 0.0)
        times.append(time.perf_counter() - t0)
    if world.is_main:
        nbytes = sum(p.data.nbytes for p in params)
        med = float(np.median(times[1:]))  # the first one warms up
        print(f"{preset}: allreduce_gradients of {nbytes / 2**20:.1f} MiB over {world.size} "
              f"ranks: median {med * 1e3:.1f} ms of {repeat} ({nbytes / med / 1e9:.2f} GB/s of "
              f"buffer); load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time", metavar="PRESET", help="time the all-reduce (under mpiexec)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if args.time:
        time_allreduce(args.time, args.repeat)
    else:
        report()
