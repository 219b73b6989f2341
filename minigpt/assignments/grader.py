"""Grade a student's tree: every task in its own process, on the student's code only.

For each task:
1. Here, with the real library: build the task's check (inputs from seeded generators and
   derandomized hypothesis) and compute the expected results.
2. Build a grading tree: the released tree of the assignment with the student's versions of
   the assignment's files copied over it (only those files: a submission cannot replace the
   autograd engine or the gradient checker to make its tasks pass). Each task gets its own
   copy, so one task's code cannot change what another task runs.
3. Run `runner.py` on it in a fresh interpreter (`python -I -S`: no .pth files, so the real
   minigpt is not importable; the runner checks where every minigpt module came from) with a
   time limit. Only the inputs go there; results come back as JSON and .npz, never pickle.
4. Compare here and report: points, and the first lines of each failure.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .check import expected_results, judge
from .manifest import get
from .release import PACKAGE, build, write_tree

MAX_LINES = 12   # failure lines shown per task
# address space per task process: NumPy + OpenBLAS reserve ~1 GiB, the capstone's training
# more (per-thread BLAS buffers and malloc arenas grow with the cores), so it gets twice this
MEMORY_GB = 8.0


@dataclass
class TaskResult:
    id: str
    title: str
    score: int
    max_score: int
    output: str
    seconds: float = 0.0


@dataclass
class Report:
    assignment: str
    title: str
    results: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def score(self) -> int:
        return sum(r.score for r in self.results)

    @property
    def max_score(self) -> int:
        return sum(r.max_score for r in self.results)

    def table(self) -> str:
        width = max([len(r.id) for r in self.results] + [4])
        lines = [f"{self.assignment}: {self.title}", ""]
        lines += [f"  {'task':<{width}}  points  result"]
        for r in self.results:
            ok = "ok" if r.score == r.max_score else "FAILED"
            lines.append(f"  {r.id:<{width}}  {r.score:>2} / {r.max_score:<2} {ok}")
            if r.score != r.max_score:
                lines += ["      " + ln for ln in r.output.splitlines()[:MAX_LINES]]
        lines += ["", f"total: {self.score} / {self.max_score}"]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def gradescope(self) -> dict:
        """Gradescope's results.json shape."""
        return {"score": self.score, "max_score": self.max_score,
                "output": "\n".join(self.notes),
                "tests": [{"name": f"{r.id}: {r.title}", "score": r.score,
                           "max_score": r.max_score, "output": r.output or "passed",
                           "visibility": "visible"} for r in self.results]}


class GradingError(ValueError):
    pass


def _check_grader_library() -> None:
    """Refuse to grade with a released student tree's minigpt (its reference is stripped)."""
    if getattr(sys.modules.get("minigpt.assignments"), "RELEASED", False):
        raise GradingError("this minigpt is a released student tree; grade with the course's "
                           "minigpt")


def _site_dirs() -> list[str]:
    """Where NumPy (and the rest of the interpreter's packages) live, without the real minigpt."""
    dirs = []
    for key in ("purelib", "platlib"):
        d = sysconfig.get_paths().get(key)
        if d and d not in dirs:
            dirs.append(d)
    import numpy
    d = str(Path(numpy.__file__).resolve().parent.parent)
    if d not in dirs:
        dirs.append(d)
    return dirs  # the tree goes first on sys.path: a minigpt installed here is shadowed


