"""Classroom assignments: markers, release, and a grader a class can trust.

Released trees are shared across the tests (module-scoped); every grade runs the real
subprocess grader. Planted bugs each lose exactly the tasks they should.
"""
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minigpt.assignments import ASSIGNMENTS, MarkerError, find_regions, grade, release
from minigpt.assignments import manifest, markers
from minigpt.assignments.release import PACKAGE, build, package_files, write_tree

COURSE = ["autograd", "layers", "attention", "optim", "bpe", "transforms", "parallel"]
TINY_CAPSTONE = {"config": {"n_layer": 1, "n_embd": 16, "n_head": 2, "n_ctx": 16},
                 "block_size": 16, "steps": 5, "batch_size": 4, "val_batches": 2,
                 "threshold": 100.0, "train_chars": 20_000, "val_chars": 5_000}


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """name -> (student tree, tree with solutions), released once for the whole module."""
    root = tmp_path_factory.mktemp("released")
    out = {}
    for name in COURSE:
        out[name] = (release(name, root / name), release(name, root / f"{name}-solutions",
                                                       with_solutions=True))
    return out


def _variant(trees, tmp_path, name, path, old, new, count=1):
    """A copy of the solutions tree with one planted edit (old -> new) in minigpt/<path>."""
    dst = tmp_path / f"{name}-variant"
    shutil.copytree(trees[name][1], dst)
    f = dst / "minigpt" / path
    text = f.read_text()
    assert text.count(old) == count, f"planted edit not found in {path}: {old!r}"
    f.write_text(text.replace(old, new))
    return dst


def _lost(report):
    return {r.id for r in report.results if r.score != r.max_score}


# ------------------------------------------------------------------ markers

def test_markers_find_regions_and_owners():
    src = ("class A:\n    def f(self):\n        ### BEGIN SOLUTION\n        return 1\n"
           "        ### END SOLUTION\n\n\ndef g():\n    x = 1\n    ### BEGIN HIDDEN TESTS\n    pass\n"
           "    ### END HIDDEN TESTS\n")
    regions = find_regions(src, "m.py")
    assert [(r.kind, r.begin, r.end, r.qualname, r.indent) for r in regions] == [
        ("solution", 3, 5, "A.f", "        "), ("hidden", 10, 12, "g", "    ")]
    released = markers.render(src, regions, lambda r: [markers.not_implemented_line(
        r.indent, "t.1", 'say "hi"')] if r.kind == "solution" else [])
    assert '        raise NotImplementedError("t.1: say \\"hi\\"")\n' in released
    assert "HIDDEN" not in released and "pass" not in released
    compile(released, "m.py", "exec")


@pytest.mark.parametrize("src, line, words", [
    ("def f():\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n    pass\n", 3, "nest"),
    ("def f():\n    ### BEGIN SOLUTION\n    pass\n", 2, "never closed"),
    ("def f():\n    pass\n    ### END SOLUTION\n", 3, "without a matching BEGIN"),
    ("def f():\n    ### BEGIN SOLUTION\n    pass\n    ### END HIDDEN TESTS\n", 4,
     "without a matching BEGIN"),
    ("def f():\n    ## BEGIN SOLUTION\n    pass\n", 2, "looks like a marker"),
])
def test_bad_markers_name_file_and_line(src, line, words):
    with pytest.raises(MarkerError, match=rf"^lib/x\.py:{line}: .*{words}"):
        find_regions(src, "lib/x.py")


def test_every_marked_region_in_the_library_belongs_to_a_task():
    claimed = {(t.file, t.function) for a in ASSIGNMENTS.values() for t in a.todos}
    found = set()
    for p in package_files(PACKAGE):
        if p.suffix == ".py":
            rel = p.relative_to(PACKAGE).as_posix()
            for r in find_regions(p.read_text(), rel):
                found.add((rel, r.qualname))
    assert found == claimed


def test_at_least_six_assignments_and_a_capstone():
    assert len(COURSE) >= 6 and set(COURSE) | {"capstone"} == set(ASSIGNMENTS)
    for a in ASSIGNMENTS.values():
        assert a.points > 0 and len({t.id for t in a.tasks}) == len(a.tasks)


def test_checks_are_the_same_on_every_build():
    import numpy as np
    for a in (ASSIGNMENTS["layers"], ASSIGNMENTS["bpe"], ASSIGNMENTS["transforms"]):
        for task in a.tasks:
            one, two = task.check(), task.check()
            assert json.dumps(one.calls) == json.dumps(two.calls)
            assert one.arrays.keys() == two.arrays.keys()
            assert all(np.array_equal(one.arrays[k], two.arrays[k]) for k in one.arrays)


