"""Step through one forward and backward pass: every op, in order, with its numbers.

    import minigpt
    tr = minigpt.trace(model, idx, targets)   # one forward + backward of model.loss(idx, targets)
    print(tr)                                 # the tables (tr.table(); in Jupyter, an HTML table)
    tr.ops[3].shape, tr.ops[3].grad_norm      # the records behind them

    minigpt trace --ckpt runs/tiny --prompt "ROMEO:"     # the same on a checkpoint

What is recorded:
- forward, one row per op (each `Function.apply`) in the order they ran: the op (named by its
  reference Function) and the implementation minigpt.dispatch ran, the model module that ran
  it (found from the call stack, e.g. `h.0.attn`), where each input came from (`#3` = op 3's
  output, a parameter's name, or `input`), input and output shapes, dtype, and the output's
  mean, standard deviation and max |x|;
- backward, in the order autograd visited the ops: the norm of the gradient that reached each
  op's output (dL/dy, summed over every use of y) and of each input gradient it returned;
- parameters: each parameter's norm and gradient norm. The gradient is summed from the ops'
  input gradients as the trace sees them (a tied weight used twice gets both), so it is a check
  of autograd's own accumulation into `.grad`: the two agree (tests/test_trace.py).

How: `minigpt.config.observers`, a list of observers that `Function.apply` calls after every
forward and `Function`'s backward after every backward. The trace adds itself for one pass.
Tracing computes statistics of every array, so it is for small models and short inputs (the
statistics are computed in float64; the pass itself runs as usual).
"""
from __future__ import annotations

import html
import inspect
import math
from dataclasses import dataclass, field

import numpy as np

from . import autograd, dispatch
from .settings import config
from .autograd import Tensor
from .backend import get_array_module


@dataclass
class OpRecord:
    """One op of the traced pass (a row of the forward table)."""

    index: int
    op: str                          # the op, named by its reference Function, e.g. "LayerNorm"
    impl: str                        # "reference", "fast" or "cuda" (minigpt.dispatch's choice);
                                     # "" for autograd's elementary ops (Add, Reshape, ...)
    module: str                      # dotted name of the model module that ran it ("" = the top)
    inputs: list[str]                # where each input came from: "#k", a parameter name, "input"
    input_shapes: list[tuple]
    shape: tuple                     # output shape
    dtype: str
    mean: float
    std: float
    absmax: float                    # max |y|
    grad_norm: float | None = None   # ||dL/dy|| (None: no gradient reached this op)
    input_grad_norms: list = field(default_factory=list)  # ||dL/dx_i|| per input (None: none)
    backward_step: int | None = None  # position of this op in the backward order


@dataclass
class ParamRecord:
    """One parameter of the model: its norm and the norm of its gradient from this pass."""

    name: str
    shape: tuple
    norm: float
    grad_norm: float | None          # None: the loss does not depend on this parameter


def _norm(a) -> float:
    xp = get_array_module(a)
    a64 = a.astype(xp.float64)
    return float(xp.sqrt((a64 * a64).sum()))


def _stats(a) -> tuple[float, float, float]:
    if a.size == 0:
        return math.nan, math.nan, math.nan
    xp = get_array_module(a)
    a64 = a.astype(xp.float64)
    return float(a64.mean()), float(a64.std()), float(xp.abs(a64).max())


