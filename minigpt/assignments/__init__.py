"""Classroom assignments: release, autograde and report, with the library as the answer key.

The solutions are the library's own reference code, marked with nbgrader's
`### BEGIN SOLUTION` / `### END SOLUTION` lines (minigpt/ops/*.py, autograd.py, optim.py, ...),
so the answer key cannot drift from the library. `manifest.py` says which regions each
assignment hands out and how each task is graded (`checks.py`).

    minigpt assignments list
    minigpt assignments release layers --out hw2 [--with-solutions]
    minigpt assignments grade layers hw2 [--json results.json]

or from Python: `list_assignments()`, `release(name, out)`, `grade(name, tree)`.
"""
from .grader import GradingError, Report, TaskResult, grade
from .manifest import ASSIGNMENTS, Assignment, Task, Todo
from .markers import MarkerError, find_regions
from .release import ReleaseError, release

__all__ = ["ASSIGNMENTS", "Assignment", "Task", "Todo", "list_assignments", "release", "grade",
           "Report", "TaskResult", "GradingError", "ReleaseError", "MarkerError", "find_regions"]


def list_assignments() -> list:
    """The assignments, in course order."""
    return list(ASSIGNMENTS.values())
