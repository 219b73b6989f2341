"""The CPU benchmark's machinery on a micro config: a correctness smoke test, no timing asserted.

Runs benchmarks/bench_cpu.py end to end (one process per implementation, round-robin steps,
loss guard, sampling) for 1 warm-up + 2 timed steps and checks that minigpt and both PyTorch
implementations computed the same losses and the same greedy samples.
"""
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_cpu  # noqa: E402


def test_micro_run_losses_agree(tmp_path):
    out = tmp_path / "bench.json"
    status = bench_cpu.main(["--configs", "micro", "--rounds", "2", "--warmup", "1",
                             "--sample-rounds", "1", "--no-extras", "--quiet", "--threads", "1",
                             "--json", str(out)])
    assert status == 0
    res = json.loads(out.read_text())
    assert res["problems"] == []
    impls = res["results"][0]["impls"]
    assert set(impls) == {"minigpt", "torch_eager", "torch_best"}
    for e in impls.values():
        assert len(e["times"]) == 2
        assert abs(e["last_loss"] - impls["minigpt"]["last_loss"]) < 5e-5
        assert abs(e["eval_loss"] - impls["minigpt"]["eval_loss"]) < 5e-5
        assert e["sample_ids_equal_minigpt"]
        assert e["peak_rss_mb"] > 0


def test_loss_guard_reports_disagreement():
    fake = {"config": "micro", "impls": {"minigpt": {"last_loss": 1.0, "eval_loss": 1.0},
                                         "torch_eager": {"last_loss": 1.001, "eval_loss": 1.0}}}
    problems = bench_cpu.check_losses(fake, 5e-5)
    assert len(problems) == 1 and "torch_eager last_loss" in problems[0]
