"""Judge a submission against prepared cases: the part of grading that needs no answer key.

Standalone on purpose (the standard library and NumPy only, nothing from minigpt): the
teacher's `minigpt assignments grade`, the Gradescope autograder (which carries this file,
`runner.py` and the cases, never the reference code) and a student's `python
.grading/selfcheck.py` (public cases only) all run this same code.

A *cases folder* holds what one assignment is graded on:

    cases.json   {"assignment", "title", "files", "timeout", "tasks": [{"id", "title",
                 "points", "files", "calls", "compares", "judge", "expected", ...}]}
    cases.npz    the arrays: inputs ("<task>|in|<key>") and expected results
                 ("<task>|ref|<key>"), plain arrays (loaded with allow_pickle=False)
    tree/        the released student tree that the submission's files are copied over

Per task, `run_task` copies the tree and the student's files into a fresh folder, starts
`runner.py` there (`python -I -S`, an empty environment, a sandbox, its own process group,
as the user `nobody` where the grader is root and can), waits, kills the whole group, and
only then reads the raw values the student's code returned. Every verdict is computed here,
in the grader's process, from those values and the expected ones: the student's process
never sees an expected value and never says whether it passed.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAX_LINES = 12       # failure lines shown per task
MEMORY_GB = 8.0      # address space of a task's process (the capstone: twice this)
RESULT_LIMIT = 512 * 2 ** 20   # bytes of results read back from a task's process
HERE = Path(__file__).resolve().parent
# packages the student's process may import besides the standard library: NumPy (and
# numpy.libs, its bundled BLAS), tqdm (progress bars in training)
SANDBOX_PACKAGES = ("numpy", "tqdm")


class GradingError(ValueError):
    """A grading request that cannot be carried out (bad paths, no files): a short message."""


# ================================================================== reports

@dataclass
class TaskResult:
    id: str
    title: str
    score: int
    max_score: int
    output: str            # what the student sees (hidden cases without names or values)
    hidden_output: str = ""  # the hidden cases in full (teachers; Gradescope after the due date)
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

    def table(self, hidden: bool = True) -> str:
        """The per-task table; hidden=True shows the hidden cases in full (a teacher's view)."""
        width = max([len(r.id) for r in self.results] + [4])
        lines = [f"{self.assignment}: {self.title}", ""]
        lines += [f"  {'task':<{width}}  points  result"]
        for r in self.results:
            ok = "ok" if r.score == r.max_score else "FAILED"
            lines.append(f"  {r.id:<{width}}  {r.score:>2} / {r.max_score:<2} {ok}")
            if r.score != r.max_score:
                text = r.output
                if hidden and r.hidden_output:
                    text = "\n".join(x for x in (r.output, "in full:", r.hidden_output) if x)
                lines += ["      " + ln for ln in text.splitlines()[:MAX_LINES]]
        lines += ["", f"total: {self.score} / {self.max_score}"]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def gradescope(self) -> dict:
        """Gradescope's results.json: one visible test per task; the details of its hidden
        cases in a test of its own, worth nothing, shown after the due date."""
        tests = []
        for r in self.results:
            tests.append({"name": f"{r.id}: {r.title}", "score": r.score,
                          "max_score": r.max_score, "output": r.output or "passed",
                          "visibility": "visible"})
            if r.hidden_output:
                tests.append({"name": f"{r.id}: hidden cases", "score": 0, "max_score": 0,
                              "output": r.hidden_output, "visibility": "after_due_date"})
        return {"score": self.score, "output": "\n".join(self.notes),
                "visibility": "visible", "stdout_visibility": "hidden", "tests": tests}


def write_json_atomically(path, data: dict) -> None:
    """Write `data` to `path` through a temporary file and a rename: a reader sees the old
    file or the whole new one, never a torn one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_json_path(json_path) -> None:
    """Refuse a --json path that cannot take a file, before any grading starts."""
    if json_path is None:
        return
    p = Path(json_path)
    if p.is_dir():
        raise GradingError(f"--json {p} is a folder; give a file path, e.g. {p / 'results.json'}")
    if not p.parent.is_dir():
        raise GradingError(f"--json {p}: the folder {p.parent} does not exist")


# ================================================================== submissions

def read_submission(path, files) -> tuple[dict, list]:
    """The assignment's files from a submission (a folder or a .zip): ({"minigpt/<f>": bytes},
    notes). Only regular files are taken; a symbolic link is refused with a note naming it.

    In a zip, "minigpt/<f>" may sit under one leading folder (a zipped release folder); a zip
    of bare file names (an older packing command) is matched by file name when that is
    unambiguous."""
    path = Path(path)
    wanted = [f"minigpt/{f}" for f in files]
    notes, found = [], {}
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            members = [m for m in z.infolist() if not m.is_dir()]
            by_name = {}
            for m in members:
                name = m.filename.replace("\\", "/").lstrip("/")
                for w in wanted:
                    if name == w or name.endswith("/" + w):
                        by_name.setdefault(w, m)
            base = {}
            for m in members:
                base.setdefault(m.filename.rsplit("/", 1)[-1], []).append(m)
            for w in wanted:
                m = by_name.get(w)
                if m is None:
                    same = [x for x in wanted if x.rsplit("/", 1)[-1] == w.rsplit("/", 1)[-1]]
                    cands = base.get(w.rsplit("/", 1)[-1], [])
                    if len(same) == 1 and len(cands) == 1 and "/" not in cands[0].filename:
                        m = cands[0]
                        notes.append(f"{w}: taken from the zip's {m.filename!r} (no folders "
                                     "in the zip; pack with the command of your README)")
                if m is None:
                    continue
                if stat.S_ISLNK(m.external_attr >> 16):
                    notes.append(f"{w} is a symbolic link in the zip: submit the file itself")
                    continue
                found[w] = z.read(m)
        return found, notes
    if not path.is_dir():
        raise GradingError(f"{path} is neither a folder nor a zip file (give the folder that "
                           "holds minigpt/, or the zip your README's command makes)")
    for w in wanted:
        p = path / w
        link = next((q for q in [p, *p.parents] if q != path and path in q.parents
                     and q.is_symlink()), None)
        if link is not None:
            notes.append(f"{w}: {link.relative_to(path).as_posix()} is a symbolic link; "
                         "submit the file itself (links are not followed)")
            continue
        if p.is_file():
            found[w] = p.read_bytes()
    return found, notes


# ================================================================== cases

def load_cases(folder) -> tuple[dict, dict]:
    folder = Path(folder)
    meta = json.loads((folder / "cases.json").read_text(encoding="utf-8"))
    with np.load(folder / "cases.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return meta, arrays


def task_arrays(arrays: dict, task_id: str, kind: str) -> dict:
    prefix = f"{task_id}|{kind}|"
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


# ================================================================== comparing

def _get(d, path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return _MISSING
        d = d[p]
    return d


_MISSING = object()


def load_value(v, arrays):
    """A stored result ({"array": key} leaves) with its arrays put back."""
    if isinstance(v, dict) and set(v) == {"array"}:
        return arrays.get(v["array"])
    if isinstance(v, list):
        return [load_value(x, arrays) for x in v]
    if isinstance(v, dict):
        return {k: load_value(x, arrays) for k, x in v.items()}
    return v


def _fmt(x) -> str:
    return f"{x:.6g}" if isinstance(x, (float, np.floating)) else repr(x)


def compare_values(mine, ref, atol, rtol, where="") -> str | None:
    """None when equal within tolerance, else one line saying where and how they differ."""
    if isinstance(ref, np.ndarray) or isinstance(mine, np.ndarray):
        if not isinstance(mine, np.ndarray):
            return f"{where}: expected an array of shape {np.shape(ref)}, got {_short(mine)}"
        if not isinstance(ref, np.ndarray):
            return f"{where}: expected {_short(ref)}, got an array of shape {mine.shape}"
        if mine.shape != ref.shape:
            return f"{where}: shape {mine.shape}, expected {ref.shape}"
        if ref.dtype.kind in "fc" or mine.dtype.kind in "fc":
            if mine.dtype.kind not in "fcbiu":
                return f"{where}: dtype {mine.dtype}, expected {ref.dtype}"
            m, r = mine.astype(np.float64), ref.astype(np.float64)
            if ref.dtype.kind == "f" and mine.dtype != ref.dtype:
                return f"{where}: dtype {mine.dtype}, expected {ref.dtype} (keep the input's dtype)"
            err = np.abs(m - r)
            bad = ~(err <= atol + rtol * np.abs(r))
            bad |= np.isfinite(r) != np.isfinite(m)
            bad &= ~((m == r) & ~np.isfinite(r))  # identical infinities are fine
            if not bad.any():
                return None
            excess = np.where(bad, np.nan_to_num(err - (atol + rtol * np.abs(r)), nan=np.inf,
                                                 posinf=np.inf), -np.inf)
            idx = np.unravel_index(int(np.argmax(excess)), ref.shape) if ref.ndim else ()
            return (f"{where}: wrong at index {tuple(map(int, idx))}: yours {_fmt(m[idx])}, "
                    f"expected {_fmt(r[idx])} ({int(bad.sum())} of {bad.size} elements off)")
        if not np.array_equal(mine, ref):
            diff = np.argwhere(mine != ref) if mine.shape == ref.shape else []
            at = f" first at index {tuple(map(int, diff[0]))}" if len(diff) else ""
            return f"{where}: values differ{at}: yours {_short(mine)}, expected {_short(ref)}"
        return None
    if isinstance(ref, float) and isinstance(mine, (int, float)) and not isinstance(mine, bool):
        if abs(mine - ref) <= atol + rtol * abs(ref) or (mine == ref):
            return None
        return f"{where}: yours {_fmt(mine)}, expected {_fmt(ref)}"
    if isinstance(ref, list) and isinstance(mine, list):
        if len(mine) != len(ref):
            return f"{where}: {len(mine)} items, expected {len(ref)}: yours {_short(mine)}, " \
                   f"expected {_short(ref)}"
        for i, (a, b) in enumerate(zip(mine, ref)):
            msg = compare_values(a, b, atol, rtol, f"{where}[{i}]")
            if msg:
                return msg
        return None
    if isinstance(ref, dict) and isinstance(mine, dict):
        for k in ref:
            if k not in mine:
                return f"{where}: missing {k!r}"
            msg = compare_values(mine[k], ref[k], atol, rtol, f"{where}[{k!r}]")
            if msg:
                return msg
        return None
    if mine != ref:
        return f"{where}: yours {_short(mine)}, expected {_short(ref)}"
    return None


def _short(x, n=120) -> str:
    if isinstance(x, np.ndarray):
        text = np.array2string(x, threshold=12, precision=4)
    else:
        text = json.dumps(x, default=repr) if not isinstance(x, str) else repr(x)
    return text if len(text) <= n else text[:n - 3] + "..."


def gradcheck_line(key, name, analytic, numeric, atol, rtol) -> str | None:
    """The student's gradient against central differences of the *reference* forward (the
    grader computed them): None, or gradcheck's message for the worst element."""
    if not isinstance(analytic, np.ndarray) or analytic.shape != numeric.shape:
        return None  # the gradient comparison already says what is wrong with it
    a = analytic.astype(np.float64)
    err = np.abs(a - numeric)
    bad = ~(err <= atol + rtol * np.abs(numeric))
    if not bad.any():
        return None
    idx = np.unravel_index(int(np.argmax(np.where(bad, np.nan_to_num(err, nan=np.inf), -1))),
                           numeric.shape)
    rel = float(err[idx] / max(abs(numeric[idx]), 1e-12))
    return (f"{key}: gradcheck failed for {name} (shape {tuple(numeric.shape)}) at index "
            f"{tuple(map(int, idx))}: analytic {a[idx]:.8g}, numeric {numeric[idx]:.8g}, "
            f"relative error {rel:.3g} (atol={atol:g}, rtol={rtol:g}; central differences of "
            "the reference forward)")


