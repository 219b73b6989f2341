"""The grader against submissions that try to fool it (issue 23): each attack is a planted
edit in a copy of the solutions tree, graded by the real subprocess grader.

Verdicts are computed in the grader's process from raw values; the student's process runs in
a fresh folder, in a sandbox, in its own process group, and gets no expected value.
"""
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from minigpt.assignments import GradingError, grade, release
from minigpt.assignments.release import PACKAGE


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    return {name: release(name, root / name, with_solutions=True)
            for name in ("autograd", "layers")}


def _plant(keys, tmp_path, name, path, old, new):
    dst = tmp_path / f"{name}-attack"
    shutil.copytree(keys[name], dst)
    f = dst / "minigpt" / path
    text = f.read_text()
    assert text.count(old) == 1, f"planted edit not found in {path}: {old!r}"
    f.write_text(text.replace(old, new))
    return dst


def _by_id(report):
    return {r.id: r for r in report.results}


# ------------------------------------------------------------------ forged results

FORGE = '''    import json, os, numpy
    claim = {"correct": "True", "changed": [0.0, 0.0], "coarse": "True",
             "wrong": "raised: gradcheck failed for x (shape (3, 4)) at index (1, 2): "
                      "analytic 1.0, numeric 0.99, relative error 0.01"}
    old = {"calls": {"gradcheck probe": claim}, "leaks": [],
           "minigpt_file": os.path.abspath("tree/minigpt/__init__.py"),
           "calls_into_other_implementations": []}
    with open("result.json", "w") as f:
        json.dump(old, f)
    blob = json.dumps({"calls": {"gradcheck probe": {"value": claim}}}).encode()
    numpy.savez("result.npz", __json__=numpy.frombuffer(blob, dtype=numpy.uint8))
    os._exit(0)
'''


def test_a_forged_result_file_scores_nothing(keys, tmp_path):
    """The student's process writes the result files the grader reads, claiming that its
    gradcheck passed every probe, and exits: the grader judges the values, and a forged
    claim holds none that match (the numeric derivative at the wrong index)."""
    tree = _plant(keys, tmp_path, "autograd", "gradcheck.py",
                  "    inputs = list(inputs)\n", "    inputs = list(inputs)\n" + FORGE)
    r = _by_id(grade("autograd", tree, tasks=["autograd.central_difference",
                                              "autograd.unbroadcast"]))
    assert r["autograd.central_difference"].score == 0, r["autograd.central_difference"].output
    assert r["autograd.unbroadcast"].score == 2


def test_a_forked_child_cannot_rewrite_the_results(keys, tmp_path):
    """A child forked by the student's code that outlives its task would rewrite --json after
    the grader wrote it: the sandbox refuses the fork, and the results file is written by the
    grader alone, after the task's process group is dead."""
    out = tmp_path / "results.json"
    attack = (f"        import json, os, time\n"
              f"        if os.fork() == 0:\n"
              f"            os.setsid()\n"
              f"            time.sleep(3)\n"
              f"            open({str(out)!r}, 'w').write(json.dumps({{'score': 99}}))\n"
              f"            os._exit(0)\n")
    tree = _plant(keys, tmp_path, "layers", "ops/gelu.py", "        u = SQRT_2_OVER_PI",
                  attack + "        u = SQRT_2_OVER_PI")
    report = grade("layers", tree, json_path=out, tasks=["layers.gelu_forward"])
    time.sleep(5)
    data = json.loads(out.read_text())
    assert data["score"] == report.score == 0
    assert "sandbox refused os.fork" in report.results[0].output


def test_json_path_that_is_a_folder_is_a_named_error(keys, tmp_path):
    (tmp_path / "results").mkdir()
    with pytest.raises(GradingError, match="is a folder; give a file path"):
        grade("layers", keys["layers"], json_path=tmp_path / "results",
              tasks=["layers.gelu_forward"])


# ------------------------------------------------------------------ links and the library

def test_symlinked_files_are_refused(keys, tmp_path):
    sub = tmp_path / "sub"
    (sub / "minigpt/ops").mkdir(parents=True)
    (sub / "minigpt/ops/gelu.py").symlink_to(keys["layers"] / "minigpt/ops/gelu.py")
    shutil.copy(keys["layers"] / "minigpt/ops/linear.py", sub / "minigpt/ops/linear.py")
    report = grade("layers", sub, tasks=["layers.gelu_forward", "layers.linear_forward"])
    r = _by_id(report)
    assert r["layers.gelu_forward"].score == 0 and r["layers.linear_forward"].score == 1
    assert any("minigpt/ops/gelu.py: minigpt/ops/gelu.py is a symbolic link" in n
               for n in report.notes), report.notes
    # a whole folder linked to the installed reference
    sub2 = tmp_path / "sub2"
    (sub2 / "minigpt").mkdir(parents=True)
    (sub2 / "minigpt/ops").symlink_to(PACKAGE / "ops")
    with pytest.raises(GradingError, match="is a symbolic link"):
        grade("layers", sub2, tasks=["layers.gelu_forward"])