def grade(name: str, tree, json_path=None, timeout: float | None = None, jobs: int | None = None,
          capstone: dict | None = None, tasks=None, memory_gb: float | None = None) -> Report:
    """Grade the student's tree `tree` (a directory holding minigpt/<their files>).

    memory_gb: the address space each task's process may use (default MEMORY_GB, twice that for
    the capstone); past it the
    student's allocation raises MemoryError and the task scores 0 with a hint.

    tasks: only these task ids (default: all). capstone: settings overriding
    checks.CAPSTONE_DEFAULTS (a short run for testing the grader)."""
    _check_grader_library()
    assignment = get(name)
    if tasks:
        unknown = sorted(set(tasks) - {t.id for t in assignment.tasks})
        if unknown:
            raise GradingError(f"assignment {name} has no task {', '.join(unknown)}; its tasks: "
                               f"{', '.join(t.id for t in assignment.tasks)}")
    tree = Path(tree)
    if not tree.is_dir():
        raise GradingError(f"{tree} is not a directory (give the folder that holds minigpt/)")
    report = Report(assignment.name, assignment.title)
    student = {}
    for f in assignment.files:
        p = tree / "minigpt" / f
        if p.is_file():
            student[f"minigpt/{f}"] = p.read_bytes()
        else:
            report.notes.append(f"minigpt/{f} is not in the submission: its tasks use the "
                                "released file (they score 0)")
    if not student:
        raise GradingError(f"{tree} has none of the files of assignment {name} "
                           f"({', '.join('minigpt/' + f for f in assignment.files)})")
    files = build(assignment, with_solutions=False)
    broken = {}  # file -> why it does not compile: its tasks fail, the others run without it
    for rel, data in student.items():
        try:
            compile(data, rel, "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as e:
            line = f" line {e.lineno}" if getattr(e, "lineno", None) else ""
            broken[rel[len("minigpt/"):]] = f"{rel} does not compile ({line.strip() or 'syntax'}" \
                f"): {type(e).__name__}: {getattr(e, 'msg', e)}"
            continue
        files[rel] = data
    timeout = timeout if timeout is not None else assignment.timeout

    prepared = []
    for task in assignment.tasks:
        if tasks and task.id not in tasks:
            continue
        check = task.check(capstone) if task.id.startswith("capstone.") else task.check()
        prepared.append((task, check, expected_results(check, assignment.files)))

    with tempfile.TemporaryDirectory(prefix="minigpt-grade-") as work:
        work = Path(work)
        shutil.copy(Path(__file__).with_name("runner.py"), work / "runner.py")
        base = work / "base"
        write_tree(files, base)

        def run(item):
            task, check, expected = item
            t0 = time.perf_counter()
            own = {t.file for t in assignment.todos if t.task == task.id} or set(assignment.files)
            why = [broken[f] for f in sorted(own) if f in broken]
            if why:
                return TaskResult(task.id, task.title, 0, task.points, why[0], 0.0)
            out, score = _run_task(task, check, expected, work, base, timeout,
                                   assignment.files, capstone=task.id.startswith("capstone."),
                                   memory_gb=memory_gb)
            return TaskResult(task.id, task.title, score, task.points, out,
                              time.perf_counter() - t0)

        jobs = jobs or max(1, min(len(prepared), os.cpu_count() or 1))
        with ThreadPoolExecutor(jobs) as pool:
            report.results = list(pool.map(run, prepared))
    if json_path:
        Path(json_path).write_text(json.dumps(report.gradescope(), indent=2) + "\n",
                                   encoding="utf-8")
    return report


def _run_task(task, check, expected, work: Path, base: Path, timeout: float, files,
              capstone=False, memory_gb: float | None = None):
    """(output, score) of one task."""
    memory_gb = memory_gb or (2 * MEMORY_GB if capstone else MEMORY_GB)
    hint = (f"(MemoryError: a task may use at most {memory_gb:g} GiB, `--memory-gb`; an array "
            "far larger than the inputs? check the shapes of what you allocate)")
    jobdir = work / task.id
    tree = jobdir / "tree"
    shutil.copytree(base, tree)
    job = {"tree": str(tree), "site": _site_dirs(), "calls": check.calls,
           "trusted": check.trusted, "forbidden": [str(PACKAGE)], "student_files": files,
           "memory_bytes": int(memory_gb * 2 ** 30)}
    (jobdir / "job.json").write_text(json.dumps(job), encoding="utf-8")
    np.savez(jobdir / "inputs.npz", **check.arrays)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = str(cores or 1) if capstone else "1"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(jobdir),
           "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads,
           "MKL_NUM_THREADS": threads, "MINIGPT_OPS": "reference", "PYTHONHASHSEED": "0",
           "MPLBACKEND": "Agg"}
    proc = subprocess.Popen([sys.executable, "-I", "-S", str(work / "runner.py"), str(jobdir)],
                            cwd=jobdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=check.timeout or timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        proc.communicate()
        return (f"timed out after {check.timeout or timeout:g} s (an endless loop? the other "
                "tasks were still graded)", 0)
    result_file = jobdir / "result.json"
    if not result_file.is_file():
        tail = stderr.decode("utf-8", "replace").strip().splitlines()[-6:]
        more = [hint] if any("MemoryError" in line for line in tail) else []
        return ("the grading process ended (exit code "
                f"{proc.returncode}) before reporting:\n" + "\n".join(tail + more), 0)
    result = json.loads(result_file.read_text(encoding="utf-8"))
    with np.load(jobdir / "result.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    notes = []
    mine = Path(result.get("minigpt_file", "")).resolve()
    if tree.resolve() not in mine.parents:
        return f"minigpt was imported from {mine}, outside your tree", 0
    if result.get("leaks"):
        return ("your code imported modules from outside your tree: "
                + "; ".join(result["leaks"][:3]), 0)
    printed = stdout.decode("utf-8", "replace").strip()
    if printed:
        first = printed.splitlines()[0]
        notes.append(f"(your code printed {len(printed.splitlines())} line(s), first: "
                     f"{first[:100]!r}; printing does not change the grade)")
    ref_calls, ref_arrays, ref_uses = expected
    borrowed = sorted({tuple(x) for x in result.get("calls_into_other_implementations", [])}
                      - ref_uses)
    if borrowed:
        where = ", ".join(f"minigpt/{f}: {name}" for f, name in borrowed[:3])
        return (f"your code calls the library's other implementations ({where}), which the "
                "reference never does: write the op yourself", 0)
    failures = judge(check, result["calls"], arrays, ref_calls, ref_arrays)
    failures = _dedupe(failures)
    if failures:
        if any("MemoryError" in f for f in failures):
            notes.insert(0, hint)
        return "\n".join(failures + notes), 0
    return "\n".join(notes), task.points


def _dedupe(failures):
    """One line for a task whose every case stopped at the same NotImplementedError."""
    out, seen = [], set()
    for f in failures:
        if "raised NotImplementedError" in f:
            msg = f.split("raised ", 1)[1].splitlines()[0]
            msg = msg.split(": ", 1)[1] if ": " in msg else msg  # "<task id>: <todo>"
            task = msg.split(":", 1)[0]
            if task in seen:
                continue
            seen.add(task)
            out.append(f"not implemented yet: {msg}")
        else:
            out.append(f)
    return out


def _kill(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