def judge_task(task: dict, mine_calls: dict, mine_arrays: dict, ref_arrays: dict,
               in_arrays: dict) -> tuple[list, list]:
    """(public failure lines, hidden failure lines in full). A hidden case's line for the
    student is made by `public_lines` (no name, no values)."""
    public, hidden = [], []
    reported = set()
    expected = task["expected"]
    labels = {c["key"]: c.get("hidden", False) for c in task["calls"]}
    for c in task["compares"]:
        key = c["key"]
        out = hidden if labels.get(key) else public
        res = mine_calls.get(key, {})
        if "error" in res:
            if key not in reported:
                reported.add(key)
                out.append(f"{key}: your code raised {res['error']}\n"
                           + indent(res.get("traceback", "")))
            continue
        if key in reported:
            continue
        path = tuple(c["path"])
        if path[0] == "numeric":  # gradcheck against the reference forward's differences
            name = path[1]
            mine = load_value(_get(res, ("grads", name)), mine_arrays)
            numeric = ref_arrays.get(_get(expected.get(key, {}), path).get("array"))
            msg = gradcheck_line(key, name, mine, numeric, c["atol"], c["rtol"])
            if msg:
                out.append(msg)
            continue
        ref = _get(expected.get(key, {}), path)
        if ref is _MISSING:
            raise RuntimeError(f"the reference produced no {path} for {key}")
        mine = _get(res, path)
        if mine is _MISSING:
            out.append(f"{key}: {c['what']} missing (no gradient flowed to it?)")
            continue
        mine, ref = load_value(mine, mine_arrays), load_value(ref, ref_arrays)
        if mine is None and ref is not None:
            out.append(f"{key}: {c['what']} is None (your backward returned no gradient "
                       "for this input)")
            continue
        msg = compare_values(mine, ref, c["atol"], c["rtol"], f"{key}: {c['what']}")
        if msg:
            out.append(msg)
    if task.get("judge"):
        name, args = task["judge"]
        public.extend(JUDGES[name](args, mine_calls, mine_arrays, ref_arrays, in_arrays))
    if task.get("forward") and (public or hidden) and _forward_differs(task, mine_calls,
                                                                       mine_arrays, ref_arrays):
        public.append(f"(your forward output differs from the expected one too: the backward "
                      f"runs on what your forward saved; fix {task['forward']} first)")
    return public, hidden


