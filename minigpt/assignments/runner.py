"""The student side of one graded task: runs in its own process, on the student's tree only.

The grader (judging.py) copies this file into a fresh folder beside the task's tree and starts

    python -I -S runner.py JOBDIR

in an empty environment and its own process group. -I: no environment variables, no user
site, no script directory on sys.path; -S: no `site`, so no .pth file runs. sys.path is the
student's tree, JOBDIR/site (links to NumPy and tqdm only: not site-packages, where an
installed minigpt lives) and the standard library. Before the student's code is imported, an
audit hook (`sandbox`) lets the process read only the tree, those packages and the standard
library, write only in JOBDIR, and start no process, load no C library through ctypes, open
no socket and signal no other process.

This file imports nothing from minigpt at module level (it is not part of the student's
package). JOBDIR/job.json lists the calls; JOBDIR/inputs.npz holds their arrays; the runner
writes the raw values its calls returned to JOBDIR/result.npz (plain arrays and one JSON
blob: no pickle crosses the process boundary). It judges nothing: the expected values never
come here, and the grader reads the results only after this process group is dead.
"""
import importlib
import json
import os
import sys
import traceback


def _setup(job, jobdir):
    tree = os.path.realpath(job["tree"])
    sys.path[:] = [tree, os.path.join(jobdir, "site")] + [
        p for p in sys.path if p and os.path.realpath(p) != os.path.dirname(
            os.path.realpath(__file__))]
    os.environ["MINIGPT_OPS"] = "reference"  # the student's reference ops, never the tuned ones
    import numpy  # noqa: F401  (before the student's code can touch anything)
    return tree


def _student_frames(tb, tree):
    """The traceback's frames in the student's tree (paths relative to it): nothing of the
    grader's or the interpreter's file layout."""
    lines = []
    for frame in traceback.extract_tb(tb):
        f = os.path.realpath(frame.filename)
        if f.startswith(tree + os.sep):
            rel = os.path.relpath(f, tree).replace(os.sep, "/")
            lines.append(f'  File "{rel}", line {frame.lineno}, in {frame.name}')
            if frame.line:
                lines.append(f"    {frame.line}")
    return "\n".join(lines[-8:])


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
    return {"value": res}, {}


def train(call, arrays, out):
    """Train a small GPT from scratch with the tree's ops and Adam (no dropout: the run is
    deterministic), on the token ids the grader sent: the training loss of every step, then
    the validation loss. Progress goes to stderr, so a timeout can say how far it got."""
    import numpy as np
    import minigpt
    from minigpt import optim
    cfg = minigpt.GPTConfig(**call["config"])
    model = minigpt.GPT(cfg, seed=call["seed"])
    model.train()
    opt = optim.Adam(model.parameters(), lr=call["lr"], weight_decay=call["weight_decay"],
                     max_grad_norm=1.0, schedule=optim.warmup_cosine(call["warmup"],
                                                                     call["steps"]))
    data, val = arrays[call["train"]].astype(np.int64), arrays[call["val"]].astype(np.int64)
    B, T, steps = call["batch_size"], call["block_size"], call["steps"]
    rng = np.random.default_rng(call["seed"])

    def batch(ids, starts):
        x = np.stack([ids[i:i + T] for i in starts])  # (B, T)
        y = np.stack([ids[i + 1:i + T + 1] for i in starts])  # (B, T)
        return x, y

    losses = []
    every = max(1, steps // 20)
    for step in range(1, steps + 1):
        x, y = batch(data, rng.integers(0, len(data) - T - 1, B))
        loss = model.loss(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.data))
        if step % every == 0 or step == steps:
            print(f"progress: step {step} of {steps} (training loss {losses[-1]:.4f})",
                  file=sys.stderr, flush=True)
    model.eval()
    starts = np.linspace(0, len(val) - T - 2, call["val_batches"] * B).astype(np.int64)
    total = 0.0
    with minigpt.no_grad():
        for chunk in starts.reshape(call["val_batches"], B):
            x, y = batch(val, chunk)
            total += float(model.loss(x, y).data)
    losses.append(total / call["val_batches"])
    value = {"losses": np.array(losses)}
    if call.get("weights"):
        value["weights"] = {k: np.asarray(p.data) for k, p in model.state_dict().items()}
    out_arrays = {}
    return {"value": _store(value, out, out_arrays)}, out_arrays


