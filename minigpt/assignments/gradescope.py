"""The Gradescope autograder of an assignment: `minigpt assignments gradescope NAME --out
autograder.zip`.

    setup.sh          installs the pinned packages the grading needs (NumPy, tqdm): not
                      minigpt, whose reference code is the answer key
    run_autograder    grades /autograder/submission into /autograder/results/results.json
                      (the root is $MINIGPT_AUTOGRADER_ROOT when set: tests use a fake tree)
    grading/          cases.json + cases.npz (every case's inputs and expected values,
                      hidden ones included), judging.py and runner.py, and tree/: the
                      released student tree the submission's files are copied over

Nothing in the container hands a student the answer: the expected values are data, the
student's process runs as `nobody` (Gradescope runs the autograder as root) in a sandbox
that cannot read grading/, and the tree holds no reference code of the tasks.
"""
from __future__ import annotations

import importlib.metadata
import io
import stat
import sys
import zipfile
from pathlib import Path

from .cases import cases_bytes, prepare
from .manifest import get
from .release import build

SETUP = """#!/usr/bin/env bash
# Gradescope runs this once when it builds the autograder image.
set -euo pipefail
if ! command -v python3 >/dev/null; then
    apt-get update && apt-get install -y python3 python3-pip
fi
python3 -m pip install --no-cache-dir {pins} || \\
    python3 -m pip install --no-cache-dir --break-system-packages {pins}
"""

RUN = """#!/usr/bin/env bash
# Gradescope runs this for every submission; {name}: {title}
set -uo pipefail
ROOT="${{MINIGPT_AUTOGRADER_ROOT:-/autograder}}"
PY="${{MINIGPT_AUTOGRADER_PYTHON:-python3}}"
chmod -R go-rwx "$ROOT/source/grading/cases.json" "$ROOT/source/grading/cases.npz" 2>/dev/null
"$PY" "$ROOT/source/grading/judging.py" "$ROOT/source/grading" "$ROOT/submission" \\
    --json "$ROOT/results/results.json"
"""


def pins() -> list[str]:
    """The packages the grading runs on, at the versions this machine has (the cases were
    computed here)."""
    out = []
    for name in ("numpy", "tqdm"):
        try:
            out.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(name)
    return out


def build_autograder(name: str, capstone: dict | None = None) -> dict:
    """{path inside the zip: bytes}."""
    assignment = get(name)
    meta, arrays = prepare(assignment, capstone=capstone)
    files = {"setup.sh": SETUP.format(pins=" ".join(pins())).encode(),
             "run_autograder": RUN.format(name=assignment.name, title=assignment.title).encode(),
             "README.md": (f"Gradescope autograder of `{assignment.name}` ({assignment.points} "
                           f"points), made by `minigpt assignments gradescope`. Python "
                           f"{sys.version_info.major}.{sys.version_info.minor} computed its "
                           "expected values.\n").encode()}
    for rel, data in cases_bytes(meta, arrays).items():
        files[f"grading/{rel}"] = data
    for rel, data in build(assignment, with_solutions=False).items():
        if rel.startswith("minigpt/"):
            files[f"grading/tree/{rel}"] = data
    return files


def write_autograder(name: str, out, force: bool = False, capstone: dict | None = None) -> Path:
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name, e.g. {out / 'autograder.zip'}")
    if out.exists() and not force:
        raise ValueError(f"{out} exists; choose a new name (or --force to replace it)")
    files = build_autograder(name, capstone)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for rel in sorted(files):
            info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            executable = rel in ("setup.sh", "run_autograder")
            info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
            z.writestr(info, files[rel])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(out)
    return out