# ------------------------------------------------------------------ release

def test_release_twice_gives_identical_bytes(tmp_path):
    first = release("layers", tmp_path / "first")  # back to back: the library stays the same
    again = release("layers", tmp_path / "again")
    a = {p.relative_to(first): p.read_bytes() for p in sorted(first.rglob("*")) if p.is_file()}
    b = {p.relative_to(again): p.read_bytes() for p in sorted(again.rglob("*")) if p.is_file()}
    assert a == b


def test_release_strips_only_the_assignment_regions(trees):
    student, solutions = trees["layers"]
    ln = (student / "minigpt/ops/layer_norm.py").read_text()
    assert 'raise NotImplementedError("layers.layer_norm_backward: ' in ln
    assert "BEGIN SOLUTION" not in ln and "rstd" not in ln.split("def backward")[1].split("def ")[0]
    # attention's reference holds softmax and dropout, forward and backward: withheld
    att = (student / "minigpt/ops/attention.py").read_text()
    assert 'raise NotImplementedError("not in this assignment: Attention.backward' in att
    assert "BEGIN SOLUTION" not in att and "swapaxes" not in att.split("def backward")[1]
    opt = (trees["attention"][0] / "minigpt/ops/softmax.py").read_text()  # not withheld there
    assert "NotImplementedError(" not in opt
    sol = (solutions / "minigpt/ops/layer_norm.py").read_text()
    assert "NotImplementedError(" not in sol and "BEGIN SOLUTION" not in sol
    readme = (student / "README.md").read_text()
    assert "python -m zipfile -c submission.zip minigpt\n" in readme
    assert not (student / "minigpt/assignments/grader.py").exists()  # no grader, no checks


