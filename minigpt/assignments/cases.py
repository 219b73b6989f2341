"""An assignment's graded cases, computed with the real library: inputs and expected values.

    prepare(assignment)            -> (meta, arrays): every task's calls, inputs, expected
                                      results and reference-forward central differences
    prepare(assignment, public_only=True)   the same without the hidden cases (and without
                                      the capstone's reference curve): a release's checks
    write_cases(folder, meta, arrays)       cases.json + cases.npz, what judging.py reads

This is the only place where the answer key runs during grading; what it produces is plain
JSON and arrays, so the Gradescope package and a student's self-check carry values, never
the reference code.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from .check import expected_results, to_case
from .manifest import Assignment

HERE = Path(__file__).resolve().parent
FORMAT = 1


def prepare(assignment: Assignment, tasks=None, capstone: dict | None = None,
            public_only: bool = False) -> tuple[dict, dict]:
    """(cases.json's content, cases.npz's arrays) of `assignment`.

    tasks: only these task ids; capstone: settings for checks.capstone (tests: a tiny run)."""
    meta = {"format": FORMAT, "assignment": assignment.name, "title": assignment.title,
            "files": list(assignment.files), "timeout": assignment.timeout,
            "public_only": public_only, "tasks": []}
    arrays = {}
    for task in assignment.tasks:
        if tasks and task.id not in tasks:
            continue
        check = task.check(capstone) if task.id.startswith("capstone.") else task.check()
        own = {t.file for t in assignment.todos if t.task == task.id} or set(assignment.files)
        case, arr = to_case(task, check, expected_results(check, public_only), own,
                            public_only)
        meta["tasks"].append(case)
        arrays.update(arr)
    return meta, arrays


def write_cases(folder, meta: dict, arrays: dict) -> Path:
    """cases.json and cases.npz in `folder` (created), with judging.py and runner.py beside
    them, so the folder grades on its own: `python judging.py FOLDER SUBMISSION`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in cases_bytes(meta, arrays).items():
        (folder / name).write_bytes(data)
    return folder


def npz_bytes(arrays: dict) -> bytes:
    """An .npz (np.load reads it) with fixed timestamps: the same arrays, the same bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with z.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(arrays[key]), allow_pickle=False)
    return buf.getvalue()


def cases_bytes(meta: dict, arrays: dict) -> dict:
    """{name: bytes} of a cases folder."""
    out = {"cases.json": (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode(),
           "cases.npz": npz_bytes(arrays)}
    for name in ("judging.py", "runner.py"):
        out[name] = (HERE / name).read_bytes()
    return out
