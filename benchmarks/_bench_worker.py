"""One implementation of a GPT-1 training step, run in its own process for bench_cpu.py.

    python benchmarks/_bench_worker.py IMPL '{"config": {...}, "batch": 32, ...}'

IMPL is `minigpt`, `torch_eager` (explicit masked softmax, torch.optim.AdamW's default
for-loop implementation) or `torch_best` (scaled_dot_product_attention + fused AdamW); or
`sgemm`, whose "step" is one 2048^3 matmul (the BLAS rate of the moment, for MFU).
Two environment variables, set by the driver, choose which minigpt runs: MINIGPT_BENCH_ROOT
(a checkout of another commit, imported instead of this one: old and new side by side) and
MINIGPT_OPS (minigpt's op tier: `reference` for the readable ops, `fast`/`auto` tuned).
Every implementation starts from minigpt's initial weights (GPT(config, seed)) and trains on
the same batches, so their losses must agree.

The driver talks to it one line at a time on stdin/stdout (JSON replies):
    step            -> {"dt": seconds of one forward+backward+Adam step, "cpu": CPU seconds of
                        this process (all threads) in that step, "loss": float}
    reset_peak      -> {}   (restart the peak-RSS count: after setup, before the first step)
    eval            -> {"loss": loss on a fixed held-out batch after the updates so far}
    sample N        -> {"dt": seconds to generate N tokens greedily with a KV cache, "ids": [...]}
    stats           -> {"peak_rss_mb": ..., "threads": ...}
    quit
Each process owns its BLAS thread pool: OpenBLAS (NumPy) and MKL/oneDNN (PyTorch) slow each
other down when they share one process.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(os.environ.get("MINIGPT_BENCH_ROOT") or Path(__file__).resolve().parents[1])
sys.path.insert(0, str(ROOT))

from minigpt import GPT, GPTConfig  # noqa: E402


def batch(cfg: GPTConfig, B: int, step: int, seed: int):
    """Token ids (B, T) and next-token targets (B, T) for step `step`: the same in every worker."""
    data = np.random.default_rng([seed, step]).integers(0, cfg.vocab_size, (B, cfg.n_ctx + 1))
    return data[:, :-1], data[:, 1:]


def peak_rss_mb() -> float:
    """VmHWM of this process (peak resident set since start or since reset_peak), in MiB."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> None:
    """Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


# ---- minigpt ----------------------------------------------------------------------------------

class MinigptRunner:
    def __init__(self, cfg: GPTConfig, opts: dict):
        from minigpt.optim import Adam
        self.model = GPT(cfg, seed=opts["seed"])
        self.opt = Adam(self.model.parameters(), lr=opts["lr"], weight_decay=opts["weight_decay"],
                        max_grad_norm=1.0)

    def step(self, x, y) -> float:
        self.opt.zero_grad()
        loss = self.model.loss(x, y)
        loss.backward()
        self.opt.step()
        return float(loss.item())

    def eval_loss(self, x, y) -> float:
        from minigpt import no_grad
        with no_grad():
            return float(self.model.loss(x, y).item())

    def sample(self, prompt, n):
        from minigpt.sample import generate
        return generate(self.model, prompt, n, temperature=0)

    def threads(self):
        try:
            from threadpoolctl import threadpool_info
            return [(i["internal_api"], i["num_threads"], i.get("architecture")) for i in threadpool_info()]
        except ImportError:
            return "threadpoolctl not installed"


# ---- PyTorch ----------------------------------------------------------------------------------

class TorchRunner:
    """GPT-1 written directly in PyTorch: post-LN blocks, GELU (tanh), tied output layer,
    learned positions, linear weights stored (in, out) like minigpt's and HuggingFace's."""

    def __init__(self, cfg: GPTConfig, opts: dict, best: bool):
        import torch
        self.torch, self.cfg, self.best = torch, cfg, best
        torch.manual_seed(0)
        init = GPT(cfg, seed=opts["seed"]).state_dict()  # minigpt's initial weights
        self.p = {name: torch.nn.Parameter(torch.from_numpy(np.array(a, copy=True)))
                  for name, a in init.items()}
        del init
        decay = [p for p in self.p.values() if p.ndim >= 2]
        no_decay = [p for p in self.p.values() if p.ndim < 2]
        self.lr, self.wd, self.eps = opts["lr"], opts["weight_decay"], 1e-8
        self.betas = (0.9, 0.999)
        groups = [{"params": decay, "decays": True}, {"params": no_decay, "decays": False,
                                                              "weight_decay": 0.0}]
        kind = {"fused": True} if best else {"foreach": False}
        self.opt = torch.optim.AdamW(groups, lr=self.lr, betas=self.betas, eps=self.eps, **kind)
        self.t = 0
        self.mask = torch.ones(cfg.n_ctx, cfg.n_ctx, dtype=torch.bool).tril()

    def forward(self, idx, cache=None):
        torch, F = self.torch, self.torch.nn.functional
        cfg, p = self.cfg, self.p
        B, T = idx.shape
        C, nh = cfg.n_embd, cfg.n_head
        hs = C // nh
        past = 0 if not cache else cache[0][0].shape[2]
        h = F.embedding(idx, p["tokens_embed.weight"]) + p["positions_embed.weight"][past:past + T]
        for i in range(cfg.n_layer):
            w = lambda n: p[f"h.{i}.{n}"]  # noqa: E731
            qkv = torch.addmm(w("attn.c_attn.bias"), h.reshape(B * T, C), w("attn.c_attn.weight"))
            q, k, v = qkv.view(B, T, 3, nh, hs).permute(2, 0, 3, 1, 4)  # each (B, nh, T, hs)
            if cache is not None:
                if len(cache) > i:
                    k = torch.cat([cache[i][0], k], 2)
                    v = torch.cat([cache[i][1], v], 2)
                    cache[i] = (k, v)
                else:
                    cache.append((k, v))
            Tk = k.shape[2]
            if self.best:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=(T == Tk))
            else:  # explicit masked softmax, as minigpt computes it
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
                att = att.masked_fill(~self.mask[Tk - T:Tk, :Tk], float("-inf"))
                y = torch.softmax(att, dim=-1) @ v
            y = y.transpose(1, 2).reshape(B * T, C)
            a = torch.addmm(w("attn.c_proj.bias"), y, w("attn.c_proj.weight")).view(B, T, C)
            n = F.layer_norm(h + a, (C,), w("ln_1.weight"), w("ln_1.bias"), cfg.layer_norm_epsilon)
            m = F.gelu(torch.addmm(w("mlp.c_fc.bias"), n.reshape(B * T, C), w("mlp.c_fc.weight")),
                       approximate="tanh")
            m = torch.addmm(w("mlp.c_proj.bias"), m, w("mlp.c_proj.weight")).view(B, T, C)
            h = F.layer_norm(n + m, (C,), w("ln_2.weight"), w("ln_2.bias"), cfg.layer_norm_epsilon)
        return h.reshape(B * T, C) @ p["tokens_embed.weight"].T  # (B*T, V), tied output

    def step(self, x, y) -> float:
        torch = self.torch
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        self.opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(self.forward(x), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(self.p.values()), 1.0)
        # GPT-1's Adam: p -= lr_t (m / (sqrt(v) + eps) + wd p),  lr_t = lr sqrt(bc2) / bc1.
        # AdamW computes p -= lr wd' p + (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps'), which is the
        # same update when eps' = eps / sqrt(bc2) and wd' = wd sqrt(bc2) / bc1 (set every step).
        self.t += 1
        bc1, bc2 = 1 - self.betas[0] ** self.t, 1 - self.betas[1] ** self.t
        for g in self.opt.param_groups:
            g["eps"] = self.eps / math.sqrt(bc2)
            if g["decays"]:  # GPT-1 decays matrices and embeddings only (rank >= 2)
                g["weight_decay"] = self.wd * math.sqrt(bc2) / bc1
        self.opt.step()
        return float(loss.item())

    def eval_loss(self, x, y) -> float:
        torch = self.torch
        with torch.no_grad():
            logits = self.forward(torch.from_numpy(x))
            return float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(y).reshape(-1)))

    def sample(self, prompt, n):
        torch = self.torch
        ids, cache, new = list(prompt), [], []
        with torch.inference_mode():
            logits = self.forward(torch.tensor([ids]), cache)
            for _ in range(n):
                tok = int(torch.argmax(logits[-1]))
                ids.append(tok)
                new.append(tok)
                if len(new) < n:
                    logits = self.forward(torch.tensor([[tok]]), cache)
        return new

    def threads(self):
        return {"torch_threads": self.torch.get_num_threads(), "torch": self.torch.__version__}


class SgemmRunner:
    """Not a model: each step is one 2048^3 float32 matmul with NumPy (OpenBLAS), so that every
    round also measures the rate this machine's BLAS reaches at that moment (for MFU)."""

    N = 2048

    def __init__(self):
        rng = np.random.default_rng(0)
        self.a = rng.standard_normal((self.N, self.N), dtype=np.float32)
        self.b = rng.standard_normal((self.N, self.N), dtype=np.float32)
        self.c = np.empty_like(self.a)

    def step(self, x, y) -> float:
        np.matmul(self.a, self.b, out=self.c)
        return float("nan")

    def eval_loss(self, x, y) -> float:
        return float("nan")

    def sample(self, prompt, n):
        return []

    def threads(self):
        return MinigptRunner.threads(self)


