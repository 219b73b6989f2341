"""`minigpt assignments list | release | grade`: the classroom commands.

    minigpt assignments list
    minigpt assignments release NAME --out DIR [--with-solutions] [--force]
    minigpt assignments grade NAME DIR [--json FILE] [--timeout SECONDS] [--jobs N] [--memory-gb G]
"""
from __future__ import annotations

import sys

from .. import checks


def cmd_list(args) -> int:
    from . import list_assignments
    for a in list_assignments():
        print(f"{a.name:<11} {a.points:>3} points  {len(a.tasks):>2} tasks  {a.title}")
        for t in a.tasks:
            print(f"    {t.id:<32} {t.points:>2}  {t.title}")
        print(f"    files: {', '.join('minigpt/' + f for f in a.files)}")
    return 0


def cmd_release(args) -> int:
    from .release import pack_command, release
    from .manifest import get
    out = release(args.name, args.out, with_solutions=args.with_solutions, force=args.force)
    a = get(args.name)
    kind = "with solutions" if args.with_solutions else "student version"
    print(f"released {args.name} ({kind}, {len(a.tasks)} tasks, {a.points} points) to {out}")
    print(f"students edit: {', '.join('minigpt/' + f for f in a.files)}")
    print(f"students submit with: (cd {out} && {pack_command(a)})")
    return 0


def cmd_grade(args) -> int:
    from .grader import grade
    report = grade(args.name, args.dir, json_path=args.json, timeout=args.timeout,
                   jobs=args.jobs, tasks=args.task, memory_gb=args.memory_gb)
    print(report.table())
    if args.json:
        print(f"results: {args.json}")
    return 0


def add_commands(sub) -> None:
    """Add `minigpt assignments ...` to the minigpt command's sub-parsers."""
    p = sub.add_parser("assignments", help="classroom assignments: list, release, grade")
    asub = p.add_subparsers(dest="assignments_command", required=True)

    q = asub.add_parser("list", help="the assignments, their tasks and points")
    q.set_defaults(func=_guarded(cmd_list))

    q = asub.add_parser("release", help="write an assignment's student tree")
    q.add_argument("name")
    q.add_argument("--out", required=True, help="a new (or empty) directory")
    q.add_argument("--with-solutions", action="store_true",
                   help="keep the solutions in (a teacher's copy; tests the grader)")
    q.add_argument("--force", action="store_true", help="replace an earlier release in --out")
    q.set_defaults(func=_guarded(cmd_release))

    q = asub.add_parser("grade", help="grade a student's tree: a table, or Gradescope JSON")
    q.add_argument("name")
    q.add_argument("dir", help="the student's tree (the folder holding minigpt/)")
    q.add_argument("--json", default=None, help="also write Gradescope's results.json here")
    q.add_argument("--timeout", type=checks.argparse_type(checks.positive_float), default=None,
                   help="seconds per task (default: the assignment's, 60; capstone 3600)")
    q.add_argument("--jobs", type=checks.argparse_type(checks.positive_int), default=None,
                   help="tasks graded at once (default: cores)")
    q.add_argument("--memory-gb", type=checks.argparse_type(checks.positive_float), default=None,
                   help="address space each task's process may use (default 8; the capstone 16)")
    q.add_argument("--task", action="append", default=None, metavar="ID",
                   help="grade only this task (repeatable; default: all)")
    q.set_defaults(func=_guarded(cmd_grade))

    from .notebooks import add_command as add_notebooks_command  # release-notebooks
    add_notebooks_command(asub, _guarded)


def _guarded(fn):
    def run(args) -> int:
        from .grader import GradingError
        from .markers import MarkerError
        from .release import ReleaseError
        try:
            return fn(args)
        except (GradingError, ReleaseError, MarkerError, ImportError) as e:
            print(f"minigpt assignments: error: {e}", file=sys.stderr)
            return 2
    return run