def _forward_differs(task, mine_calls, mine_arrays, ref_arrays) -> bool:
    """Whether the student's forward outputs in a backward task's calls are off (the
    backward is graded on its own; this only explains a failure)."""
    for key, ref in task["expected"].items():
        res = mine_calls.get(key, {})
        if "out" not in ref or "out" not in res:
            continue
        mine = load_value(res["out"], mine_arrays)
        expected = load_value(ref["out"], ref_arrays)
        if compare_values(mine, expected, 1e-5, 1e-4) is not None:
            return True
    return False


def public_lines(task: dict, hidden: list) -> list:
    """What a student is shown of failing hidden cases: which check failed, not the case."""
    order = [c["key"] for c in task["calls"] if c.get("hidden")]
    out = []
    for line in hidden:
        key = next((k for k in order if line.startswith(k + ":")), None)
        n = order.index(key) + 1 if key else 0
        what = line[len(key) + 1:].split(":", 1)[0].strip() if key else "failed"
        if "raised" in what or "your code raised" in line.split("\n", 1)[0]:
            first = line.split("\n", 1)[0]
            what = "your code raised " + first.split("raised ", 1)[1].split(":", 1)[0]
        elif what.startswith("gradcheck"):
            what = "gradcheck failed"
        else:
            what = f"{what} is wrong"
        out.append(f"hidden case {n}: {what}")
    return out


def indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


# ------------------------------------------------------------------ named judges
# tasks whose verdict is a rule rather than agreement with expected values

def _error(res, key):
    return [f"{key}: your code raised {res['error']}\n" + indent(res.get("traceback", ""))]


def judge_dropout(args, mine, arrays, _ref, inputs):
    out = []
    for call in args["calls"]:
        key, q = call["key"], call["p"]
        res = mine.get(key, {})
        if "error" in res:
            out += _error(res, key)
            continue
        x, g = inputs[call["x"]], inputs[call["upstream"]]
        y = load_value(res.get("out"), arrays)
        dx = load_value(res.get("grads", {}).get("x"), arrays)
        if not isinstance(y, np.ndarray) or y.shape != x.shape or y.dtype != x.dtype:
            out.append(f"{key}: the output should be an array like x {x.shape} {x.dtype}")
            continue
        tol = 1e-5 if x.dtype == np.float32 else 1e-12
        kept = np.abs(y) > 0
        if not np.allclose(y[kept], (x / (1 - q))[kept], rtol=tol, atol=tol):
            out.append(f"{key}: kept elements should be x / (1 - p)")
            continue
        frac = 1 - kept.mean()
        if x.size > 1000 and abs(frac - q) > 0.03:
            out.append(f"{key}: {frac:.3f} of the elements were dropped, expected about {q}")
        if not isinstance(dx, np.ndarray) or dx.shape != x.shape:
            out.append(f"{key}: no gradient of x of shape {x.shape}")
        elif not np.allclose(dx, g * np.where(kept, 1 / (1 - q), 0), rtol=tol, atol=tol):
            out.append(f"{key}: gradient of `x` should be g * mask / (1 - p), the mask "
                       "of the forward pass")
    return out


