"""The student side of one graded task: runs in its own process, on the student's tree only.

The grader copies this file next to the grading tree and starts

    python -I -S runner.py JOBDIR

-I: no environment variables, no user site, no script directory on sys.path; -S: no `site`,
so no .pth file runs and an editable install of the real minigpt cannot hook the import
system. The runner puts the student's tree first on sys.path and the interpreter's
site-packages (for NumPy) after it, imports minigpt, and checks that every minigpt module
it ends up with lives in the tree: the reference solution is never importable here.

This file imports nothing from minigpt at module level (it is not part of the student's
package). JOBDIR/job.json lists the calls; JOBDIR/inputs.npz holds their arrays; the runner
writes JOBDIR/result.json and JOBDIR/result.npz (plain arrays: no pickle crosses the process
boundary). The expected values never come here: the grader compares in its own process.
"""
import importlib
import json
import os
import sys
import traceback


def _setup(job):
    tree = os.path.realpath(job["tree"])
    sys.path[:] = [tree] + [p for p in sys.path if p and os.path.realpath(p) != os.path.dirname(
        os.path.realpath(__file__))] + list(job["site"])
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__
                        and "editable" not in getattr(f, "__name__", "")]
    os.environ["MINIGPT_OPS"] = "reference"  # the student's reference ops, never the tuned ones
    import numpy  # noqa: F401  (before the student's code can touch anything)
    return tree


def _student_frames(tb_text, tree):
    """The traceback's last lines, from the student's files where possible."""
    lines = [ln for ln in tb_text.rstrip().splitlines() if ln.strip()]
    return "\n".join(lines[-6:]).replace(tree + os.sep, "")


def resolve_target(target):
    """'pkg.module:Name.attr' -> the object."""
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


def decode_value(spec, arrays):
    if isinstance(spec, dict) and "array" in spec:
        return arrays[spec["array"]]
    if isinstance(spec, dict) and "rng" in spec:  # a seeded NumPy generator
        import numpy as np
        return np.random.default_rng(spec["rng"])
    if isinstance(spec, dict) and "tuple" in spec:
        return tuple(decode_value(s, arrays) for s in spec["tuple"])
    if isinstance(spec, list):
        return [decode_value(s, arrays) for s in spec]
    return spec


def _store(value, key, out_arrays):
    """A JSON-able description of value; arrays go to out_arrays[key...]."""
    import numpy as np
    if hasattr(value, "data") and type(value).__name__ == "Tensor":
        value = value.data
    if isinstance(value, np.ndarray):
        out_arrays[key] = value
        return {"array": key}
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_store(v, f"{key}.{i}", out_arrays) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _store(v, f"{key}.{k}", out_arrays) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


# ---------------------------------------------------------------- trusted helpers
# A task that must not depend on another task's region gets these in place of the student's
# (e.g. Mul.backward is graded with a correct unbroadcast, so that a wrong unbroadcast loses
# only the unbroadcast task).

def _trusted_unbroadcast(grad, shape):
    shape = tuple(shape)
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for i, n in enumerate(shape):
        if n == 1 and grad.shape[i] != 1:
            grad = grad.sum(axis=i, keepdims=True)
    return grad


TRUSTED = {"unbroadcast": _trusted_unbroadcast}


# ---------------------------------------------------------------- procedures

def op(call, arrays, out):
    """Forward, then backward with the given upstream gradient; optional gradcheck."""
    import numpy as np
    import minigpt
    fn = resolve_target(call["target"])
    apply = getattr(fn, "apply", fn)
    tensors = [minigpt.Tensor(np.array(arrays[a["array"]]), requires_grad=a.get("grad", False))
               for a in call["args"]]
    kwargs = {k: decode_value(v, arrays) for k, v in call.get("kwargs", {}).items()}
    y = apply(*tensors, **kwargs)
    res = {"out": _store(y, out + ".out", arrays_out := {})}
    if call.get("upstream"):
        y.backward(arrays[call["upstream"]])
        res["grads"] = {}
        for a, t in zip(call["args"], tensors):
            if a.get("grad"):
                g = t.grad if t.grad is not None else None
                res["grads"][a["name"]] = _store(g, f"{out}.grad.{a['name']}", arrays_out)
    if call.get("gradcheck"):
        from minigpt.gradcheck import gradcheck
        fresh = [minigpt.Tensor(np.array(arrays[a["array"]]), requires_grad=a.get("grad", False))
                 for a in call["args"]]
        names = [a["name"] for a in call["args"]]
        try:
            gradcheck(lambda *ts: apply(*ts, **kwargs), fresh, names=names, seed=call["seed"])
            res["gradcheck"] = "ok"
        except AssertionError as e:
            res["gradcheck"] = str(e)
    out_arrays = arrays_out
    return res, out_arrays


