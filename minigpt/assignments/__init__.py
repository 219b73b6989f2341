"""Classroom assignments: release, autograde and report, with the library as the answer key.

The solutions are the library's own reference code, marked with nbgrader's
`### BEGIN SOLUTION` / `### END SOLUTION` lines (minigpt/ops/*.py, autograd.py, optim.py, ...),
so the answer key cannot drift from the library. `manifest.py` says which regions each
assignment hands out and how each task is graded (`checks.py`).

    minigpt assignments list
    minigpt assignments release layers --out hw2 [--with-solutions]
    minigpt assignments grade layers hw2 [--json results.json]
    minigpt assignments grade layers submissions/ --all --csv grades.csv
    minigpt assignments gradescope layers --out autograder.zip

or from Python: `list_assignments()`, `release(name, out)`, `grade(name, submission)`,
`grade_all(name, folder)`, `write_autograder(name, out)`.

The student's code runs in a sandboxed process that returns raw values; every verdict is
computed in the grader's process (judging.py, which needs no answer key: the Gradescope
package and a release's self-check run it on precomputed cases).
"""
from .gradescope import write_autograder
from .grader import GradingError, Report, TaskResult, grade, grade_all
from .manifest import ASSIGNMENTS, Assignment, Task, Todo
from .markers import MarkerError, find_regions
from .release import ReleaseError, release

__all__ = ["ASSIGNMENTS", "Assignment", "Task", "Todo", "list_assignments", "release", "grade",
           "grade_all", "write_autograder",
           "Report", "TaskResult", "GradingError", "ReleaseError", "MarkerError", "find_regions"]


def list_assignments() -> list:
    """The assignments, in course order."""
    return list(ASSIGNMENTS.values())
