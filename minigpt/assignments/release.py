"""Release an assignment: the student's tree, written from the library's own marked sources.

    DIR/README.md                   the tasks, their points, the files to edit, how to submit
    DIR/minigpt/...                 the whole package; this assignment's solution regions
                                    replaced by `raise NotImplementedError("<task>: <todo>")`
    DIR/minigpt/assignments/        a stub: the grader is not part of a student's tree
    DIR/.minigpt-assignment.json    which assignment this is, and its files

Regions that belong to other assignments keep their code (the tree is a working library
apart from this assignment's tasks); hidden-test regions are removed. The output depends on
the sources only (sorted walk, no dates), so releasing twice gives identical bytes.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from .manifest import Assignment, get
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


def render_file(assignment: Assignment, rel: str, text: str, with_solutions: bool,
                found: set) -> str:
    """One source file as the release of `assignment` shows it."""
    if "### BEGIN" not in text:
        return text
    regions = find_regions(text, f"minigpt/{rel}")
    todos = {(t.file, t.function): t for t in assignment.todos}

    def replace(region):
        if region.kind == "hidden":
            return None if with_solutions else []
        todo = todos.get((rel, region.qualname))
        if todo is None:
            return None  # another assignment's region: keep the code
        found.add((rel, region.qualname))
        if with_solutions:
            return None
        return [not_implemented_line(region.indent, todo.task, todo.text)]

    return render(text, regions, replace)


def build(assignment: Assignment, with_solutions: bool = False, root: Path = PACKAGE) -> dict:
    """{relative path: bytes} of the released tree (nothing written)."""
    files: dict[str, bytes] = {}
    found: set = set()
    for p in package_files(root):
        rel = p.relative_to(root).as_posix()
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
    files["minigpt/assignments/__init__.py"] = _STUB_INIT.encode()
    files["minigpt/assignments/cli.py"] = _STUB_CLI.encode()
    files["README.md"] = student_readme(assignment, with_solutions).encode()
    stamp = {"assignment": assignment.name, "files": [f"minigpt/{f}" for f in assignment.files],
             "with_solutions": with_solutions, "note": RELEASED_NOTE}
    files[STAMP] = (json.dumps(stamp, indent=2) + "\n").encode()
    return files


def release(name: str, out, with_solutions: bool = False, force: bool = False) -> Path:
    """Write the released tree of assignment `name` into the directory `out` (new or empty;
    an existing non-empty directory only with force=True, and only if it is a released tree)."""
    assignment = get(name)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not force:
            raise ReleaseError(f"{out} exists and is not empty; choose a new directory "
                               "(or --force to replace an earlier release)")
        if not (out / STAMP).is_file():
            raise ReleaseError(f"{out} is not a released assignment tree; --force only replaces "
                               "those (nothing else is ever deleted)")
    files = build(assignment, with_solutions)
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
    return out


def write_tree(files: dict, root: Path) -> None:
    for rel in sorted(files):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[rel])


def pack_command(assignment: Assignment) -> str:
    files = " ".join(f"minigpt/{f}" for f in assignment.files)
    return f"python -m zipfile -c submission.zip {files}"


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
              "tree's `minigpt` package, and not the library's tuned ops in `minigpt/fast` or "
              "`minigpt/cuda` (a task that calls them scores 0).", "",
              "## How it is graded", "",
              "Every task runs in its own process with a time limit, on this tree only: "
              "forward values and float64 gradients (with a random upstream gradient) are "
              "compared with the course's answers, on the cases you can guess and on hidden "
              "edge cases. A task scores all of its points or none; a backward task needs its "
              "forward. Check your work before submitting:", "", "```bash",
              f"minigpt assignments grade {a.name} .", "```", "",
              "## Submit", "", "From this directory, pack exactly these files:", "", "```bash",
              pack_command(a), "```", ""]
    return "\n".join(lines)


__all__ = ["release", "build", "ReleaseError", "MarkerError", "pack_command", "STAMP"]