def call(call, arrays, out):
    """Any function or method: target(*args, **kwargs), then optional attributes of the result."""
    fn = resolve_target(call["target"])
    args = [decode_value(a, arrays) for a in call.get("args", [])]
    kwargs = {k: decode_value(v, arrays) for k, v in call.get("kwargs", {}).items()}
    value = fn(*args, **kwargs)
    for attr in call.get("then", []):
        value = getattr(value, attr)
        value = value() if callable(value) else value
    if "apply_to" in call:  # value is a function (a schedule): its values at these arguments
        value = [value(*a) for a in call["apply_to"]]
    out_arrays = {}
    return {"value": _store(value, out, out_arrays)}, out_arrays


def method(call, arrays, out):
    """Build an object (target(*init)), then call one of its methods."""
    cls = resolve_target(call["target"])
    obj = cls(*[decode_value(a, arrays) for a in call.get("init", [])],
              **{k: decode_value(v, arrays) for k, v in call.get("init_kwargs", {}).items()})
    for setup in call.get("setup", []):
        getattr(obj, setup[0])(*setup[1:])
    results = []
    for m, args in call["calls"]:
        extra = []
        if call.get("trunc"):
            extra = [resolve_target(call["trunc"])()]
        results.append(getattr(obj, m)(*[decode_value(a, arrays) for a in args], *extra))
    out_arrays = {}
    return {"value": _store(results, out, out_arrays)}, out_arrays


def adam(call, arrays, out):
    """Several optimizer steps on given parameters and gradients; the parameters after each."""
    import numpy as np
    import minigpt
    from minigpt import nn, optim
    params = [nn.Parameter(np.array(arrays[k])) for k in call["params"]]
    opt = optim.Adam(params, **call["kwargs"])
    history = []
    for step, keys in enumerate(call["grads"]):
        for p, k in zip(params, keys):
            p.grad = np.array(arrays[k])
        opt.step()
        history.append([p.data.copy() for p in params])
    del minigpt
    out_arrays = {}
    return {"value": _store(history, out, out_arrays)}, out_arrays


def clip(call, arrays, out):
    """clip_grad_norm on Parameters with the given gradients: (norm before, gradients after)."""
    import numpy as np
    from minigpt import nn, optim
    params = []
    for shape, g in zip(call["shapes"], call["grads"]):
        p = nn.Parameter(np.zeros(shape))
        p.grad = None if g is None else np.array(arrays[g])
        params.append(p)
    norm = optim.clip_grad_norm(params, call["max_norm"])
    out_arrays = {}
    value = [float(norm), [p.grad for p in params]]
    return {"value": _store(value, out, out_arrays)}, out_arrays


def encoder(call, arrays, out):
    """A TaskEncoder over a character tokenizer; one method on every case, fresh Truncation."""
    from minigpt.tasks import TaskEncoder, Truncation, add_special_tokens
    from minigpt.tokenizers import CharTokenizer
    tok = CharTokenizer.train("abcdefghijklmnopqrstuvwxyz ")
    add_special_tokens(tok)
    enc = TaskEncoder(call["task"], tok, call["n_ctx"])
    results = []
    for args in call["cases"]:
        trunc = Truncation()
        trunc.start_example()
        value = getattr(enc, call["method"])(*args, trunc)
        results.append([value, dict(sorted(trunc.segments.items()))])
    out_arrays = {}
    return {"value": _store(results, out, out_arrays)}, out_arrays


def gradcheck_probe(call, arrays, out):
    """The student's gradcheck on a Function with a correct, then a deliberately wrong backward."""
    import numpy as np
    import minigpt
    from minigpt.gradcheck import gradcheck

    wrong_at = tuple(call["wrong_at"])
    delta = call["delta"]

    class Cube(minigpt.Function):  # y = x^3 * w (elementwise, w broadcast over rows)
        bad = False

        def forward(self, x, w):
            self.save(x, w)
            return x ** 3 * w

        def backward(self, g):
            x, w = self.saved
            dx = 3 * x ** 2 * w * g
            dw = (x ** 3 * g).sum(axis=0)
            if self.bad:
                dx = dx.copy()
                dx[wrong_at] += delta
            return dx, dw

    class Bad(Cube):
        bad = True

    def tensors():
        return [minigpt.Tensor(np.array(arrays["x"]), requires_grad=True),
                minigpt.Tensor(np.array(arrays["w"]), requires_grad=True)]

    res = {}
    ts = tensors()
    try:
        res["correct"] = repr(gradcheck(Cube.apply, ts, names=["x", "w"]))
    except AssertionError as e:
        res["correct"] = "raised: " + str(e)
    res["changed"] = [float(np.abs(t.data - arrays[k]).max()) for t, k in zip(ts, "xw")]
    try:  # eps = 1e-3: central differences err by ~eps^2, one-sided ones by ~eps
        res["coarse"] = repr(gradcheck(Cube.apply, tensors(), eps=1e-3, names=["x", "w"]))
    except AssertionError as e:
        res["coarse"] = "raised: " + str(e)
    try:
        res["wrong"] = "returned " + repr(gradcheck(Bad.apply, tensors(), names=["x", "w"]))
    except AssertionError as e:
        res["wrong"] = "raised: " + str(e)
    return res, {}


