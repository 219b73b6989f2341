"""Grade submissions with the real library: one student's, or a whole class folder.

1. Here, with the real library (cases.py): build every task's check (inputs from seeded
   generators and derandomized hypothesis) and compute the expected results, and for
   gradient checks the central differences of the *reference* forward.
2. The released tree of the assignment (no answers in it: release.py) is the base; the
   submission's files for this assignment, and only those, are copied over it, each task in
   a fresh folder of its own.
3. judging.py runs each task's calls there in a sandboxed process (runner.py), kills its
   process group, reads back the raw values, and judges them here: points, and the first
   lines of each failure. `--json` (Gradescope's results.json) is written atomically, after
   every task's process is gone.
"""
from __future__ import annotations

import csv
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import judging
from .cases import prepare
from .judging import (GradingError, Report, TaskResult, check_json_path, grade_with_cases,
                      write_json_atomically)
from .manifest import get
from .release import build, write_tree

MEMORY_GB = judging.MEMORY_GB

__all__ = ["grade", "grade_all", "GradingError", "Report", "TaskResult"]


def _check_grader_library() -> None:
    """Refuse to grade with a released student tree's minigpt (its reference is stripped)."""
    if getattr(sys.modules.get("minigpt.assignments"), "RELEASED", False):
        raise GradingError("this minigpt is a released student tree; grade with the course's "
                           "minigpt")


def _prepare(name, tasks, capstone, json_path=None):
    _check_grader_library()
    check_json_path(json_path)
    assignment = get(name)
    if tasks:
        unknown = sorted(set(tasks) - {t.id for t in assignment.tasks})
        if unknown:
            raise GradingError(f"assignment {name} has no task {', '.join(unknown)}; its tasks: "
                               f"{', '.join(t.id for t in assignment.tasks)}")
    meta, arrays = prepare(assignment, tasks=tasks, capstone=capstone)
    return assignment, meta, arrays


def grade(name: str, submission, json_path=None, timeout: float | None = None,
          jobs: int | None = None, capstone: dict | None = None, tasks=None,
          memory_gb: float | None = None) -> Report:
    """Grade one submission of assignment `name`: a folder holding minigpt/<their files>, or
    the zip the student README's command makes.

    memory_gb: the address space each task's process may use (default 8 GiB, the capstone
    16); past it the student's allocation raises MemoryError and the task scores 0 with a
    hint. tasks: only these task ids (default: all). capstone: settings overriding
    checks.CAPSTONE_DEFAULTS (a tiny run for tests; checks.CAPSTONE_LONG: the long run)."""
    submission = Path(submission)
    if not submission.exists():
        raise GradingError(f"{submission} does not exist (give the folder that holds minigpt/, "
                           "or the submission's zip)")
    assignment, meta, arrays = _prepare(name, tasks, capstone, json_path)
    with tempfile.TemporaryDirectory(prefix="minigpt-tree-") as tmp:
        tree = Path(tmp)
        write_tree(build(assignment, with_solutions=False), tree)
        return grade_with_cases(meta, arrays, tree, submission, json_path=json_path,
                                timeout=timeout, jobs=jobs, memory_gb=memory_gb)


def grade_all(name: str, folder, csv_path=None, jobs: int | None = None,
              timeout: float | None = None, capstone: dict | None = None, tasks=None,
              memory_gb: float | None = None, json_dir=None) -> list:
    """Grade every submission in `folder` (one per student: a sub-folder holding minigpt/,
    or a .zip; the student is its name without .zip), `jobs` students at a time (each
    student's tasks one after another). The cases are computed once for the whole class.

    csv_path: one row per student (student, score, max_score, then each task's points, then
    the error for a submission that could not be graded); json_dir: each student's
    results.json as <student>.json. Returns [(student, Report or the error message)]."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GradingError(f"{folder} is not a folder of submissions")
    subs = sorted(p for p in folder.iterdir() if not p.name.startswith(".")
                  and (p.is_dir() or p.suffix == ".zip") and not p.is_symlink())
    if not subs:
        raise GradingError(f"{folder} holds no submissions (one folder or .zip per student)")
    if csv_path is not None:
        check_json_path(csv_path)  # the same rule: a file path, in a folder that exists
    if json_dir is not None:
        Path(json_dir).mkdir(parents=True, exist_ok=True)
    assignment, meta, arrays = _prepare(name, tasks, capstone)
    jobs = jobs or max(1, os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="minigpt-tree-") as tmp:
        tree = Path(tmp)
        write_tree(build(assignment, with_solutions=False), tree)

        def one(sub):
            student = sub.name[:-4] if sub.suffix == ".zip" else sub.name
            out = None if json_dir is None else Path(json_dir) / f"{student}.json"
            try:
                return student, grade_with_cases(meta, arrays, tree, sub, json_path=out,
                                                 timeout=timeout, jobs=1, memory_gb=memory_gb)
            except GradingError as e:
                return student, str(e)

        with ThreadPoolExecutor(jobs) as pool:
            results = list(pool.map(one, subs))
    if csv_path is not None:
        write_csv(csv_path, meta, results)
    return results


def write_csv(path, meta: dict, results) -> None:
    ids = [t["id"] for t in meta["tasks"]]
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["student", "score", "max_score", *ids, "error"])
            for student, rep in results:
                if isinstance(rep, Report):
                    points = {r.id: r.score for r in rep.results}
                    w.writerow([student, rep.score, rep.max_score,
                                *[points.get(i, "") for i in ids], ""])
                else:
                    w.writerow([student, 0, sum(t["points"] for t in meta["tasks"]),
                                *["" for _ in ids], rep])
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def judge_weights(args, mine, arrays, _ref, inputs):
    """The long capstone run (local only: it needs the library): the weights the student's
    run returned, evaluated here with the reference ops on the validation batches."""
    import minigpt
    res = mine.get(args["key"], {})
    if "error" in res:
        return [f"training raised {res['error']}\n" + judging.indent(res.get("traceback", ""))]
    value = res.get("value") if isinstance(res.get("value"), dict) else {}
    weights = judging.load_value(value.get("weights"), arrays)
    model = minigpt.GPT(minigpt.GPTConfig(**args["config"]))
    try:
        model.load_state_dict({k: np.asarray(v, dtype=np.float32) for k, v in weights.items()})
    except (AttributeError, KeyError, ValueError, TypeError) as e:
        return [f"the trained weights could not be loaded: {e}"]
    model.eval()
    val, B, T = inputs[args["val"]].astype(np.int64), args["batch_size"], args["block_size"]
    starts = np.linspace(0, len(val) - T - 2, args["val_batches"] * B).astype(np.int64)
    total = 0.0
    with minigpt.use("reference"), minigpt.no_grad():
        for chunk in starts.reshape(args["val_batches"], B):
            x = np.stack([val[i:i + T] for i in chunk])  # (B, T)
            y = np.stack([val[i + 1:i + T + 1] for i in chunk])  # (B, T)
            total += float(model.loss(x, y).data)
    loss = total / args["val_batches"]
    if not loss < args["threshold"]:
        return [f"validation loss {loss:.4f} (evaluated by the grader) after {args['steps']} "
                f"steps: needs < {args['threshold']} nats per character"]
    return []


judging.JUDGES["weights"] = judge_weights
