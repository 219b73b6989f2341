"""The CPU benchmark's machinery on a micro config: a correctness smoke test, no timing asserted.

Runs benchmarks/bench_cpu.py end to end (one process per implementation, round-robin steps,
loss guard, sampling) for 1 warm-up + 2 timed steps and checks that minigpt and both PyTorch
implementations computed the same losses and the same greedy samples.
"""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_cpu  # noqa: E402


def test_micro_run_losses_agree(tmp_path):
    pytest.importorskip("torch")
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


def test_busy_machine_is_flagged_not_a_result(monkeypatch, tmp_path, capsys):
    """A start above load 0.5 prints 'machine busy: not a result' and records it."""
    monkeypatch.setattr(bench_cpu, "loadavg", lambda: 3.5)
    out = tmp_path / "bench.json"
    status = bench_cpu.main(["--configs", "micro", "--impls", "minigpt", "--rounds", "1",
                             "--warmup", "0", "--sample-rounds", "0", "--no-extras", "--quiet",
                             "--threads", "1", "--json", str(out)])
    assert status == 0
    printed = capsys.readouterr().out
    assert "machine busy: not a result" in printed
    assert json.loads(out.read_text())["info"]["busy"] is True


def test_compare_runs_another_commit_side_by_side(tmp_path):
    """--compare REV times minigpt from a worktree of REV beside this checkout (same losses)."""
    import subprocess
    root = Path(bench_cpu.ROOT)
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True).returncode:
        pytest.skip("not a git checkout")
    out = tmp_path / "bench.json"
    status = bench_cpu.main(["--configs", "micro", "--impls", "minigpt", "--compare", "HEAD",
                             "--rounds", "1", "--warmup", "0", "--sample-rounds", "0",
                             "--no-extras", "--quiet", "--threads", "1", "--json", str(out)])
    assert status == 0
    impls = json.loads(out.read_text())["results"][0]["impls"]
    (other,) = [name for name in impls if name.startswith("minigpt@")]
    assert abs(impls[other]["last_loss"] - impls["minigpt"]["last_loss"]) < 5e-5
    assert "minigpt-bench-" in impls[other]["minigpt_from"]  # imported from the worktree
    assert impls["minigpt"]["minigpt_from"] == str(root / "minigpt")
    assert not bench_cpu.COMPARE_ROOTS[other].exists()  # the worktree is removed afterwards


def test_cpu_taken_by_other_processes_marks_the_config_busy(tmp_path, capsys):
    """A process spinning beside the benchmark is measured (its CPU, not the benchmark's own)
    and the config is marked BUSY: not a result."""
    import subprocess
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        out = tmp_path / "bench.json"
        status = bench_cpu.main(["--configs", "micro", "--impls", "minigpt", "--rounds", "3",
                                 "--warmup", "1", "--sample-rounds", "1", "--no-extras", "--quiet",
                                 "--threads", "1", "--json", str(out)])
    finally:
        spinner.kill()
        spinner.wait()
    assert status == 0
    res = json.loads(out.read_text())["results"][0]
    assert res["others_cores"] > bench_cpu.OTHERS_BUSY  # the spinner: about one core
    assert "BUSY (other processes" in capsys.readouterr().out


def test_own_cpu_is_not_counted_as_other_processes():
    """The benchmark's own CPU (driver and workers) is subtracted: a worker busy on its own
    process shows up in own_cpu_seconds, and machine_busy_seconds grows at least as much."""
    import time
    busy0 = bench_cpu.machine_busy_seconds()
    own0 = bench_cpu.own_cpu_seconds([])
    t0 = time.process_time()
    while time.process_time() - t0 < 0.3:  # burn 0.3 s of this process's CPU
        pass
    own = bench_cpu.own_cpu_seconds([]) - own0
    assert own >= 0.25
    assert bench_cpu.machine_busy_seconds() - busy0 >= own - 0.05  # jiffy rounding


def test_profile_counts_every_op_of_a_step_and_covers_the_step(tmp_path):
    """benchmarks/profile_cpu.py on the micro config (2 layers): each op appears as often as the
    model calls it, with the implementation dispatch ran, and the rows add up to the step."""
    import profile_cpu
    out = tmp_path / "profile.json"
    assert profile_cpu.main(["--configs", "micro", "--threads", "1", "--steps", "1",
                             "--warmup", "1", "--json", str(out)]) == 0
    res = json.loads(out.read_text())["results"][0]
    counts = {(phase, name): (impl, n) for phase, name, impl, n, *_ in res["rows"]}
    n_layer = bench_cpu.CONFIGS["micro"][0]["n_layer"]
    for phase in ("forward", "backward"):
        assert counts[(phase, "Attention")] == ("fast", n_layer)
        assert counts[(phase, "LayerNorm")] == ("fast", 2 * n_layer)
        # c_attn, c_proj, the MLP's two (one inside linear_gelu), and the tied output layer
        assert counts[(phase, "Linear")] == ("fast", 4 * n_layer + 1)
        assert counts[(phase, "CrossEntropy")] == ("fast", 1)
    wall = sum(row[4] for row in res["rows"])
    assert 0.5 * res["total"][0] <= wall <= 1.01 * res["total"][0]
