"""How one task is checked: the calls to make, and how to compare the student's results.

A task's check builds a `Check`: a list of calls (an op's forward and backward, a function
call, a few optimizer steps) on inputs fixed by a seed, and for each call what must agree.
The grader runs the calls twice with the same inputs: in a subprocess on the student's tree
(`runner.py`), and in its own process on the real library (the reference ops, or the fast ops
where a call says so). Expected values therefore never exist in the student's process, and
the answer key is the library itself.

Inputs come from NumPy generators seeded by the task id and from hypothesis strategies drawn
with `derandomize=True`, so the same submission gets the same grade on every run.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field

import numpy as np


def seed_of(text: str) -> int:
    return zlib.crc32(text.encode())


def examples(strategy, n: int) -> list:
    """n examples of a hypothesis strategy, the same ones on every run (derandomized)."""
    try:
        from hypothesis import HealthCheck, Phase, given, settings
    except ImportError:
        raise ImportError("grading draws its cases with hypothesis: pip install "
                          "'minigpt[assignments]' (or hypothesis itself)") from None
    found = []

    @settings(derandomize=True, max_examples=n, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), deadline=None)
    @given(strategy)
    def collect(x):
        found.append(x)

    collect()
    return found[:n]


@dataclass
class Compare:
    """What of one call's result must match: a path into the result, and tolerances."""
    key: str            # the call
    path: tuple         # e.g. ("out",), ("grads", "q"), ("value",)
    what: str           # how feedback names it: "forward output", "gradient of `q`"
    atol: float = 1e-8
    rtol: float = 1e-6


@dataclass
class Check:
    seed: int
    calls: list = field(default_factory=list)
    arrays: dict = field(default_factory=dict)
    compares: list = field(default_factory=list)
    trusted: dict = field(default_factory=dict)  # "module:attr" -> runner.TRUSTED name
    judge: object = None  # optional judge(student_calls, student_arrays) -> list of failures
    timeout: float | None = None

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)

    def array(self, value) -> dict:
        key = f"a{len(self.arrays)}"
        self.arrays[key] = np.asarray(value)
        return {"array": key}

    def op(self, label, target, args, kwargs=None, *, compare=("out",), gradcheck=False,
           atol=1e-8, rtol=1e-6, impl="reference", backward=False):
        """args: (name, array, requires_grad) triples. compare: "out" and/or input names."""
        key = label
        spec = []
        for name, value, grad in args:
            spec.append({"name": name, "array": self.array(value)["array"], "grad": bool(grad)})
        call = {"key": key, "procedure": "op", "target": target, "args": spec,
                "kwargs": kwargs or {}, "impl": impl, "seed": self.seed % 1000}
        out_dtype = np.asarray(args[0][1]).dtype
        if backward or any(c != "out" for c in compare) or gradcheck:
            shape = self._out_shape(target, args, kwargs or {})
            upstream = self.rng.standard_normal(shape).astype(out_dtype)  # random, non-uniform
            call["upstream"] = self.array(upstream)["array"]
        call["gradcheck"] = bool(gradcheck)
        self.calls.append(call)
        for c in compare:
            if c == "out":
                self.compares.append(Compare(key, ("out",), "forward output", atol, rtol))
            else:
                self.compares.append(Compare(key, ("grads", c), f"gradient of `{c}`", atol, rtol))
        if gradcheck:
            self.compares.append(Compare(key, ("gradcheck",), "gradient check"))

    def _out_shape(self, target, args, kwargs):
        """The output shape, from the real library (forward only, no grad)."""
        from . import runner
        import minigpt
        with minigpt.use("reference"), minigpt.no_grad():
            fn = runner.resolve_target(target)
            apply = getattr(fn, "apply", fn)
            kw = {k: runner.decode_value(v, self.arrays) for k, v in kwargs.items()}
            y = apply(*[minigpt.Tensor(np.array(a[1])) for a in args], **kw)
        return y.shape

    def call(self, label, procedure, what="result", atol=1e-8, rtol=1e-6, compare=True, **spec):
        call = {"key": label, "procedure": procedure, **spec}
        self.calls.append(call)
        if compare:
            self.compares.append(Compare(label, ("value",), what, atol, rtol))


# ------------------------------------------------------------------ running the expected side

def expected_results(check: Check, student_files=()) -> tuple[dict, dict, set]:
    """Run the check's calls in this process, on the real library: (results, arrays, the
    functions of minigpt/fast and minigpt/cuda that the student's files call in reference mode)."""
    from pathlib import Path
    from . import runner
    import minigpt
    calls, arrays = {}, {}
    watch = runner.Watch(str(Path(minigpt.__file__).resolve().parent), student_files)
    for c in check.calls:
        if c.get("reference") is False:  # judged by its own rule (check.judge)
            continue
        with minigpt.use("fast" if c.get("impl") == "fast" else "reference"):
            if c.get("impl") == "fast":  # calls into the fast ops are the point here
                res, arr = runner.PROCEDURES[c["procedure"]](c, dict(check.arrays), c["key"])
            else:
                with watch:
                    res, arr = runner.PROCEDURES[c["procedure"]](c, dict(check.arrays), c["key"])
        calls[c["key"]] = res
        arrays.update(arr)
    return calls, arrays, {tuple(x) for x in watch.seen}


# ------------------------------------------------------------------ comparing

def _get(d, path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return _MISSING
        d = d[p]
    return d


_MISSING = object()


def _load(v, arrays):
    if isinstance(v, dict) and set(v) == {"array"}:
        return arrays.get(v["array"])
    if isinstance(v, list):
        return [_load(x, arrays) for x in v]
    if isinstance(v, dict):
        return {k: _load(x, arrays) for k, x in v.items()}
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


def judge(check: Check, mine_calls: dict, mine_arrays: dict, ref_calls: dict,
          ref_arrays: dict) -> list[str]:
    """Failure lines (empty: the task passes)."""
    failures = []
    reported = set()
    for c in check.compares:
        res = mine_calls.get(c.key, {})
        if "error" in res:
            if c.key not in reported:
                reported.add(c.key)
                failures.append(f"{c.key}: your code raised {res['error']}\n"
                                + _indent(res.get("traceback", "")))
            continue
        if c.key in reported:
            continue
        if c.path == ("gradcheck",):
            verdict = res.get("gradcheck")
            if verdict != "ok":
                failures.append(f"{c.key}: {verdict}")
            continue
        ref = _get(ref_calls.get(c.key, {}), c.path)
        if ref is _MISSING:
            raise RuntimeError(f"the reference produced no {c.path} for {c.key}")
        mine = _get(res, c.path)
        if mine is _MISSING:
            failures.append(f"{c.key}: {c.what} missing (no gradient flowed to it?)")
            continue
        mine, ref = _load(mine, mine_arrays), _load(ref, ref_arrays)
        if mine is None and ref is not None:
            failures.append(f"{c.key}: {c.what} is None (your backward returned no gradient "
                            "for this input)")
            continue
        msg = compare_values(mine, ref, c.atol, c.rtol, f"{c.key}: {c.what}")
        if msg:
            failures.append(msg)
    if check.judge is not None:
        failures.extend(check.judge(mine_calls, mine_arrays))
    return failures


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