def judge_gradcheck_probe(args, mine, _arrays, _ref, inputs):
    res = mine.get(args["key"], {})
    if "error" in res:
        return _error(res, args["key"])
    value = res.get("value") if isinstance(res.get("value"), dict) else {}
    out = []
    if value.get("correct") != "True":
        out.append("gradcheck on y = x^3 * w with a correct backward should return True; "
                   f"it gave: {value.get('correct')}")
    changed = value.get("changed", [1])
    if not isinstance(changed, list) or any(d != 0 for d in changed):
        out.append("after gradcheck the inputs x and w differ from before: restore every "
                   "element you perturb")
    if value.get("coarse") != "True":
        out.append("gradcheck with eps=1e-3 and a correct backward should return True "
                   "(central differences are accurate to ~eps^2; one-sided ones only to "
                   f"~eps); it gave: {value.get('coarse')}")
    wrong = str(value.get("wrong", ""))
    at = str(tuple(args["wrong_at"]))
    if not (wrong.startswith("raised: ") and "for x" in wrong and at in wrong):
        out.append(f"gradcheck on y = x^3 * w with dx wrong by {args['delta']} at index {at} "
                   f"should raise GradcheckError naming x at index {at}; it gave: {wrong}")
    else:  # the value it reports must be the true derivative there (computed here)
        x, w = inputs[args["x"]], inputs[args["w"]]
        upstream = np.random.default_rng(0).standard_normal(x.shape)  # gradcheck's, seed 0
        i = tuple(args["wrong_at"])
        true = float(3 * x[i] ** 2 * w[i[-1]] * upstream[i])
        found = re.search(r"numeric (\S+?),", wrong)
        try:
            numeric = float(found.group(1)) if found else None
        except ValueError:
            numeric = None
        if numeric is None or not abs(numeric - true) <= 1e-6 + 1e-4 * abs(true):
            out.append(f"gradcheck's numeric derivative of x at {at} should be {true:.8g} "
                       f"(d/dx of sum(y * G) there); it reported: {wrong}")
    return out


def judge_training(args, mine, arrays, ref_arrays, _inputs):
    """The capstone: the student's training losses must follow the reference curve (which
    their process never sees) step by step, and its validation loss reach the target."""
    res = mine.get(args["key"], {})
    if "error" in res:
        return [f"training raised {res['error']}\n" + indent(res.get("traceback", ""))]
    value = res.get("value") if isinstance(res.get("value"), dict) else {}
    losses = load_value(value.get("losses"), arrays)
    if args["losses"] is None:  # a student's self-check: no reference curve, the target only
        val = float(losses[-1]) if isinstance(losses, np.ndarray) and losses.size else None
        if val is None or not val < args["threshold"]:
            return [f"validation loss {val} after {args['steps']} steps: needs < "
                    f"{args['threshold']} (the graded run must also follow the reference "
                    "loss curve)"]
        return []
    ref = ref_arrays[args["losses"]]
    if not isinstance(losses, np.ndarray) or losses.shape != ref.shape:
        return [f"training returned {_short(losses)} as its losses, expected {ref.size} "
                "training losses and the validation losses"]
    losses = losses.astype(np.float64)
    steps = args["steps"]
    tol = args["atol"] + args["rtol"] * np.abs(ref)
    off = ~(np.abs(losses - ref) <= tol)
    if off.any():
        i = int(np.argmax(off))
        where = f"step {i + 1} (training loss)" if i < steps else \
            f"the validation loss after step {args['eval_steps'][i - steps]}"
        return [f"the loss curve leaves the reference's at {where}: yours {losses[i]:.4f}, "
                f"reference {ref[i]:.4f} (tolerance {tol[i]:.3f}); check the ops of the "
                "tasks that failed above, or run the layers, attention and optim checks"]
    val = float(losses[-1])
    if not val < args["threshold"]:
        return [f"validation loss {val:.4f} after {steps} steps: needs < {args['threshold']}"]
    return []


