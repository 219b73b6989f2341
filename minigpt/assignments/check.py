"""How one task is checked: the calls to make, and what of their results must agree.

A task's check builds a `Check`: a list of calls (an op's forward and backward, a function
call, a few optimizer steps) on inputs fixed by a seed, and for each call what must agree.
`expected_results` runs the calls here, on the real library (the reference ops, or the fast
ops where a call says so), and for gradient checks takes central differences of the
reference forward; `to_case` turns task, calls and expected values into the plain JSON and
arrays that judging.py grades with (in the teacher's process, or in a Gradescope container
that holds no reference code). The student's process (runner.py) gets the calls and inputs
only: expected values never exist there.

A call whose label starts with "hidden:" is a hidden case: a student sees that it failed, not
its name or values, and a release's public checks leave it out.

Inputs come from NumPy generators seeded by the task id and from hypothesis strategies drawn
with `derandomize=True`, so the same submission gets the same grade on every run.
"""
from __future__ import annotations

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
                          "'minigpt-gpt1[assignments]' (or hypothesis itself)") from None
    found = []

    @settings(derandomize=True, max_examples=n, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), deadline=None)
    @given(strategy)
    def collect(x):
        found.append(x)

    collect()
    return found[:n]


GRADCHECK_TOL = {"atol": 1e-5, "rtol": 1e-4}   # minigpt.gradcheck's defaults


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
    judge: tuple | None = None  # (name in judging.JUDGES, JSON-able arguments): a rule
    timeout: float | None = None
    heavy: bool = False        # all cores and twice the memory (the capstone)
    named_inputs: tuple = ()   # arrays a procedure reads by name (not through a call's spec)

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
                "kwargs": kwargs or {}, "impl": impl, "hidden": label.startswith("hidden:")}
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
        if gradcheck:  # against central differences of the reference forward
            for name, _, grad in args:
                if grad:
                    self.compares.append(Compare(key, ("numeric", name), "gradient check",
                                                 GRADCHECK_TOL["atol"], GRADCHECK_TOL["rtol"]))

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
        call = {"key": label, "procedure": procedure, "hidden": label.startswith("hidden:"),
                **spec}
        self.calls.append(call)
        if compare:
            self.compares.append(Compare(label, ("value",), what, atol, rtol))


# ------------------------------------------------------------------ running the expected side

def expected_results(check: Check, public_only: bool = False) -> tuple[dict, dict]:
    """Run the check's calls in this process, on the real library: (results, arrays). A call
    with a gradient check also gets the central differences of the *reference* forward
    ("numeric"), so a backward is judged against the grader's forward, never the student's."""
    from . import runner
    import minigpt
    calls, arrays = {}, {}
    for c in check.calls:
        if c.get("reference") is False:  # judged by its own rule (check.judge)
            continue
        if public_only and (c.get("hidden") or c["procedure"] == "train"):
            continue  # not in a release's public checks
        with minigpt.use("fast" if c.get("impl") == "fast" else "reference"):
            res, arr = runner.PROCEDURES[c["procedure"]](c, dict(check.arrays), c["key"])
        if c.get("gradcheck"):
            res["numeric"] = {}
            for name, numeric in numeric_gradients(c, check.arrays).items():
                k = f"{c['key']}.numeric.{name}"
                arr[k] = numeric
                res["numeric"][name] = {"array": k}
        calls[c["key"]] = res
        arrays.update(arr)
    return calls, arrays


def numeric_gradients(call: dict, arrays: dict, eps: float = 1e-6) -> dict:
    """d/dx sum(f(x) * G) by central differences of the reference forward f (float64), for
    every input of `call` that wants a gradient; G is the call's upstream gradient."""
    from . import runner
    import minigpt
    fn = runner.resolve_target(call["target"])
    apply = getattr(fn, "apply", fn)
    kwargs = {k: runner.decode_value(v, arrays) for k, v in call.get("kwargs", {}).items()}
    xs = [np.array(arrays[a["array"]], dtype=np.float64) for a in call["args"]]
    upstream = np.asarray(arrays[call["upstream"]], dtype=np.float64)

    def objective():
        with minigpt.use("reference"), minigpt.no_grad():
            return float((apply(*[minigpt.Tensor(x) for x in xs], **kwargs).data
                          * upstream).sum())

    out = {}
    for a, x in zip(call["args"], xs):
        if not a.get("grad"):
            continue
        numeric = np.zeros(x.shape)
        for idx in np.ndindex(*x.shape):
            orig = x[idx]
            x[idx] = orig + eps
            plus = objective()
            x[idx] = orig - eps
            minus = objective()
            x[idx] = orig
            numeric[idx] = (plus - minus) / (2 * eps)
        out[a["name"]] = numeric
    return out


def to_case(task, check: Check, expected, files, public_only: bool = False) -> tuple[dict, dict]:
    """One task as the cases file holds it: (JSON-able description, {"<task>|in|k": array,
    "<task>|ref|k": array}). public_only: without the hidden cases (a student's copy)."""
    calls = [c for c in check.calls if not (public_only and c.get("hidden"))]
    keep = {c["key"] for c in calls}
    ref_calls, ref_arrays = expected
    ref_calls = {k: v for k, v in ref_calls.items() if k in keep}
    used_ref = set(_strings(ref_calls)) & set(ref_arrays)
    used_in = set(_strings(calls)) | set(check.named_inputs)
    judge = check.judge
    if judge is not None:
        name, args = judge
        if public_only and name == "training":
            # the reference curve is what the graded run must follow: never in a release
            judge = (name, {**args, "losses": None})
        else:
            used_in |= set(_strings(args))
            if name == "training":
                used_ref.add(args["losses"])
                used_ref &= set(ref_arrays)
    arrays = {f"{task.id}|in|{k}": check.arrays[k] for k in sorted(used_in & set(check.arrays))}
    arrays.update({f"{task.id}|ref|{k}": ref_arrays[k] for k in sorted(used_ref)
                   if k in ref_arrays})
    compares = [{"key": c.key, "path": list(c.path), "what": c.what, "atol": c.atol,
                 "rtol": c.rtol} for c in check.compares if c.key in keep]
    case = {"id": task.id, "title": task.title, "points": task.points, "files": sorted(files),
        "calls": calls, "compares": compares, "expected": ref_calls,
        "judge": judge, "trusted": check.trusted, "timeout": check.timeout,
        "heavy": check.heavy, "forward": getattr(task, "forward", None)}
    return case, arrays


def _strings(value):
    """Every string inside a JSON-like value (array keys are among them)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)