def test_release_refuses_to_overwrite(trees, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty"):
        release("bpe", tmp_path / "mine")
    with pytest.raises(ValueError, match="not a released assignment tree"):
        release("bpe", tmp_path / "mine", force=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


# ------------------------------------------------------------------ grading

@pytest.mark.parametrize("name", COURSE)
def test_released_scores_zero_with_one_message_per_task(trees, name):
    report = grade(name, trees[name][0])
    assert report.score == 0 and report.max_score == ASSIGNMENTS[name].points
    for r in report.results:
        lines = r.output.splitlines()
        assert len(lines) == 1 and lines[0].startswith("not implemented yet: "), r.output


@pytest.mark.parametrize("name", COURSE)
def test_with_solutions_scores_full_marks(trees, name, tmp_path):
    out = tmp_path / "results.json"
    report = grade(name, trees[name][1], json_path=out)
    assert report.score == report.max_score, report.table()
    data = json.loads(out.read_text())
    assert data["score"] == report.max_score
    assert {tuple(sorted(t)) for t in data["tests"]} == {
        ("max_score", "name", "output", "score", "visibility")}
    assert sum(t["max_score"] for t in data["tests"]) == report.max_score


def _partial(tmp_path, name, filled):
    """The release of `name` with the regions of the tasks in `filled` solved."""
    a = ASSIGNMENTS[name]
    rest = dataclasses.replace(a, todos=tuple(t for t in a.todos if t.task not in filled))
    dst = tmp_path / f"{name}-partial"
    write_tree(build(rest), dst)
    return dst


@pytest.mark.parametrize("name, filled", [
    ("autograd", {"autograd.unbroadcast", "autograd.mul_div"}),
    ("layers", {"layers.layer_norm_forward", "layers.layer_norm_backward", "layers.gelu_forward",
                "layers.embedding"}),
])
def test_partly_filled_scores_the_sum_of_those_tasks(tmp_path, name, filled):
    report = grade(name, _partial(tmp_path, name, filled))
    points = {t.id: t.points for t in ASSIGNMENTS[name].tasks}
    assert {r.id for r in report.results if r.score} == filled, report.table()
    assert report.score == sum(points[t] for t in filled)


PLANTED = [
    ("layer norm backward without the variance term", "layers", "ops/layer_norm.py",
     "\n                     - xhat * (gh * xhat).mean(axis=-1, keepdims=True))", ")",
     {"layers.layer_norm_backward"}),
    ("embedding backward that drops repeated ids", "layers", "ops/embedding.py",
     "xp.add.at(dW, self.idx.reshape(-1), g.reshape(-1, C))",
     "dW[self.idx.reshape(-1)] = g.reshape(-1, C)", {"layers.embedding"}),
    ("cross-entropy averaged over ignored rows too", "layers", "ops/cross_entropy.py",
     "self.K = max(int(keep.sum()), 1)", "self.K = len(keep)",
     {"layers.cross_entropy_forward", "layers.cross_entropy_backward"}),
    ("softmax without subtracting the max", "layers", "ops/softmax.py",
     "e = xp.exp(x - x.max(axis=axis, keepdims=True))", "e = xp.exp(x)",
     {"layers.softmax_forward", "layers.softmax_backward"}),
    ("a transposed attention gradient (dk)", "attention", "ops/attention.py",
     "dk = (dS.swapaxes(-1, -2) @ q)", "dk = (dS @ q)", {"attention.dk"}),
    ("Adam without bias correction", "optim", "optim.py",
     "lr_t = lr * math.sqrt(1.0 - b2 ** self.t) / (1.0 - b1 ** self.t)", "lr_t = lr",
     {"optim.adam"}),
    ("warm-up one step too long", "optim", "optim.py", "if t < warmup:", "if t <= warmup:",
     {"optim.warmup_cosine"}),
    ("unbroadcast that only sums leading axes", "autograd", "autograd.py",
     "i + extra for i, n in enumerate(shape) if n == 1 and grad.shape[i + extra] != 1)",
     "i + extra for i, n in enumerate(shape) if False)", {"autograd.unbroadcast"}),
    ("central differences that never restore x", "autograd", "gradcheck.py",
     "            t.data[idx] = orig\n", "", {"autograd.central_difference"}),
    ("one-sided differences", "autograd", "gradcheck.py",
     "            numeric[idx] = (plus - minus) / (2 * eps)",
     "            numeric[idx] = (plus - objective()) / eps", {"autograd.central_difference"}),
    ("BPE learning without min_frequency", "bpe", "tokenizers/bpe_train.py",
     "        if best < min_frequency:\n            break\n", "", {"bpe.learn_merges"}),
    ("entailment segments one token too long", "transforms", "tasks/transforms.py",
     "        a = trunc.cut(a_ids, m, names[0])", "        a = trunc.cut(a_ids, m + 1, names[0])",
     {"transforms.entail"}),
]


def _tasks_of_file(name, path):
    """The tasks whose regions lie in minigpt/<path>: the only ones a bug there can touch
    (the other tasks run other files' regions; grading only these keeps the tests fast)."""
    a = ASSIGNMENTS[name]
    ids = {t.id for t in a.tasks}
    own = {t.task for t in a.todos if t.file == path}
    mine = own & ids if own <= ids else ids  # attention.backward: dq, dk and dv
    control = [t.id for t in a.tasks if t.id not in mine][:1]  # one task of another file
    return sorted(mine | set(control))


@pytest.mark.parametrize("what, name, path, old, new, lost", PLANTED, ids=[p[0] for p in PLANTED])
def test_planted_bug_loses_exactly_its_tasks(trees, tmp_path, what, name, path, old, new, lost):
    tasks = _tasks_of_file(name, path)
    report = grade(name, _variant(trees, tmp_path, name, path, old, new), tasks=tasks)
    assert sorted(r.id for r in report.results) == tasks
    assert _lost(report) == lost, report.table()


def test_feedback_names_the_input_and_the_worst_index(trees, tmp_path):
    tree = _variant(trees, tmp_path, "attention", "ops/attention.py",
                    "dk = (dS.swapaxes(-1, -2) @ q)", "dk = (dS @ q)")
    out = grade("attention", tree, tasks=["attention.dk"]).results[0].output
    assert "gradient of `k`: wrong at index (" in out
    assert "gradcheck failed for k (shape (2, 2, 5, 4)) at index (" in out


def test_a_hang_times_out_and_the_other_tasks_are_still_graded(trees, tmp_path):
    tree = _variant(trees, tmp_path, "bpe", "tokenizers/bpe.py",
                    "        ranks = self._ranks\n", "        ranks = self._ranks\n"
                    "        while True:\n            pass\n")
    report = grade("bpe", tree, timeout=8)  # room for the other task on a busy machine
    out = {r.id: r for r in report.results}
    assert out["bpe.encode"].score == 0 and "timed out after 8 s" in out["bpe.encode"].output
    assert out["bpe.learn_merges"].score == out["bpe.learn_merges"].max_score


def test_a_runaway_allocation_hits_the_memory_cap_and_gets_a_hint(trees, tmp_path):
    """A student's 3.2 GB array is a MemoryError under a 2 GiB cap (without the cap numpy.empty
    would simply succeed); the task scores 0 with a hint naming the cap, the other task is
    unaffected."""
    pytest.importorskip("resource")
    tree = _variant(trees, tmp_path, "bpe", "tokenizers/bpe.py",
                    "        ranks = self._ranks\n", "        ranks = self._ranks\n"
                    "        import numpy\n        numpy.empty(4 * 10 ** 8)\n")
    report = grade("bpe", tree, memory_gb=2)
    out = {r.id: r for r in report.results}
    assert out["bpe.encode"].score == 0
    assert "MemoryError" in out["bpe.encode"].output and "at most 2 GiB" in out["bpe.encode"].output
    assert out["bpe.learn_merges"].score == out["bpe.learn_merges"].max_score


def test_syntax_errors_and_prints_are_reported_per_task(trees, tmp_path):
    tree = _variant(trees, tmp_path, "layers", "ops/gelu.py", "        t = xp.tanh(u)\n",
                    "        t = xp.tanh(u\n")
    softmax = tree / "minigpt/ops/softmax.py"
    softmax.write_text(softmax.read_text().replace(
        "        (y,) = self.saved\n        return (y * (g",
        "        (y,) = self.saved\n        print('debug', y.shape)\n        return (y * (g"))
    report = grade("layers", tree, tasks=["layers.gelu_forward", "layers.gelu_backward",
                                          "layers.softmax_backward", "layers.linear_forward"])
    out = {r.id: r for r in report.results}
    assert _lost(report) == {"layers.gelu_forward", "layers.gelu_backward"}, report.table()
    assert out["layers.gelu_forward"].output.startswith("minigpt/ops/gelu.py does not compile")
    assert "your code printed" in out["layers.softmax_backward"].output


def test_student_code_cannot_reach_the_reference(trees, tmp_path):
    # the runner's interpreter (-I -S, links to NumPy and tqdm only): no minigpt at all
    from minigpt.assignments.judging import site_dirs
    site = tmp_path / "site"
    site.mkdir()
    for d in site_dirs():
        (site / Path(d).name).symlink_to(d)
    code = f"import sys; sys.path[:] += [{str(site)!r}]; import numpy; import minigpt"
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                          text=True, cwd=tmp_path, env={"PATH": os.environ.get("PATH", "")})
    assert "No module named 'minigpt'" in proc.stderr
    # a submission that puts the real library first on its path finds nothing there
    cheat = ("        import sys\n"
             f"        sys.path[:] = [{str(PACKAGE.parent)!r}] + [p for p in sys.path\n"
             "                                                   if not p.endswith('tree')]\n"
             "        for m in [m for m in sys.modules if m.startswith('minigpt')]:\n"
             "            del sys.modules[m]\n"
             "        import minigpt.ops.gelu as ref\n")
    tree = _variant(trees, tmp_path, "layers", "ops/gelu.py", "        u = SQRT_2_OVER_PI",
                    cheat + "        u = SQRT_2_OVER_PI")
    out = {r.id: r for r in grade("layers", tree, tasks=["layers.gelu_forward",
                                                          "layers.linear_forward"]).results}
    assert out["layers.gelu_forward"].score == 0
    assert "No module named 'minigpt" in out["layers.gelu_forward"].output, \
        out["layers.gelu_forward"].output
    assert out["layers.linear_forward"].score == 1


def test_handing_the_work_to_the_fast_op_scores_zero(trees, tmp_path):
    tree = _variant(trees, tmp_path, "layers", "ops/layer_norm.py",
                    "    def backward(self, g):\n",
                    "    def backward(self, g):\n"
                    "        from ..fast.layer_norm import FastLayerNorm\n"
                    "        return FastLayerNorm.backward(self, g)\n"
                    "\n    def _unused(self, g):\n")
    # the fast op's backward reads what its own forward saved: save it as it does
    f = tree / "minigpt/ops/layer_norm.py"
    f.write_text(f.read_text().replace(
        "    def forward(self, x, weight, bias, eps=1e-5):\n",
        "    def forward(self, x, weight, bias, eps=1e-5):\n"
        "        from ..fast.layer_norm import FastLayerNorm\n"
        "        return FastLayerNorm.forward(self, x, weight, bias, eps)\n"
        "\n    def _unused2(self, x, weight, bias, eps=1e-5):\n"))
    out = {r.id: r for r in grade("layers", tree, tasks=["layers.layer_norm_forward",
                                                          "layers.layer_norm_backward",
                                                          "layers.gelu_forward"]).results}
    for t in ("layers.layer_norm_forward", "layers.layer_norm_backward"):
        assert out[t].score == 0  # the release has no tuned ops to hand the work to
        assert "ModuleNotFoundError: No module named 'minigpt.fast.layer_norm'" in out[t].output, \
            out[t].output
    assert out["layers.gelu_forward"].score == 1


def test_capstone_grader_on_a_tiny_run(tmp_path):
    tree = release("capstone", tmp_path / "capstone", with_solutions=True)
    report = grade("capstone", tree, capstone=TINY_CAPSTONE)
    assert report.score == report.max_score == 10, report.table()
    # the verdict on other curves, without training again
    from minigpt.assignments.judging import judge_training
    args = {"key": "k", "losses": "ref", "steps": 3, "eval_steps": [3], "atol": 0.03,
            "rtol": 0.0, "threshold": 2.0}
    ref = {"ref": np.array([4.0, 3.0, 2.5, 1.9])}

    def verdict(losses):
        return judge_training(args, {"k": {"value": {"losses": {"array": "mine"}}}},
                              {"mine": np.array(losses)}, ref, {})

    assert verdict([4.01, 2.99, 2.52, 1.91]) == []
    assert "leaves the reference's at step 2 (training loss): yours 3.2000" in \
        verdict([4.0, 3.2, 2.5, 1.9])[0]
    assert "validation loss after step 3" in verdict([4.0, 3.0, 2.5, 1.7])[0]
    assert "validation loss 2.0000 after 3 steps" in judge_training(
        {**args, "threshold": 1.95}, {"k": {"value": {"losses": {"array": "m"}}}},
        {"m": np.array([4.0, 3.0, 2.5, 2.0])}, {"ref": np.array([4.0, 3.0, 2.5, 2.0])}, {})[0]


def test_the_long_capstone_run_is_judged_on_the_returned_weights(tmp_path):
    """--long: the grader evaluates the weights the student's run returns with the reference
    ops (no reference curve); weights that do not fit the model score 0."""
    tree = release("capstone", tmp_path / "capstone", with_solutions=True)
    long = {**TINY_CAPSTONE, "long": True}
    assert grade("capstone", tree, capstone=long).score == 10
    assert grade("capstone", tree, capstone={**long, "threshold": 1.0}).score == 0
    from minigpt.assignments.grader import judge_weights
    args = {"key": "k", "config": {"vocab_size": 5, "n_ctx": 4, "n_layer": 1, "n_embd": 4,
                                   "n_head": 1}, "val": "v", "batch_size": 1, "block_size": 2,
            "val_batches": 1, "threshold": 9.0, "steps": 1}
    bad = judge_weights(args, {"k": {"value": {"weights": {"x": {"array": "w"}}}}},
                        {"w": np.zeros(3)}, {}, {"v": np.arange(5)})
    assert "could not be loaded" in bad[0]


def test_a_capstone_timeout_says_how_far_it_got(tmp_path):
    tree = release("capstone", tmp_path / "capstone", with_solutions=True)
    optim = tree / "minigpt/optim.py"  # a student's Adam that takes 2 s a step
    optim.write_text(optim.read_text().replace(
        "    def step(self) -> None:\n",
        "    def step(self) -> None:\n        import time\n        time.sleep(2)\n"))
    r = grade("capstone", tree, capstone=TINY_CAPSTONE, timeout=7).results[0]
    assert r.score == 0
    assert re.search(r"timed out after 7 s; it got to step [1-3] of 5 ", r.output), r.output


# ------------------------------------------------------------------ command line

def test_cli_list_release_grade(tmp_path, capsys):
    from minigpt.cli import main
    assert main(["assignments", "list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in ASSIGNMENTS)
    assert main(["assignments", "release", "transforms", "--out", str(tmp_path / "t")]) == 0
    assert "python -m zipfile -c submission.zip" in capsys.readouterr().out
    assert main(["assignments", "grade", "transforms", str(tmp_path / "t"),
                 "--json", str(tmp_path / "r.json")]) == 0
    table = capsys.readouterr().out
    assert "total: 0 / 10" in table
    assert json.loads((tmp_path / "r.json").read_text())["score"] == 0
    assert main(["assignments", "grade", "nope", str(tmp_path)]) == 2
    assert "unknown assignment 'nope'" in capsys.readouterr().err