class _Recorder:
    """The observer: numbers each op in forward and fills in its gradients in backward."""

    def __init__(self, model):
        self.modules = {}  # id(module) -> dotted name
        self.param_names = {}  # id(parameter) -> name
        if model is not None:
            for name, m in model.named_modules():
                self.modules[id(m)] = name.rstrip(".")
            for name, p in model.named_parameters():
                self.param_names[id(p)] = name
        # Function class -> (the op's reference class name, implementation)
        self.kinds = {}
        for impls in dispatch.registered().values():
            ref = impls.get("reference")
            for impl, cls in impls.items():
                self.kinds[cls] = ((ref or cls).__name__, impl)
        self.ops: list[OpRecord] = []
        self.index_of_fn = {}  # id(Function) -> op index
        self.index_of_output = {}  # id(output Tensor) -> op index
        self.keep = []  # Functions and outputs kept alive during the pass, so ids stay unique
        self.param_grads = {}  # parameter name -> summed gradient array
        self.steps = 0

    def _module_name(self) -> str:
        """The innermost model module on the call stack (its `self` in a forward method)."""
        frame = inspect.currentframe()
        try:
            while frame is not None:
                obj = frame.f_locals.get("self")
                if obj is not None and id(obj) in self.modules:
                    name = self.modules[id(obj)]  # the model itself: its class and method
                    return name or f"{type(obj).__name__}.{frame.f_code.co_name}"
                frame = frame.f_back
            return ""
        finally:
            del frame

    def _origin(self, t: Tensor) -> str:
        if id(t) in self.param_names:
            return self.param_names[id(t)]
        if id(t) in self.index_of_output:
            return f"#{self.index_of_output[id(t)]}"
        return "input"

    def forward(self, fn, inputs, output) -> None:
        i = len(self.ops)
        mean, std, absmax = _stats(output.data)
        op, impl = self.kinds.get(type(fn), (type(fn).__name__, ""))
        self.ops.append(OpRecord(
            index=i, op=op, impl=impl, module=self._module_name(),
            inputs=[self._origin(t) for t in inputs], input_shapes=[tuple(t.shape) for t in inputs],
            shape=tuple(output.shape), dtype=str(output.dtype), mean=mean, std=std, absmax=absmax,
            input_grad_norms=[None] * len(inputs)))
        self.index_of_fn[id(fn)] = i
        self.index_of_output[id(output)] = i
        self.keep.append((fn, output))

    def backward(self, fn, grad_output, grads) -> None:
        i = self.index_of_fn.get(id(fn))
        if i is None:  # an op created before the trace began
            return
        rec = self.ops[i]
        rec.grad_norm = _norm(grad_output)
        rec.backward_step = self.steps
        self.steps += 1
        for j, (inp, g) in enumerate(zip(fn.inputs, grads)):
            if g is None or not getattr(inp, "requires_grad", False):
                continue
            rec.input_grad_norms[j] = _norm(g)
            name = self.param_names.get(id(inp))
            if name is not None:  # a parameter: sum its contributions (tied weights have two)
                prev = self.param_grads.get(name)
                g64 = g.astype(get_array_module(g).float64)
                self.param_grads[name] = g64 if prev is None else prev + g64