def main():
    impl, opts = sys.argv[1], json.loads(sys.argv[2])
    cfg = GPTConfig(**opts["config"], embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0)
    if impl == "minigpt":
        runner = MinigptRunner(cfg, opts)
    elif impl == "sgemm":
        runner = SgemmRunner()
    elif impl in ("torch_eager", "torch_best"):
        runner = TorchRunner(cfg, opts, best=impl == "torch_best")
    else:
        raise SystemExit(f"unknown implementation {impl!r}")
    import gc
    gc.collect()
    step = 0
    reply = lambda obj: print(json.dumps(obj), flush=True)  # noqa: E731
    reply({"ready": True})
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "step":
            x, y = batch(cfg, opts["batch"], step, opts["seed"])
            t0, c0 = time.perf_counter(), time.process_time()
            loss = runner.step(x, y)
            reply({"dt": time.perf_counter() - t0, "cpu": time.process_time() - c0, "loss": loss})
            step += 1
        elif cmd == "reset_peak":
            reset_peak_rss()
            reply({})
        elif cmd == "eval":
            x, y = batch(cfg, opts["batch"], -1 % 2**31, opts["seed"] + 1)
            reply({"loss": runner.eval_loss(x, y)})
        elif cmd == "sample":
            n = int(args[0])
            t0 = time.perf_counter()
            ids = runner.sample([1], n)
            reply({"dt": time.perf_counter() - t0, "ids": ids})
        elif cmd == "stats":
            import minigpt
            reply({"peak_rss_mb": peak_rss_mb(), "threads": runner.threads(),
                   "minigpt_from": str(Path(minigpt.__file__).parent)})
        elif cmd == "quit":
            break


if __name__ == "__main__":
    main()
