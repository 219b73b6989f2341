"""Release an assignment: the student's tree, written from the library's own marked sources.

    DIR/README.md                   the tasks, their points, the files to edit, how to check
                                    and how to submit
    DIR/minigpt/...                 the package; this assignment's solution regions replaced
                                    by `raise NotImplementedError("<task>: <todo>")`
    DIR/minigpt/assignments/        a stub: the grader is not part of a student's tree
    DIR/.grading/                   the public checks: cases.json and cases.npz (inputs and
                                    expected values of the cases that are not hidden), and
                                    judging.py + runner.py to run them (`python
                                    .grading/selfcheck.py`): no answer key needed
    DIR/.minigpt-assignment.json    which assignment this is, and its files

Nothing in the tree hands over an answer: the tuned copies of the ops (manifest.TUNED:
minigpt/fast, minigpt/cuda, the heap BPE learner) are replaced by stubs that register
nothing, so every op runs its reference, i.e. the student's code; regions of other
assignments that would give this one's answers away (`Assignment.withhold`: attention's
softmax and dropout in the layers release) are left out like the tasks' own. Other
assignments' regions keep their code (the tree is a working library apart from that);
hidden-test regions are removed. The output depends on the sources only (sorted walk, no
dates), so releasing twice gives identical bytes.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from .cases import cases_bytes, prepare
from .manifest import TUNED, Assignment, get
from .markers import MarkerError, find_regions, not_implemented_line, render

PACKAGE = Path(__file__).resolve().parent.parent   # the installed minigpt package
SKIP_DIRS = {"__pycache__", "assignments"}
STAMP = ".minigpt-assignment.json"
RELEASED_NOTE = "released student tree"

_STUB_INIT = '''"""Not part of a student's tree: grading runs with the teacher's minigpt.

    minigpt assignments grade NAME DIR    (with minigpt installed from the library itself)
"""
RELEASED = True
'''

_STUB_CLI = '''"""The `minigpt assignments` command is not available inside a released student tree."""


def add_commands(sub) -> None:
    p = sub.add_parser("assignments", help="(not available in a student tree)")
    p.set_defaults(func=lambda args: print("minigpt assignments: this is a released student "
                                           "tree; run the command with the course's minigpt") or 2)
'''


class ReleaseError(ValueError):
    pass


def package_files(root: Path = PACKAGE) -> list[Path]:
    """Every file of the package a tree needs, sorted (no caches, no grader)."""
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and not (set(rel.parts[:-1]) & SKIP_DIRS) and p.suffix not in (".pyc", ".pyo"):
            out.append(p)
    return out


_STUB_TUNED = '''"""Left out of this release: the tuned versions of the ops re-implement the ops you write.

Every op runs its reference in minigpt/ops/ (your code), in every ops mode.
"""
'''


def is_tuned(rel: str) -> bool:
    """A tuned copy of an op (manifest.TUNED), left out of every release."""
    return any(rel == t or (t.endswith("/") and rel.startswith(t)) for t in TUNED)


def tuned_stubs(rels) -> dict:
    """{rel: stub source} for the left-out files that other modules import."""
    stubs = {}
    for t in TUNED:
        if t.endswith("/"):
            stubs[t + "__init__.py"] = _STUB_TUNED
        elif any(r == t for r in rels):
            stubs[t] = _STUB_TUNED
    return stubs


def render_file(assignment: Assignment, rel: str, text: str, with_solutions: bool,
                found: set) -> str:
    """One source file as the release of `assignment` shows it."""
    if "### BEGIN" not in text:
        return text
    regions = find_regions(text, f"minigpt/{rel}")
    todos = {(t.file, t.function): t for t in assignment.todos}
    withheld = set(assignment.withhold)

    def replace(region):
        if region.kind == "hidden":
            return None if with_solutions else []
        todo = todos.get((rel, region.qualname))
        if todo is None and (rel, region.qualname) in withheld and not with_solutions:
            return [not_implemented_line(region.indent, "not in this assignment",
                                         f"{region.qualname} is left out of the {assignment.name} "
                                         "release (it would give its answers away)")]
        if todo is None:
            return None  # another assignment's region: keep the code
        found.add((rel, region.qualname))
        if with_solutions:
            return None
        return [not_implemented_line(region.indent, todo.task, todo.text)]

    return render(text, regions, replace)


_SELFCHECK = '''"""Check your work on the public cases (no answer key needed; the graded cases include
hidden ones):

    python .grading/selfcheck.py                 every task
    python .grading/selfcheck.py --task TASK_ID  one task
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import judging  # noqa: E402