class Trace:
    """The record of one traced pass: `ops` (forward order), `params`, `loss`; `table()` prints."""

    def __init__(self, ops: list[OpRecord], params: list[ParamRecord], loss: float | None):
        self.ops = ops
        self.params = params
        self.loss = loss

    @property
    def backward_ops(self) -> list[OpRecord]:
        """The ops autograd visited, in backward order."""
        return sorted((r for r in self.ops if r.backward_step is not None),
                      key=lambda r: r.backward_step)

    def param(self, name: str) -> ParamRecord:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"no parameter named {name!r}; the trace has {len(self.params)} "
                       f"(e.g. {', '.join(p.name for p in self.params[:3])})")

    # ---- tables --------------------------------------------------------------------------
    def rows(self, part: str = "forward") -> tuple[list[str], list[list[str]]]:
        """(header, rows) of one table: part is "forward", "backward" or "params"."""
        if part == "forward":
            header = ["#", "op", "impl", "module", "inputs", "input shapes", "output", "dtype",
                      "mean", "std", "max|y|", "|dL/dy|"]
            rows = [[str(r.index), r.op, r.impl or "-", r.module or "-", ", ".join(r.inputs),
                     " ".join(_shape(s) for s in r.input_shapes), _shape(r.shape), r.dtype,
                     _num(r.mean), _num(r.std), _num(r.absmax), _num(r.grad_norm)]
                    for r in self.ops]
        elif part == "backward":
            header = ["step", "#", "op", "module", "|dL/dy|", "|dL/dx| per input"]
            rows = [[str(r.backward_step), str(r.index), r.op, r.module or "-", _num(r.grad_norm),
                     ", ".join(f"{src}: {_num(n)}" for src, n in zip(r.inputs, r.input_grad_norms)
                               if n is not None)]
                    for r in self.backward_ops]
        elif part == "params":
            header = ["parameter", "shape", "|w|", "|dL/dw|", "|dL/dw|/|w|"]
            rows = [[p.name, _shape(p.shape), _num(p.norm), _num(p.grad_norm),
                     _num(p.grad_norm / p.norm if p.grad_norm is not None and p.norm else None)]
                    for p in self.params]
        else:
            raise ValueError(f"unknown table {part!r}; use 'forward', 'backward' or 'params'")
        return header, rows

    def table(self, parts=("forward", "backward", "params"), max_rows: int | None = None) -> str:
        """The tables as fixed-width text (max_rows: keep the first and last rows of each)."""
        if isinstance(parts, str):
            parts = (parts,)
        out = []
        if self.loss is not None:
            out.append(f"loss {self.loss:.6f}")
        for part in parts:
            header, rows = self.rows(part)
            if not rows:
                continue
            n = len(rows)
            head, tail = _clip(n, max_rows)
            shown = rows[:head] + rows[n - tail:]
            widths = [max(len(x) for x in col) for col in zip(header, *shown)]
            line = lambda row: "  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip()  # noqa: E731
            out.append(f"{part} ({n} rows)")
            out.append(line(header))
            out.extend(line(row) for row in rows[:head])
            if head + tail < n:
                out.append(f"... {n - head - tail} rows ...")
            out.extend(line(row) for row in rows[n - tail:])
            out.append("")
        return "\n".join(out).rstrip() + "\n"

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        loss = "" if self.loss is None else f", loss={self.loss:.4f}"
        return f"<Trace: {len(self.ops)} ops, {len(self.params)} parameters{loss}>"

    def _repr_html_(self) -> str:
        """Jupyter shows the three tables as HTML."""
        parts = [] if self.loss is None else [f"<p>loss {self.loss:.6f}</p>"]
        for part in ("forward", "backward", "params"):
            header, rows = self.rows(part)
            if not rows:
                continue
            cells = "".join(f"<th>{html.escape(h)}</th>" for h in header)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in row) + "</tr>"
                           for row in rows)
            parts.append(f"<p><b>{part}</b> ({len(rows)} rows)</p>"
                         f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>")
        return "\n".join(parts)


def _shape(s) -> str:
    return "(" + ", ".join(str(n) for n in s) + ")"


def _num(x) -> str:
    if x is None:
        return "-"
    if x != x:
        return "nan"
    return f"{x:.3g}" if x == 0 or 1e-3 <= abs(x) < 1e4 else f"{x:.2e}"


def _clip(n: int, max_rows: int | None) -> tuple[int, int]:
    """How many of n rows to show from the top and from the bottom."""
    if max_rows is None or n <= max_rows:
        return n, 0
    return max_rows // 2, max_rows - max_rows // 2


def trace(model, idx, targets=None, *, forward=None) -> Trace:
    """Run one forward and backward pass of `model` and record every op (see the module doc).

    forward: the loss is `model.loss(idx, targets)` when targets are given, else `model(idx)`;
    pass `forward(model, idx, targets) -> Tensor` for anything else (a fine-tuning model).
    A scalar result is backpropagated: the model's gradients are zeroed first and hold this
    pass's gradients afterwards (nothing is updated). A non-scalar result is traced forward only.
    The model stays in its mode (call model.eval() first for a pass without dropout).
    """
    if forward is None:
        if targets is not None:
            if not hasattr(model, "loss"):
                raise TypeError(f"{type(model).__name__} has no loss(idx, targets); "
                                "pass forward=lambda model, idx, targets: ...")
            forward = lambda m, i, t: m.loss(i, t)  # noqa: E731
        else:
            forward = lambda m, i, t: m(i)  # noqa: E731
    if not autograd.is_grad_enabled():
        raise RuntimeError("minigpt.trace inside no_grad(): there would be no backward to trace")
    rec = _Recorder(model)
    params = list(model.named_parameters()) if model is not None else []
    for _, p in params:
        p.zero_grad()
    config.observers.append(rec)
    try:
        out = forward(model, idx, targets)
        loss = None
        if isinstance(out, Tensor) and out.size == 1:
            loss = float(out.data.reshape(()))
            if out.requires_grad:
                out.backward()
    finally:
        config.observers.remove(rec)
        rec.keep.clear()
    records = []
    for name, p in params:
        g = rec.param_grads.get(name)
        records.append(ParamRecord(name=name, shape=tuple(p.shape), norm=_norm(p.data),
                                   grad_norm=None if g is None else _norm(g)))
    return Trace(rec.ops, records, loss)
