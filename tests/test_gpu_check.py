"""tools/gpu_check.py on the CPU: what can be checked of the GPU check without a GPU.

1. The time plan: at the default budget every part gets at least its floor and the parts'
   limits together stay inside the budget (so the run ends in under 5 minutes); a short budget
   drops the least important parts, not the model table.
2. Without CuPy or a GPU it says so and exits 2, running nothing.
3. --dry-run: the plan, the tables from sample rows, and the PyTorch twin of GPT-1 that the
   model table compares against is the same model as minigpt's GPT (torch_gpt vs GPT on the
   CPU, same weights).
(tools/gpu_check.py leaves this file out of the GPU tests it runs.)
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
import gpu_check  # noqa: E402  (tools/gpu_check.py)

PREFLIGHT_S = 8.0  # the H100 run's env step


def _plan(budget, used=lambda part, limit: limit):
    """Each part's time limit when the parts before it took used(part, limit) seconds."""
    gpu_check._done.clear()
    t_left, plan = budget - PREFLIGHT_S, {}
    for part in gpu_check.PARTS:
        limit = gpu_check.time_limit(part, t_left)
        plan[part] = limit
        if limit is not None:
            t_left -= used(part, limit)
    gpu_check._done.clear()
    return plan, t_left


def test_default_budget_gives_every_part_its_floor_and_stays_inside_five_minutes():
    # every part running up to its floor (what it took on a fresh H100): all of them run
    plan, _ = _plan(gpu_check.BUDGET_S, used=lambda part, limit: gpu_check.PARTS[part][0])
    for part, limit in plan.items():
        assert limit is not None and limit >= gpu_check.PARTS[part][0], part
    # every part running to its limit: the whole run still ends inside the budget
    plan, t_left = _plan(gpu_check.BUDGET_S)
    assert t_left >= 0 and gpu_check.BUDGET_S <= 290
    assert plan["model-small"] is not None and plan["model-gpt1"] is not None


def test_short_budget_keeps_the_model_table():
    plan, t_left = _plan(120.0, used=lambda part, limit: gpu_check.PARTS[part][0])
    assert plan["model-small"] is not None and plan["model-gpt1"] is not None
    assert plan["racecheck"] is None  # the least important part is what goes
    assert t_left >= 0


def test_parts_and_shares():
    assert list(gpu_check.PARTS)[:3] == ["compile", "model-small", "model-gpt1"]
    assert sum(share for _, share, _ in gpu_check.PARTS.values()) == pytest.approx(1.0)
    for floor, _, cap in gpu_check.PARTS.values():
        assert 0 < floor <= cap