def capstone(call, arrays, out):
    """Pretrain with the student's ops (reference mode) and report the validation loss."""
    import minigpt
    from minigpt import training
    minigpt.use("reference")
    cfg = training.TrainConfig(**call["config"])
    summary = training.pretrain(cfg, force=True, progress=False, log=lambda *a, **k: None)
    return {"value": {"val_loss": summary.get("val_loss"), "status": summary.get("status"),
                      "step": summary.get("step"),
                      "impls": dict(minigpt.implementations())}}, {}


def train_step(call, arrays, out):
    """One forward, backward and Adam step of a small GPT (dropout on): what the capstone
    runs, at a size the grader can afford to run as the reference."""
    import numpy as np
    import minigpt
    from minigpt import optim
    cfg = minigpt.GPTConfig(vocab_size=11, n_ctx=8, n_layer=1, n_embd=8, n_head=2)
    model = minigpt.GPT(cfg)
    model.train()
    opt = optim.Adam(model.parameters(), lr=1e-3,
                     schedule=optim.warmup_cosine(2, 10))
    idx = np.random.default_rng(0).integers(0, 11, (2, 9))
    loss = model.loss(idx[:, :-1], idx[:, 1:])
    opt.zero_grad()
    loss.backward()
    opt.step()
    return {"value": float(loss.data)}, {}


class Watch:
    """Which functions of the library's other implementations (minigpt/fast, minigpt/cuda)
    the student's files call while a procedure runs: {(file, function)}.

    The grader records the same for the reference and fails a task whose code calls one the
    reference never does (a LayerNorm.backward that hands its work to the tuned fast op)."""

    WATCHED = ("fast", "cuda")

    def __init__(self, package, student_files):
        package = os.path.realpath(package)
        self.watched = tuple(os.path.join(package, d) + os.sep for d in self.WATCHED)
        self.student = {os.path.join(package, f) for f in student_files}
        self.package = package
        self.seen = set()

    def _profile(self, frame, event, arg):
        if event != "call":
            return
        code = frame.f_code
        if code.co_filename.startswith(self.watched):
            caller = frame.f_back
            if caller is not None and caller.f_code.co_filename in self.student:
                name = getattr(code, "co_qualname", code.co_name)
                rel = os.path.relpath(code.co_filename, self.package).replace(os.sep, "/")
                self.seen.add((rel, name))

    def __enter__(self):
        self._previous = sys.getprofile()
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc):
        sys.setprofile(self._previous)


PROCEDURES = {"train_step": train_step, "op": op, "call": call, "method": method, "adam": adam, "clip": clip,
              "encoder": encoder,
              "gradcheck_probe": gradcheck_probe, "capstone": capstone}


def _limit_memory(limit) -> None:
    """Cap this process's address space: a runaway allocation in the student's code becomes a
    MemoryError in their call instead of pushing the grading machine into swap."""
    if not limit:
        return
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))
    except (ImportError, ValueError, OSError):
        pass  # no RLIMIT_AS here (Windows, some macOS versions): no cap


def main(jobdir):
    with open(os.path.join(jobdir, "job.json"), encoding="utf-8") as f:
        job = json.load(f)
    _limit_memory(job.get("memory_bytes"))
    tree = _setup(job)
    import numpy as np
    with np.load(os.path.join(jobdir, "inputs.npz"), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for name, helper in job.get("trusted", {}).items():  # module:attr -> trusted helper name
        module, _, attr = name.partition(":")
        try:
            setattr(importlib.import_module(module), attr, TRUSTED[helper])
        except Exception:
            pass  # the import error shows up again, with its traceback, in the calls
    results, out_arrays = {"calls": {}}, {}
    watch = Watch(os.path.join(tree, "minigpt"), job.get("student_files", []))
    for c in job["calls"]:
        key = c["key"]
        try:
            with watch:
                res, arr = PROCEDURES[c["procedure"]](c, arrays, key)
            out_arrays.update(arr)
        except BaseException as e:  # noqa: B902  (SystemExit and friends are the student's too)
            res = {"error": f"{type(e).__name__}: {e}",
                   "traceback": _student_frames(traceback.format_exc(), tree)}
        results["calls"][key] = res
    results["calls_into_other_implementations"] = sorted(map(list, watch.seen))
    # isolation: every minigpt module must come from the student's tree
    import minigpt
    forbidden = [os.path.realpath(p) for p in job.get("forbidden", [])]
    leaks = []
    for name, mod in list(sys.modules.items()):
        f = getattr(mod, "__file__", None)
        if not f:
            continue
        f = os.path.realpath(f)
        if name.split(".")[0] == "minigpt" and not f.startswith(tree + os.sep):
            leaks.append(f"{name} from {f}")
        elif any(f.startswith(d + os.sep) for d in forbidden):
            leaks.append(f"{name} from {f}")
    results["minigpt_file"] = os.path.realpath(minigpt.__file__)
    results["leaks"] = leaks
    np.savez(os.path.join(jobdir, "result.npz"), **out_arrays)
    with open(os.path.join(jobdir, "result.json"), "w", encoding="utf-8") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1])