raise SystemExit(judging.main([HERE, ROOT, "--tree", ROOT] + sys.argv[1:]))
'''


def build(assignment: Assignment, with_solutions: bool = False, root: Path = PACKAGE,
          checks: bool = False) -> dict:
    """{relative path: bytes} of the released tree (nothing written). checks: with the
    public checks in .grading/ (computed with the library: a few seconds)."""
    files: dict[str, bytes] = {}
    found: set = set()
    rels = [p.relative_to(root).as_posix() for p in package_files(root)]
    for p in package_files(root):
        rel = p.relative_to(root).as_posix()
        if is_tuned(rel):  # also in a teacher's copy: it grades and self-checks the same
            continue
        data = p.read_bytes()
        if p.suffix == ".py":
            text = data.decode("utf-8")
            data = render_file(assignment, rel, text, with_solutions, found).encode("utf-8")
        files[f"minigpt/{rel}"] = data
    missing = [f"minigpt/{t.file}: {t.function}" for t in assignment.todos
               if (t.file, t.function) not in found]
    if missing:
        raise ReleaseError(f"assignment {assignment.name}: no '### BEGIN SOLUTION' region in "
                           f"{'; '.join(missing)} (the library and the manifest disagree)")
    for rel, text in tuned_stubs(rels).items():
        files[f"minigpt/{rel}"] = text.encode()
    files["minigpt/assignments/__init__.py"] = _STUB_INIT.encode()
    files["minigpt/cli/assignments.py"] = _STUB_CLI.encode()
    files["README.md"] = student_readme(assignment, with_solutions).encode()
    if checks:
        meta, arrays = prepare(assignment, public_only=True)
        for name, data in cases_bytes(meta, arrays).items():
            files[f".grading/{name}"] = data
        files[".grading/selfcheck.py"] = _SELFCHECK.encode()
    stamp = {"assignment": assignment.name, "files": [f"minigpt/{f}" for f in assignment.files],
             "with_solutions": with_solutions, "note": RELEASED_NOTE}
    files[STAMP] = (json.dumps(stamp, indent=2) + "\n").encode()
    return files


def release(name: str, out, with_solutions: bool = False, force: bool = False) -> Path:
    """Write the released tree of assignment `name` into the directory `out` (new or empty;
    an existing non-empty directory only with force=True, and only if it is a released tree)."""
    assignment = get(name)
    out = Path(out)
    check_release_target(out, force, STAMP, "released assignment tree")
    write_release(build(assignment, with_solutions, checks=True), out)
    return out


def check_release_target(out: Path, force: bool, stamp: str, what: str) -> None:
    """`out` must be new or empty; with force, also an earlier release (it holds `stamp`),
    never anything else. `what` names a release in the messages."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not force:
            raise ReleaseError(f"{out} exists and is not empty; choose a new directory "
                               f"(or --force to replace an earlier {what})")
        if not (out / stamp).is_file():
            raise ReleaseError(f"{out} is not a {what}; --force only replaces those (nothing "
                               "else is ever deleted)")


def write_release(files: dict, out: Path) -> None:
    """Write `files` ({relative path: bytes}) as the folder `out`: into a new folder beside it,
    then swapped in by two renames, so `out` is never half-written (an earlier release is
    removed only once the new one is complete)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write_tree(files, tmp)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_tree(files: dict, root: Path) -> None:
    for rel in sorted(files):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[rel])


def pack_command(assignment: Assignment) -> str:
    """The student's packing command: the whole minigpt/ folder, paths kept (the grader takes
    only the assignment's files from it). `python -m zipfile -c` stores a file given by name
    without its folders, but a folder with the paths inside it."""
    return "python -m zipfile -c submission.zip minigpt"


def student_readme(a: Assignment, with_solutions: bool) -> str:
    lines = [f"# {a.title} (`{a.name}`)", "", a.summary, ""]
    if with_solutions:
        lines += ["**This tree has the solutions in** (a teacher's copy).", ""]
    lines += ["## Your tasks", "", "| task | points | what |", "| --- | ---: | --- |"]
    lines += [f"| `{t.id}` | {t.points} | {t.title} |" for t in a.tasks]
    lines += [f"| total | {a.points} | |", "", "## Where", "",
              "Each place to fill in raises `NotImplementedError(\"<task>: <what to do>\")`:", ""]
    ids = {t.id for t in a.tasks}
    for t in a.todos:
        task = f" (task `{t.task}`)" if t.task in ids else ""
        lines.append(f"- `minigpt/{t.file}`, `{t.function}`{task}: {t.text}")
    lines += ["", "Keep the function signatures; what a forward saves for its backward is up "
              "to you: only the results are graded. Write array code with "
              "`xp = get_array_module(x)` and keep the input's dtype. Use only NumPy and this "
              "tree's `minigpt` package (every op runs its reference here: yours).", "",
              "## How it is graded", "",
              "Every task runs in its own process with a time limit, in a sandbox that sees "
              "this tree, NumPy and the standard library only: forward values and float64 "
              "gradients (with a random upstream gradient) are compared with the course's "
              "answers, on the cases you can guess and on hidden edge cases (you learn that "
              "a hidden case failed, not which). A backward is judged against the reference "
              "forward's gradients, so a wrong forward does not cost its backward. A task "
              "scores all of its points or none. Check your work on the public cases as "
              "often as you like:", "", "```bash",
              "python .grading/selfcheck.py                 # every task",
              f"python .grading/selfcheck.py --task {a.tasks[0].id}", "```", "",
              "## Submit", "", "From this directory (the grader takes only the files above "
              "from it):", "", "```bash", pack_command(a), "```", ""]
    return "\n".join(lines)


__all__ = ["release", "build", "ReleaseError", "MarkerError", "pack_command", "STAMP",
           "check_release_target", "write_release", "write_tree"]
