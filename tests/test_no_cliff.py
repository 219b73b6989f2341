"""No cliffs: on a few small shapes, no tuned op (minigpt/fast/) is much slower than its reference.

A speed rule that reads the wrong dimension hides until someone uses the shape it gets wrong:
issue 26's linear decided "one BLAS call" by the rows of dW = x^T g (n_embd, not the tokens),
and every weight gradient of a model narrower than 64 took a path 20x slower. This test times
the shapes where such rules bite (narrow layers over many tokens, one token, one head, a
vocabulary under 64) with benchmarks/sweep_ops.py's cases, and fails when the tuned op takes
more than FACTOR times the faster of two baselines: the reference op as it runs, and the
reference op with BLAS on one thread (what a plain single-threaded NumPy program would get, so
a tuned op cannot hide behind a reference that hits the same slow library path).

Noise cannot fail it: the three run interleaved, each measurement repeats the call for a few
ms, the best of ROUNDS is compared, the factor is generous (3x; the tuned ops are 1-2.5x
faster than the reference on these shapes when they work), and a case over the factor is
measured again with more rounds before it fails. A real cliff is 5-20x and survives both.
The last test checks the detector itself: a planted slow path must be caught.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import sweep_ops  # noqa: E402
from sweep_ops import Case  # noqa: E402

FACTOR = 3.0
ROUNDS = 7
TARGET_S = 0.002  # one measurement repeats the call for about this long

CASES = [
    Case("linear", 2048, 16),        # narrow layer, many tokens: dW has 16 rows (the cliff)
    Case("linear", 2048, 48),        # the fine-tuning tutorial's width
    Case("linear_tied", 2048, 16),   # the tied layout's dW: rows = a vocabulary under 64
    Case("linear", 1, 48),           # one sampled token
    Case("layer_norm", 2048, 16),
    Case("layer_norm", 1, 48),
    Case("gelu", 2048, 16),
    Case("attention", 2048, 16, 16),  # one head, batch 8 x context 256
    Case("attention", 1, 48, 16),     # one token, three heads
    Case("cross_entropy", 2048, 16),  # a vocabulary of 16
    Case("cross_entropy", 1, 48),
    Case("embedding", 2048, 48),
    Case("embedding", 1, 48),
]


def baselines(case: Case) -> dict:
    """{(impl, pass): call} with impl tuned, reference and reference_1thread."""
    from minigpt.fast.runtime import blas_single_thread
    runners = sweep_ops.minigpt_runners(case)

    def one_thread(call):
        def run():
            with blas_single_thread():
                call()
        return run

    for p in ("train", "infer"):
        runners[("reference_1thread", p)] = one_thread(runners[("reference", p)])
    return runners


def best_times(runners: dict, p: str, rounds: int) -> dict:
    """Best seconds per call of each implementation, round-robin, order reversed each round."""
    impls = ["tuned", "reference", "reference_1thread"]
    k = {}
    for impl in impls:
        call = runners[(impl, p)]
        call()  # warm-up
        t = sweep_ops.time_calls(call, 1)
        k[impl] = max(1, min(2000, round(TARGET_S / max(t, 1e-7))))
    best = {impl: float("inf") for impl in impls}
    for r in range(rounds):
        for impl in (impls if r % 2 == 0 else impls[::-1]):
            best[impl] = min(best[impl], sweep_ops.time_calls(runners[(impl, p)], k[impl]))
    return best


def slowdown(best: dict) -> float:
    """How many times the tuned op is slower than the faster baseline."""
    return best["tuned"] / min(best["reference"], best["reference_1thread"])


def check(case: Case, p: str, runners=None) -> tuple[float, dict]:
    runners = runners or baselines(case)
    best = best_times(runners, p, ROUNDS)
    if slowdown(best) > FACTOR:  # a second look, longer, before calling it a cliff
        best = best_times(runners, p, 3 * ROUNDS)
    return slowdown(best), best


@pytest.mark.parametrize("case, p", [(c, p) for c in CASES for p in sweep_ops.passes(c)],
                         ids=lambda v: v if isinstance(v, str) else f"{v.op}-{v.label()}")
def test_tuned_op_is_not_much_slower_than_its_reference(case, p):
    ratio, best = check(case, p)
    assert ratio <= FACTOR, (
        f"{case.op} {case.label()} ({p}): the tuned op takes {ratio:.1f}x the time of the "
        f"faster reference (tuned {1e3 * best['tuned']:.3f} ms, reference "
        f"{1e3 * best['reference']:.3f} ms, reference with one BLAS thread "
        f"{1e3 * best['reference_1thread']:.3f} ms): a cliff; see benchmarks/sweep_ops.py")


def test_the_detector_catches_a_planted_cliff(monkeypatch):
    """A tuned linear whose dW runs one token at a time (a slow path of the kind a wrong
    shape rule selects) must fail the check."""
    import numpy as np
    from minigpt.fast import linear

    real = linear.matmul_rows

    def slow_dW(a, b, bias=None, tokens=None):
        if tokens is None:
            return real(a, b, bias)
        out = np.zeros((a.shape[0], b.shape[1]), dtype=a.dtype)
        for n in range(a.shape[1]):  # one outer product per token
            out += np.outer(a[:, n], b[n])
        return out

    monkeypatch.setattr(linear, "matmul_rows", slow_dW)
    ratio, _ = check(Case("linear", 2048, 16), "train")
    assert ratio > FACTOR


# ---- the sweep's machinery (benchmarks/sweep_ops.py), no timing asserted -----------------------

def test_sweep_runs_every_op_in_both_workers(tmp_path):
    """A small grid end to end: every op, both passes where due, three implementations (torch
    when installed), a row per (case, pass) with medians and ratios, the header's BLAS line."""
    import json
    have_torch = True
    try:
        import torch  # noqa: F401
    except ImportError:
        have_torch = False
    out = tmp_path / "sweep.json"
    args = ["--widths", "16", "--rows", "1,64", "--head-sizes", "8", "--rounds", "1",
            "--target-ms", "0.1", "--json", str(out)] + ([] if have_torch else ["--no-torch"])
    assert sweep_ops.main(args) == 0
    res = json.loads(out.read_text())
    ops = {r["case"]["op"] for r in res["rows"]}
    assert ops == set(sweep_ops.OPS)
    assert {r["pass"] for r in res["rows"]} == {"train", "infer"}
    for r in res["rows"]:
        assert r["median_s"]["tuned"] > 0 and r["tuned_vs_ref"] > 0
        assert ("tuned_vs_torch" in r) == have_torch
    assert any("openblas" in line for line in res["header"])


def test_sweep_flags():
    """SLOWER-THAN-REF past --slower, TORCH-2X past 2x, DIP where both ratios halve against a
    neighbour (and not where only one does: one library's noise)."""
    def row(rows, tuned, ref, torch):
        r = sweep_ops.summarise(Case("linear", rows, 16), "train",
                                {"tuned": [tuned], "reference": [ref], "torch": [torch]}, 1.25)
        return r
    a, b, c, d = row(64, 1.0, 1.0, 1.0), row(256, 4.0, 1.0, 1.0), row(1024, 1.0, 1.0, 1.0), \
        row(2048, 1.0, 3.0, 0.4)
    assert b["flags"] == ["SLOWER-THAN-REF", "TORCH-2X"] and a["flags"] == []
    assert d["flags"] == ["TORCH-2X"]  # slower than torch, much faster than the reference
    sweep_ops.flag_dips([a, b, c, d])
    assert "DIP" in b["flags"] and "DIP" not in a["flags"] and "DIP" not in d["flags"]