JUDGES = {"dropout": judge_dropout, "gradcheck_probe": judge_gradcheck_probe,
          "training": judge_training}


# ================================================================== running one task

def site_dirs() -> list[str]:
    """The folders of the packages the student's process may import (not site-packages
    itself: an installed minigpt would be there)."""
    import importlib.util
    out = []
    for name in SANDBOX_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec and spec.submodule_search_locations:
            out.extend(str(Path(p).resolve()) for p in spec.submodule_search_locations)
        elif spec and spec.origin:
            out.append(str(Path(spec.origin).resolve()))
    import numpy
    libs = Path(numpy.__file__).resolve().parent.parent / "numpy.libs"
    if libs.is_dir():
        out.append(str(libs))
    return out


def stdlib_dirs() -> list[str]:
    paths = sysconfig.get_paths()
    out = []
    for key in ("stdlib", "platstdlib"):
        d = paths.get(key)
        if d and str(Path(d).resolve()) not in out:
            out.append(str(Path(d).resolve()))
    return out


def _sandbox_user():
    """(uid, gid) of `nobody` when this process is root and `nobody` can run this Python and
    NumPy (every folder on the way searchable by others), else None: same user."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    try:
        import pwd
        entry = pwd.getpwnam("nobody")
    except (ImportError, KeyError):
        return None
    needed = [Path(sys.executable).resolve(), *map(Path, stdlib_dirs() + site_dirs())]
    for p in needed:
        for q in [p, *p.parents]:
            try:
                mode = q.stat().st_mode
            except OSError:
                return None
            if q.is_dir() and not mode & stat.S_IXOTH or not mode & stat.S_IROTH:
                return None
    return entry.pw_uid, entry.pw_gid


def _give_to(path: Path, user) -> None:
    if user is None:
        return
    for p in [path, *path.rglob("*")]:
        os.chown(p, *user, follow_symlinks=False)


def run_task(task: dict, tree: Path, student: dict, work: Path, arrays_in: dict,
             timeout: float, memory_gb: float | None = None, heavy: bool = False) -> dict:
    """Run one task's calls on the tree with the student's files: {"calls", "arrays",
    "stdout", "stderr", "returncode", "timed_out", "seconds"}."""
    jobdir = Path(tempfile.mkdtemp(prefix="task-", dir=work))
    own = jobdir / "tree"
    shutil.copytree(Path(tree) / "minigpt", own / "minigpt", symlinks=False,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    site = jobdir / "site"  # the packages the sandbox may import, and nothing else
    site.mkdir()
    for d in site_dirs():
        (site / Path(d).name).symlink_to(d)
    (jobdir / "tmp").mkdir()
    for rel, data in student.items():
        dst = own / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_symlink():
            dst.unlink()
        dst.write_bytes(data)
    shutil.copy(HERE / "runner.py", jobdir / "runner.py")
    memory_gb = memory_gb or (2 * MEMORY_GB if heavy else MEMORY_GB)
    job = {"tree": str(own), "site": site_dirs(), "stdlib": stdlib_dirs(),
           "calls": task["calls"], "trusted": task.get("trusted", {}),
           "memory_bytes": int(memory_gb * 2 ** 30)}
    (jobdir / "job.json").write_text(json.dumps(job), encoding="utf-8")
    np.savez(jobdir / "inputs.npz", **arrays_in)
    user = _sandbox_user()
    if user is not None:
        os.chmod(work, 0o711)
        _give_to(jobdir, user)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = str(cores or 1) if heavy else "1"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(jobdir), "LANG": "C.UTF-8",
           "TMPDIR": str(jobdir / "tmp"),
           "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads,
           "MKL_NUM_THREADS": threads, "MINIGPT_OPS": "reference", "PYTHONHASHSEED": "0"}
    extra = {"user": user[0], "group": user[1], "extra_groups": []} if user else {}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-I", "-S", str(jobdir / "runner.py"), str(jobdir)],
                            cwd=jobdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True, **extra)
    timed_out = False
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(proc)
        stdout, stderr = proc.communicate()
    kill_group(proc)  # whatever it started is gone before its results are read
    out = {"calls": {}, "arrays": {}, "stdout": stdout.decode("utf-8", "replace"),
           "stderr": stderr.decode("utf-8", "replace"), "returncode": proc.returncode,
           "timed_out": timed_out, "seconds": time.perf_counter() - t0}
    result = jobdir / "result.npz"
    if not timed_out and result.is_file() and not result.is_symlink() \
            and result.stat().st_size <= RESULT_LIMIT:
        try:
            with np.load(result, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(arrays.pop("__json__").tobytes().decode("utf-8"))
            out["calls"] = meta.get("calls", {}) if isinstance(meta, dict) else {}
            out["arrays"] = arrays
        except Exception as e:  # a damaged result is the student's process's doing
            out["stderr"] += f"\n(the results could not be read: {type(e).__name__})"
    shutil.rmtree(jobdir, ignore_errors=True)
    return out


def kill_group(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    except OSError:
        proc.kill()


_PROGRESS = re.compile(r"^progress: (.*)$")


def verdict(task: dict, run: dict, ref_arrays: dict, in_arrays: dict, timeout: float,
            memory_gb: float | None = None, heavy: bool = False) -> tuple:
    """(score, student-facing output, hidden output in full) of one task's run."""
    memory_gb = memory_gb or (2 * MEMORY_GB if heavy else MEMORY_GB)
    hint = (f"(MemoryError: a task may use at most {memory_gb:g} GiB, `--memory-gb`; an array "
            "far larger than the inputs? check the shapes of what you allocate)")
    if run["timed_out"]:
        progress = [m.group(1) for m in map(_PROGRESS.match, run["stderr"].splitlines()) if m]
        where = f"; it got to {progress[-1]}" if progress else ""
        return 0, (f"timed out after {timeout:g} s{where} (an endless loop? the other tasks "
                   "were still graded)"), ""
    if not run["calls"]:
        tail = [ln for ln in run["stderr"].strip().splitlines()
                if not _PROGRESS.match(ln)][-6:]
        more = [hint] if any("MemoryError" in line for line in tail) else []
        return 0, ("the grading process ended (exit code "
                   f"{run['returncode']}) before reporting:\n" + "\n".join(tail + more)), ""
    notes = []
    printed = run["stdout"].strip()
    if printed:
        first = printed.splitlines()[0]
        notes.append(f"(your code printed {len(printed.splitlines())} line(s), first: "
                     f"{first[:100]!r}; printing does not change the grade)")
    public, hidden = judge_task(task, run["calls"], run["arrays"], ref_arrays, in_arrays)
    # a NotImplementedError says nothing about a case: those lines are public, once each
    unimplemented = [f for f in hidden if "raised NotImplementedError" in f]
    hidden = [f for f in hidden if "raised NotImplementedError" not in f]
    public = dedupe(public + unimplemented)
    if public or hidden:
        if any("MemoryError" in f for f in public + hidden):
            notes.insert(0, hint)
        shown = public + public_lines(task, hidden)
        return 0, "\n".join(shown + notes), "\n".join(hidden)
    return task["points"], "\n".join(notes), ""