@pytest.mark.parametrize("how", ["exec", "import"])
def test_the_installed_reference_cannot_be_read(keys, tmp_path, how):
    """Reading (and exec-ing) the installed library's reference, or importing it by path."""
    ref = PACKAGE / "ops" / "layer_norm.py"
    if how == "exec":
        attack = (f"        ns = {{'__name__': 'minigpt.ops.layer_norm', '__package__': 'minigpt.ops'}}\n"
                  f"        exec(open({str(ref)!r}).read(), ns)\n"
                  f"        return ns['LayerNorm'].backward(self, g)\n")
    else:
        attack = (f"        import importlib.util\n"
                  f"        spec = importlib.util.spec_from_file_location('x', {str(ref)!r})\n"
                  f"        m = importlib.util.module_from_spec(spec)\n"
                  f"        spec.loader.exec_module(m)\n"
                  f"        return m.LayerNorm.backward(self, g)\n")
    tree = _plant(keys, tmp_path, "layers", "ops/layer_norm.py", "    def backward(self, g):\n",
                  "    def backward(self, g):\n" + attack + "\n    def _unused(self, g):\n")
    r = _by_id(grade("layers", tree, tasks=["layers.layer_norm_backward"]))
    assert r["layers.layer_norm_backward"].score == 0
    assert "sandbox refused opening" in r["layers.layer_norm_backward"].output


def test_subclassing_a_tuned_op_finds_none_in_the_release(keys, tmp_path):
    tree = _plant(keys, tmp_path, "layers", "ops/gelu.py", "class GELU(Function):",
                  "from ..fast.gelu import FastGELU as _F\n\n\nclass GELU(_F):\n    pass\n\n\n"
                  "class _Unused(Function):")
    r = grade("layers", tree, tasks=["layers.gelu_forward"]).results[0]
    assert r.score == 0 and "No module named 'minigpt.fast.gelu'" in r.output


def test_no_process_no_network(keys, tmp_path):
    attack = ("        import subprocess\n"
              "        subprocess.run(['cat', '/etc/hostname'])\n")
    tree = _plant(keys, tmp_path, "layers", "ops/gelu.py", "        u = SQRT_2_OVER_PI",
                  attack + "        u = SQRT_2_OVER_PI")
    r = grade("layers", tree, tasks=["layers.gelu_forward"]).results[0]
    assert r.score == 0 and "sandbox refused subprocess.Popen" in r.output


# ------------------------------------------------------------------ what students see

def test_tracebacks_show_no_grader_paths(keys, tmp_path):
    tree = _plant(keys, tmp_path, "layers", "ops/gelu.py", "        u = SQRT_2_OVER_PI",
                  "        xp.linalg.inv(x)  # raises inside NumPy's Python code\n"
                  "        u = SQRT_2_OVER_PI")
    out = grade("layers", tree, tasks=["layers.gelu_forward"]).results[0].output
    assert 'File "minigpt/ops/gelu.py", line' in out and "LinAlgError" in out, out
    for leak in ("/tmp", "runner.py", "site-packages", str(PACKAGE), "judging"):
        assert leak not in out, out


def test_hidden_cases_are_not_shown(keys, tmp_path):
    """A planted bug (a variance floor) that only a hidden case catches (float32 rows of
    spread 0.01): the student learns that hidden case 3 failed, not its name or values;
    Gradescope shows those after the due date."""
    tree = _plant(keys, tmp_path, "layers", "ops/layer_norm.py",
                  "        rstd = 1 / xp.sqrt(var + eps)",
                  "        rstd = 1 / xp.sqrt(xp.maximum(var, 1e-3) + eps)")
    out = tmp_path / "r.json"
    r = grade("layers", tree, tasks=["layers.layer_norm_forward"], json_path=out).results[0]
    assert r.score == 0
    assert r.output == "hidden case 3: forward output is wrong"  # its name: not shown
    assert "hidden: float32, mean 1000" in r.hidden_output and "expected" in r.hidden_output
    tests = json.loads(out.read_text())["tests"]
    assert [t["visibility"] for t in tests] == ["visible", "after_due_date"]
    assert "mean 1000" not in tests[0]["output"]
    assert "mean 1000" in tests[1]["output"] and tests[1]["max_score"] == 0


def test_a_forward_bug_costs_only_the_forward(keys, tmp_path):
    """The gradient check differentiates the reference forward, not the student's: a wrong
    bias term in LayerNorm's forward loses the forward task only (it used to fail the
    backward's gradcheck too, blamed on the backward)."""
    tree = _plant(keys, tmp_path, "layers", "ops/layer_norm.py",
                  "        return xhat * weight + bias\n", "        return xhat * weight + 2 * bias\n")
    r = _by_id(grade("layers", tree, tasks=["layers.layer_norm_forward",
                                            "layers.layer_norm_backward"]))
    assert r["layers.layer_norm_forward"].score == 0
    assert r["layers.layer_norm_backward"].score == 3, r["layers.layer_norm_backward"].output


def test_a_backward_failure_names_a_wrong_forward(keys, tmp_path):
    tree = _plant(keys, tmp_path, "layers", "ops/layer_norm.py",
                  "        xhat = (x - mean) * rstd  # (..., C)\n",
                  "        xhat = (x - mean) * rstd * 1.01  # (..., C)\n")
    r = _by_id(grade("layers", tree, tasks=["layers.layer_norm_backward"]))
    assert r["layers.layer_norm_backward"].score == 0
    assert "fix layers.layer_norm_forward first" in r["layers.layer_norm_backward"].output