PROCEDURES = {"op": op, "call": call, "method": method, "adam": adam, "clip": clip,
              "encoder": encoder, "gradcheck_probe": gradcheck_probe, "train": train}


# ---------------------------------------------------------------- the sandbox

_BLOCKED = ("subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty",
            "os.system", "os.kill", "os.killpg", "os.startfile", "pty.", "ctypes.",
            "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
            "socket.getaddrinfo", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
            "signal.pthread_kill", "winreg.", "_winapi.", "msvcrt.", "webbrowser.")
_WRITES = ("os.rename", "os.replace", "os.link", "os.remove", "os.rmdir", "os.mkdir",
           "os.truncate", "os.chmod", "os.chown", "os.chflags", "os.utime", "os.mkfifo",
           "os.mknod", "os.setxattr", "os.removexattr", "shutil.")
_LISTS = ("os.listdir", "os.scandir", "os.chdir", "glob.glob")


class SandboxError(PermissionError):
    pass


def sandbox(read_roots, write_roots):
    """An audit hook (it cannot be removed) that confines the rest of this process: reads
    under read_roots, writes under write_roots, no processes, ctypes, sockets or signals.
    It closes the doors Python itself offers (the process can load no native code to open
    others); where the grader is root, the process also runs as `nobody`."""
    realpath, fspath, sep = os.path.realpath, os.fspath, os.sep
    reads = tuple(realpath(r).rstrip(sep) + sep for r in read_roots)
    writes = tuple(realpath(r).rstrip(sep) + sep for r in write_roots)
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def inside(path, roots):
        if path is None or isinstance(path, int):
            return True
        try:
            p = realpath(fspath(path))
        except (TypeError, ValueError, OSError):
            return False
        if isinstance(p, bytes):
            p = p.decode("utf-8", "replace")
        return (p.rstrip(sep) + sep).startswith(roots)

    def refuse(what):
        raise SandboxError(f"the grader's sandbox refused {what}: your code may read only "
                           "its own files, NumPy and the standard library, and start no "
                           "process")

    def hook(event, args):
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, 0))[:3]
            write = any(c in mode for c in "wax+") if isinstance(mode, str) else \
                bool((flags or 0) & write_flags)
            if not inside(path, writes if write else reads):
                refuse(f"opening {path!r}")
        elif event.startswith(_BLOCKED):
            refuse(event)
        elif event.startswith(_WRITES):
            paths = [a for a in args if isinstance(a, (str, bytes, os.PathLike))]
            if not all(inside(a, writes) for a in paths):
                refuse(f"{event} on {paths[0]!r}")
        elif event == "os.symlink":
            if not inside(args[1], writes):
                refuse(f"{event} on {args[1]!r}")
        elif event.startswith(_LISTS):
            if args and not inside(args[0], reads):
                refuse(f"{event} on {args[0]!r}")

    sys.addaudithook(hook)


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
    jobdir = os.path.realpath(jobdir)
    with open(os.path.join(jobdir, "job.json"), encoding="utf-8") as f:
        job = json.load(f)
    _limit_memory(job.get("memory_bytes"))
    tree = _setup(job, jobdir)
    import numpy as np
    with np.load(os.path.join(jobdir, "inputs.npz"), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    site = os.path.join(jobdir, "site")
    sandbox([tree, jobdir] + list(job["stdlib"]) + [os.path.realpath(os.path.join(site, n))
                                                   for n in os.listdir(site)], [jobdir])
    for name, helper in job.get("trusted", {}).items():  # module:attr -> trusted helper name
        module, _, attr = name.partition(":")
        try:
            setattr(importlib.import_module(module), attr, TRUSTED[helper])
        except Exception:
            pass  # the import error shows up again, with its traceback, in the calls
    results, out_arrays = {"calls": {}}, {}
    for c in job["calls"]:
        key = c["key"]
        try:
            res, arr = PROCEDURES[c["procedure"]](c, arrays, key)
            out_arrays.update(arr)
        except BaseException as e:  # noqa: B902  (SystemExit and friends are the student's too)
            res = {"error": f"{type(e).__name__}: {e}",
                   "traceback": _student_frames(e.__traceback__, tree)}
        results["calls"][key] = res
    blob = np.frombuffer(json.dumps(results).encode("utf-8"), dtype=np.uint8)
    np.savez(os.path.join(jobdir, "result.npz"), __json__=blob, **out_arrays)


if __name__ == "__main__":
    main(sys.argv[1])