def test_without_a_gpu_it_says_so_and_runs_nothing(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "CUDA_VISIBLE_DEVICES": "", "GPU_CHECK_BUDGET_S": "60"}
    res = subprocess.run([sys.executable, str(REPO / "tools" / "gpu_check.py")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "gpu_check: cannot run here:" in res.stderr and "GPU" in res.stderr
    assert "--dry-run" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env.log"]  # no part ran


def test_unknown_case_is_refused():
    res = subprocess.run([sys.executable, str(REPO / "tools" / "gpu_check.py"), "--case", "nope"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "unknown case 'nope'" in res.stderr


def test_tables_from_rows():
    rows = [{"preset": "gpt1", "B": 8, "T": 512, "dropout": 0.1, "impl": impl, "tokens_per_s": tps}
            for impl, tps in (("fused", 50000.0), ("plain", 40000.0), ("torch-eager", 25000.0),
                              ("torch-best", 100000.0))]
    rows.append({"preset": "gpt1", "B": 8, "T": 512, "dropout": 0.0, "impl": "fused",
                 "error": "no time left"})
    text = gpu_check.model_table(rows)
    assert "50,000" in text and "2.00x" in text and "0.50x" in text
    assert "fused: no time left" in text
    ktext = gpu_check.kernel_table([{"kernel": "layernorm fwd (06)", "fused_ms": 0.05,
                                     "plain_ms": 0.2, "fused_GBs": 600.0, "plain_GBs": 150.0},
                                    {"kernel": "adam", "error": "boom"}])
    assert "4.0x" in ktext and "adam" in ktext and "error: boom" in ktext


def test_pytorch_twin_is_minigpts_gpt():
    torch = pytest.importorskip("torch")
    err0, err1 = gpu_check.twin_check(torch)
    assert err0 < 2e-5 and err1 < 1e-2


def test_dry_run(capsys):
    assert gpu_check.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run: ok" in out and "whole-model training" in out and "per-kernel" in out
    for part in gpu_check.PARTS:
        assert part in out


def _fake_sh(clock, typical):
    """gpu_check.sh standing in for a GPU machine: canned output of each part's child, and the
    clock moved on by what the part took: its floor (typical) or its whole limit (worst)."""
    import json

    def sh(cmd, timeout, log_name=None, env=None):
        line = " ".join(map(str, cmd))
        if "--case env" in line:
            part, out = None, "numpy 2 cupy 14 cuda runtime 13020 device NVIDIA H100"
        elif "--case compile" in line:
            part, out = "compile", 'COMPILE {"06_layernorm.cu": 0.3}\nCOMPILE {"09_adam.cu": 0.1}'
        elif "--case model" in line:
            preset, B, T = cmd[-4:-1]
            part = f"model-{preset}"
            out = "\n".join("MODEL " + json.dumps(
                {"preset": preset, "B": int(B), "T": int(T), "dropout": p, "impl": impl,
                 "tokens_per_s": 1000.0 * (i + 1)})
                for p in (0.1, 0.0) for i, impl in enumerate(("fused", "torch-eager",
                                                              "torch-best", "plain")))
        elif cmd[1:3] == ["-m", "pytest"]:
            assert "tests/test_gpu_check.py" not in cmd and "tests/test_gpu.py" in cmd
            part, out = "tests", "....\n217 passed in 31.0s"
        elif "--case kernels" in line:
            part, out = "kernels", ('KERNEL {"kernel": "layernorm fwd (06)", "fused_ms": 0.036, '
                                    '"plain_ms": 0.213, "fused_GBs": 696.0, "plain_GBs": 118.0}')
        elif "bench_attention_gpu.py" in line:
            part, out = "attention", "attention table"
        elif "--case profile" in line:
            part, out = "profile", "PROFILE step 27.1 ms wall\nPROFILE 95 0.015 linear.py:34(backward)"
        elif "--case sanitize" in line:
            part, out = line.split("--tool=")[1].split()[0], "ok attention\nsanitize case done"
        else:
            raise AssertionError(f"unexpected command {cmd}")
        clock[0] += (gpu_check.PARTS[part][0] if part else 8.0) if typical else timeout
        return 0, out
    return sh


@pytest.mark.parametrize("typical", [True, False])
def test_main_runs_the_parts_and_prints_the_tables_last(tmp_path, monkeypatch, capsys, typical):
    """main()'s GPU path with each child's output canned. Every part taking its floor: all
    run, in priority order. Every part running to its time limit (the preflight too): the run
    still ends inside the budget, with the model table. The per-kernel and whole-model tables
    come last."""
    clock = [0.0]
    monkeypatch.setattr(gpu_check, "sh", _fake_sh(clock, typical))
    monkeypatch.setattr(gpu_check, "left", lambda: gpu_check.BUDGET_S - clock[0])
    monkeypatch.setattr(gpu_check, "OUT", tmp_path)
    monkeypatch.setattr(gpu_check.shutil, "which",
                        lambda name: "/fake/compute-sanitizer" if name == "compute-sanitizer" else None)
    gpu_check._done.clear()
    try:
        rc = gpu_check.main([])
    finally:
        gpu_check._done.clear()
    out = capsys.readouterr().out
    summary = __import__("json").loads((tmp_path / "summary.json").read_text())
    steps = summary["steps"]
    assert list(steps) == ["env", *gpu_check.PARTS]
    assert clock[0] <= gpu_check.BUDGET_S
    ran = [k for k, v in steps.items() if v in ("ok", "clean") or v.startswith("ok:")]
    if typical:
        assert rc == 0 and len(ran) == len(steps)
    else:
        assert {"compile", "model-small", "model-gpt1"} <= set(ran)
        assert all(v.startswith("skipped (no time left") for k, v in steps.items() if k not in ran)
    tail = out.strip().splitlines()
    assert tail[-1].startswith("RESULT: all steps passed")
    model_at = max(i for i, ln in enumerate(tail) if ln.startswith("whole-model training"))
    kernel_at = max((i for i, ln in enumerate(tail) if ln.startswith("per-kernel")), default=-1)
    assert kernel_at < model_at and len(tail) - model_at == 2 + 4 + 1  # 2 presets x 2 dropouts
    assert "  gpt1        8x512     0.1      1,000" in out
    if "kernels" in ran:
        assert 0 <= kernel_at and "layernorm fwd (06)" in out