def dedupe(failures):
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


# ================================================================== grading a submission

def grade_with_cases(meta: dict, arrays: dict, tree: Path, submission, *, json_path=None,
                     timeout: float | None = None, jobs: int | None = None, tasks=None,
                     memory_gb: float | None = None, broken_ok: bool = True) -> Report:
    """Grade `submission` (a folder or a zip) on prepared cases; write Gradescope's JSON
    atomically to json_path once every task's process group is gone."""
    check_json_path(json_path)
    if tasks:
        unknown = sorted(set(tasks) - {t["id"] for t in meta["tasks"]})
        if unknown:
            raise GradingError(f"assignment {meta['assignment']} has no task "
                               f"{', '.join(unknown)}; its tasks: "
                               f"{', '.join(t['id'] for t in meta['tasks'])}")
    report = Report(meta["assignment"], meta["title"])
    student, notes = read_submission(submission, meta["files"])
    report.notes += notes
    for f in meta["files"]:
        if f"minigpt/{f}" not in student and not any(n.startswith(f"minigpt/{f}")
                                                     for n in notes):
            report.notes.append(f"minigpt/{f} is not in the submission: its tasks use the "
                                "released file (they score 0)")
    if not student:
        raise GradingError(f"{submission} has none of the files of assignment "
                           f"{meta['assignment']} ({', '.join('minigpt/' + f for f in meta['files'])})"
                           + (f"; {'; '.join(notes)}" if notes else ""))
    broken = {}
    for rel, data in list(student.items()):
        try:
            compile(data, rel, "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as e:
            line = f" line {e.lineno}" if getattr(e, "lineno", None) else ""
            broken[rel[len("minigpt/"):]] = f"{rel} does not compile ({line.strip() or 'syntax'}" \
                f"): {type(e).__name__}: {getattr(e, 'msg', e)}"
            del student[rel]
    selected = [t for t in meta["tasks"] if not tasks or t["id"] in tasks]

    with tempfile.TemporaryDirectory(prefix="minigpt-grade-") as work:
        work = Path(work)

        def one(task):
            why = [broken[f] for f in sorted(task["files"]) if f in broken]
            if why:
                return TaskResult(task["id"], task["title"], 0, task["points"], why[0])
            heavy = bool(task.get("heavy"))
            limit = task.get("timeout") or timeout or meta.get("timeout", 60.0)
            if timeout is not None:
                limit = timeout
            in_arrays = task_arrays(arrays, task["id"], "in")
            run = run_task(task, tree, student, work, in_arrays, limit, memory_gb, heavy)
            score, output, hidden = verdict(task, run, task_arrays(arrays, task["id"], "ref"),
                                            in_arrays, limit, memory_gb, heavy)
            return TaskResult(task["id"], task["title"], score, task["points"], output, hidden,
                              run["seconds"])

        jobs = jobs or max(1, min(len(selected), os.cpu_count() or 1))
        with ThreadPoolExecutor(jobs) as pool:
            report.results = list(pool.map(one, selected))
    if json_path:
        write_json_atomically(json_path, report.gradescope())
    return report


def grade_folder(cases, submission, tree=None, **kw) -> Report:
    """Grade with a cases folder (a Gradescope package or a release's public checks); the
    submission's files go over `tree` (default: the folder's tree/)."""
    cases = Path(cases)
    meta, arrays = load_cases(cases)
    return grade_with_cases(meta, arrays, Path(tree) if tree else cases / "tree", submission,
                            **kw)


# ================================================================== as a program

def main(argv=None) -> int:
    """python judging.py CASES SUBMISSION [--json FILE] [--task ID] [--timeout S] [--public]"""
    import argparse
    p = argparse.ArgumentParser(description="grade a submission on prepared cases")
    p.add_argument("cases", help="the folder holding cases.json, cases.npz and tree/")
    p.add_argument("submission", help="the folder holding minigpt/, or a zip of it")
    p.add_argument("--json", default=None, help="write Gradescope's results.json here")
    p.add_argument("--task", action="append", default=None, help="only this task (repeatable)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per task")
    p.add_argument("--tree", default=None, help="the tree the files go over (default: CASES/tree)")
    args = p.parse_args(argv)
    try:
        report = grade_folder(args.cases, args.submission, tree=args.tree, json_path=args.json,
                              tasks=args.task, timeout=args.timeout)
    except GradingError as e:
        print(f"grading: error: {e}", file=sys.stderr)
        if args.json:
            try:
                write_json_atomically(args.json, {"score": 0, "output": f"grading failed: {e}",
                                                  "tests": []})
            except (OSError, GradingError):
                pass
        return 2
    print(report.table(hidden=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
