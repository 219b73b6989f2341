"""`minigpt assignments list | release | grade`: the classroom commands.

    minigpt assignments list
    minigpt assignments release NAME --out DIR [--with-solutions] [--force]
    minigpt assignments grade NAME SUBMISSION [--json FILE] [--timeout SECONDS] [--jobs N]
                                              [--memory-gb G] [--task ID] [--long]
    minigpt assignments grade NAME SUBMISSIONS_DIR --all [--csv FILE] [--json-dir DIR]
    minigpt assignments gradescope NAME --out autograder.zip [--force]
"""
from __future__ import annotations

import sys

from .. import checks


def cmd_list(args) -> int:
    from ..assignments import list_assignments
    for a in list_assignments():
        print(f"{a.name:<11} {a.points:>3} points  {len(a.tasks):>2} tasks  {a.title}")
        for t in a.tasks:
            print(f"    {t.id:<32} {t.points:>2}  {t.title}")
        print(f"    files: {', '.join('minigpt/' + f for f in a.files)}")
    return 0


def cmd_release(args) -> int:
    from ..assignments.release import pack_command, release
    from ..assignments.manifest import get
    out = release(args.name, args.out, with_solutions=args.with_solutions, force=args.force)
    a = get(args.name)
    kind = "with solutions" if args.with_solutions else "student version"
    print(f"released {args.name} ({kind}, {len(a.tasks)} tasks, {a.points} points) to {out}")
    print(f"students edit: {', '.join('minigpt/' + f for f in a.files)}")
    print(f"students submit with: (cd {out} && {pack_command(a)})")
    return 0


def cmd_grade(args) -> int:
    from ..assignments.checks import CAPSTONE_LONG
    from ..assignments.grader import GradingError, Report, grade, grade_all
    capstone = None
    if args.long:
        if args.name != "capstone":
            raise GradingError("--long is the capstone's long run; other assignments have none")
        capstone = CAPSTONE_LONG
    if args.all:
        if args.json:
            raise GradingError("--json is for one submission; with --all use --json-dir DIR")
        results = grade_all(args.name, args.submission, csv_path=args.csv, jobs=args.jobs,
                            timeout=args.timeout, capstone=capstone, tasks=args.task,
                            memory_gb=args.memory_gb, json_dir=args.json_dir)
        for student, rep in results:
            if isinstance(rep, Report):
                print(f"{student:<24} {rep.score:>4} / {rep.max_score}")
            else:
                print(f"{student:<24} not graded: {rep}")
        if args.csv:
            print(f"grades: {args.csv}")
        return 0
    if args.csv or args.json_dir:
        raise GradingError("--csv and --json-dir go with --all (a folder of submissions)")
    report = grade(args.name, args.submission, json_path=args.json, timeout=args.timeout,
                   jobs=args.jobs, tasks=args.task, memory_gb=args.memory_gb, capstone=capstone)
    print(report.table())
    if args.json:
        print(f"results: {args.json}")
    return 0


def cmd_gradescope(args) -> int:
    from ..assignments.gradescope import write_autograder
    from ..assignments.manifest import get
    out = write_autograder(args.name, args.out, force=args.force)
    a = get(args.name)
    print(f"wrote {out}: the Gradescope autograder of {args.name} ({len(a.tasks)} tasks, "
          f"{a.points} points); upload it as the assignment's autograder (a zip)")
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

    q = asub.add_parser("grade", help="grade a submission (or a class folder with --all)")
    q.add_argument("name")
    q.add_argument("submission", help="the student's folder (holding minigpt/) or zip; with "
                   "--all: a folder with one such folder or zip per student")
    q.add_argument("--all", action="store_true", help="grade every submission in the folder")
    q.add_argument("--csv", default=None, help="with --all: one row per student here")
    q.add_argument("--json-dir", default=None, help="with --all: each student's results.json")
    q.add_argument("--long", action="store_true",
                   help="capstone: the long run (the demo model, 1000 steps, < 2.0 nats/char)")
    q.add_argument("--json", default=None, help="also write Gradescope's results.json here")
    q.add_argument("--timeout", type=checks.argparse_type(checks.positive_float), default=None,
                   help="seconds per task (default: the assignment's, 60; capstone 540)")
    q.add_argument("--jobs", type=checks.argparse_type(checks.positive_int), default=None,
                   help="tasks (with --all: students) graded at once (default: cores)")
    q.add_argument("--memory-gb", type=checks.argparse_type(checks.positive_float), default=None,
                   help="address space each task's process may use (default 8; the capstone 16)")
    q.add_argument("--task", action="append", default=None, metavar="ID",
                   help="grade only this task (repeatable; default: all)")
    q.set_defaults(func=_guarded(cmd_grade))

    q = asub.add_parser("gradescope", help="write an assignment's Gradescope autograder zip")
    q.add_argument("name")
    q.add_argument("--out", required=True, help="the zip to write, e.g. autograder.zip")
    q.add_argument("--force", action="store_true", help="replace an existing --out file")
    q.set_defaults(func=_guarded(cmd_gradescope))

    from ..assignments.notebooks import add_command as add_notebooks_command  # release-notebooks
    add_notebooks_command(asub, _guarded)


def _guarded(fn):
    def run(args) -> int:
        from ..assignments.grader import GradingError
        from ..assignments.markers import MarkerError
        from ..assignments.release import ReleaseError
        try:
            return fn(args)
        except (GradingError, ReleaseError, MarkerError, ImportError, ValueError) as e:
            print(f"minigpt assignments: error: {e}", file=sys.stderr)
            return 2
    return run
