"""A tiny reverse-mode autograd: `Tensor`, `Function` and the elementary ops.

How it works, in four lines:
1. A `Function` computes its output from plain arrays in `forward` and keeps (with `save`)
   exactly what its `backward` will need.
2. When any input requires a gradient, the output `Tensor` remembers the Function that made it
   (`tensor.creator`), and the Function remembers its input Tensors: that is the graph.
3. `loss.backward()` visits the graph in reverse topological order, calling each Function's
   `backward(grad_output)`, which returns one gradient per input.
4. Gradients of leaf tensors (parameters) accumulate in `.grad` across calls, as in PyTorch;
   after a backward the saved arrays are freed, so a second backward through the same graph
   raises unless the first one passed `retain_graph=True` (PyTorch's behaviour).
"""
from __future__ import annotations

import contextlib
import numbers

import numpy as np

from .backend import device_of, get_array_module, to_device
from .settings import config


@contextlib.contextmanager
def no_grad():
    """Inside this block no graph is recorded (evaluation, sampling, optimizer updates): the
    switch config.grad_enabled (minigpt/settings.py) is False, then back as it was."""
    previous, config.grad_enabled = config.grad_enabled, False
    try:
        yield
    finally:
        config.grad_enabled = previous


def is_grad_enabled() -> bool:
    return config.grad_enabled


# Observers of every op (config.observers, for tools such as minigpt.trace; empty in normal
# use: one check per op). Each is an object with two methods, called in the order the ops run:
#   forward(fn, inputs, output)           after a Function's forward (inputs: its Tensors)
#   backward(fn, grad_output, grads)      after its backward (grads: one per input, or None)
# Observers only look; they must not change the arrays they are shown.


def _is_array(x) -> bool:
    return isinstance(x, np.ndarray) or type(x).__module__.startswith("cupy")


def as_array(x):
    """The array behind a Tensor; anything else (an array, a number) unchanged."""
    return x.data if isinstance(x, Tensor) else x


def check_float(a, what: str = "input") -> None:
    """Differentiable math runs in float32 or float64 only: ints and float16 raise TypeError."""
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{what} has dtype {a.dtype}; minigpt computes in float32 or float64 "
                        f"(convert with .astype(np.float32))")


class Tensor:
    """An n-dimensional array plus what autograd needs: `.grad` and the Function that made it."""

    __array_priority__ = 1000  # so `ndarray * Tensor` defers to Tensor.__rmul__

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        if isinstance(data, Tensor):
            data = data.data
        if not _is_array(data):
            data = np.asarray(data, dtype=dtype)
        elif dtype is not None and data.dtype != dtype:
            data = data.astype(dtype)
        if requires_grad:
            check_float(data, "a tensor that requires grad")
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.creator: Function | None = None

    # ---- array-like attributes -------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    device = property(lambda self: device_of(self.data))
    T = property(lambda self: self.transpose())

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.data!r}{grad})"

    def numpy(self) -> np.ndarray:
        return to_device(self.data, "cpu")

    def item(self) -> float:
        return self.data.item()

    def detach(self) -> "Tensor":
        return Tensor(self.data)

    def to(self, device: str) -> "Tensor":
        """A copy on "cpu" or "cuda" (itself when already there). Leaves stay leaves."""
        data = to_device(self.data, device)
        if data is self.data:
            return self
        return Tensor(data, requires_grad=self.requires_grad)

    def zero_grad(self) -> None:
        self.grad = None

    # ---- backward ----------------------------------------------------------------------------
    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) * grad into every leaf's `.grad`.

        grad defaults to 1 for a scalar; a non-scalar needs an explicit upstream gradient of
        its own shape. Non-leaf gradients are not kept.
        """
        grads = GradientSums(reuse_arrays=not retain_graph)  # dL/dt of each tensor t, summed
        grads.add(id(self), self._upstream_grad(grad), borrowed=True)  # dL/dself = grad
        for t in self._topological_order():  # every tensor after all the tensors it feeds
            g = grads.take(id(t))
            if g is None:  # t does not lead to self
                continue
            if t.creator is None:  # a leaf (a parameter): accumulate into .grad
                t.grad = grads.keep(g) if t.grad is None else t.grad + g
                continue
            fn = t.creator
            if type(fn) is GetItem and fn.basic and grads.reuse_arrays and not config.observers:
                # a slice (q, k, v of the packed qkv): its gradient is g inside the slice and 0
                # elsewhere, added straight into the input's sum (GetItem.backward, summed:
                # the same numbers, without a zero-filled array of the input's shape per use)
                if fn.inputs[0].requires_grad:
                    grads.add_slice(id(fn.inputs[0]), fn.in_shape, fn.index, g)
                continue
            for inp, ig in zip(fn.inputs, fn._run_backward(g, retain_graph)):  # chain rule
                if ig is None or not isinstance(inp, Tensor) or not inp.requires_grad:
                    continue
                if ig.shape != inp.shape:
                    raise RuntimeError(f"{type(fn).__name__}.backward returned a gradient of "
                                       f"shape {ig.shape} for an input of shape {inp.shape}")
                grads.add(id(inp), ig, borrowed=any(ig is x.data for x in (t, *fn.inputs)))

    def _upstream_grad(self, grad):
        """backward()'s grad as an array of self's shape and dtype (1 for a scalar)."""
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad "
                               "(no input of the computation had requires_grad=True)")
        xp = get_array_module(self.data)
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() without a gradient needs a scalar, got shape "
                                   f"{self.shape}; pass grad= of that shape")
            return xp.ones_like(self.data)
        grad = xp.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)
        if grad.shape != self.shape:
            raise ValueError(f"backward() grad has shape {grad.shape}, tensor has {self.shape}")
        return grad

    def _topological_order(self) -> list["Tensor"]:
        """Tensors reachable from self, each after every tensor that depends on it."""
        order, visited = [], set()
        stack = [(self, False)]
        while stack:  # iterative DFS: deep graphs must not hit Python's recursion limit
            t, children_done = stack.pop()
            if children_done:
                order.append(t)
                continue
            if id(t) in visited:
                continue
            visited.add(id(t))
            stack.append((t, True))
            if t.creator is not None:
                for inp in t.creator.inputs:
                    if isinstance(inp, Tensor) and inp.requires_grad and id(inp) not in visited:
                        stack.append((inp, False))
        return order[::-1]

    # ---- operators -----------------------------------------------------------------------
    def __add__(self, o): return Add.apply(self, o)
    def __radd__(self, o): return Add.apply(o, self)
    def __sub__(self, o): return Sub.apply(self, o)
    def __rsub__(self, o): return Sub.apply(o, self)
    def __mul__(self, o): return Mul.apply(self, o)
    def __rmul__(self, o): return Mul.apply(o, self)
    def __truediv__(self, o): return Div.apply(self, o)
    def __rtruediv__(self, o): return Div.apply(o, self)
    def __neg__(self): return Neg.apply(self)
    def __matmul__(self, o): return MatMul.apply(self, o)
    def __rmatmul__(self, o): return MatMul.apply(o, self)
    def __getitem__(self, index): return GetItem.apply(self, index=index)

    def sum(self, axis=None, keepdims=False): return Sum.apply(self, axis=axis, keepdims=keepdims)
    def mean(self, axis=None, keepdims=False): return Mean.apply(self, axis=axis, keepdims=keepdims)
    def exp(self): return Exp.apply(self)
    def log(self): return Log.apply(self)
    def tanh(self): return Tanh.apply(self)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return Reshape.apply(self, shape=shape)

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return Transpose.apply(self, axes=axes or None)

    permute = transpose


class GradientSums:
    """The gradients of one backward pass, one per tensor, summed over the tensor's uses.

    `add(key, grad)` adds a contribution, `take(key)` hands the total out (once), `keep(grad)`
    makes it a leaf's `.grad`. The one job beyond a dict of sums is to avoid copies: for GPT-1
    this saves a copy of every parameter's gradient (466 MB) per step.

    An array is *owned* when it is a fresh array (not a view) that was handed to one place
    only: then a leaf can keep it as its .grad and further contributions can be added into it
    in place. Anything else (the caller's grad, a view such as reshape's, an array handed to two
    inputs as x + y does, a tensor's own data, or anything under retain_graph, where a Function
    may hand out the same array again) is copied or summed into a new array.
    """

    def __init__(self, reuse_arrays: bool = True):
        self.reuse_arrays = reuse_arrays  # False under retain_graph: never write in place
        self.sums = {}
        self.handed = set()  # ids of every array added so far
        self.shared = set()  # ids of arrays that must not be written or kept

    def owned(self, a) -> bool:
        return self.reuse_arrays and a.base is None and id(a) not in self.shared

    def add(self, key, grad, borrowed: bool = False) -> None:
        """Add grad to the sum for key. borrowed: grad belongs to someone else (the caller's
        gradient, a tensor's own data)."""
        if borrowed or id(grad) in self.handed:
            self.shared.add(id(grad))  # a second place, or not ours
        self.handed.add(id(grad))
        total = self.sums.get(key)
        if total is None:
            self.sums[key] = grad
        elif self.owned(total) and total.dtype == grad.dtype:
            self.sums[key] += grad  # in place: the sum of several uses (tied embedding, q k v)
        else:
            self.sums[key] = total + grad
            self.handed.add(id(self.sums[key]))

    def add_slice(self, key, shape, index, grad) -> None:
        """Add the gradient that is `grad` at [index] (a basic index: ints, slices) and 0
        elsewhere in an array of `shape`, without building that array: into the sum's own
        slice when the sum is owned, else into a fresh copy (a fresh zero array if none)."""
        total = self.sums.get(key)
        if total is not None and self.owned(total) and total.dtype == grad.dtype:
            total[index] += grad
            return
        xp = get_array_module(grad)
        if total is None:
            fresh = xp.zeros(shape, dtype=grad.dtype)
            fresh[index] = grad
        else:
            fresh = xp.array(total, dtype=xp.result_type(total, grad), copy=True)
            fresh[index] += grad
        self.handed.add(id(fresh))
        self.sums[key] = fresh

    def take(self, key):
        """The summed gradient for key (None if nothing was added), removed from the sums."""
        return self.sums.pop(key, None)

    def keep(self, grad):
        """grad as a leaf's new .grad: an array of its own, so that in-place updates of one
        .grad (clipping) never change another's."""
        kept = grad if self.owned(grad) else grad.copy()
        self.shared.add(id(grad))
        return kept


class Function:
    """One differentiable operation: `forward` on arrays, `backward` returning input gradients.

    Subclasses implement `forward(self, *arrays, **options) -> array` and
    `backward(self, grad_output) -> tuple` (one entry per positional input, None where no
    gradient flows). Call an op with `MyOp.apply(*inputs, **options)`.
    """

    def save(self, *arrays) -> None:
        """Keep what backward needs; freed after backward unless retain_graph=True."""
        self._saved = arrays

    @property
    def saved(self):
        if self._saved is None:
            raise RuntimeError(
                "Trying to backward through the graph a second time (the arrays saved for "
                "backward were freed). Pass retain_graph=True to the first backward() call.")
        return self._saved

    def _run_backward(self, grad_output, retain_graph):
        grads = self.backward(grad_output)
        if not isinstance(grads, tuple):
            grads = (grads,)
        for observer in config.observers:
            observer.backward(self, grad_output, grads)
        if len(grads) != len(self.inputs):  # zip() below would drop the extra or missing ones
            n, k = len(grads), len(self.inputs)
            raise RuntimeError(
                f"{type(self).__name__}.backward returned {n} gradient{'s' * (n != 1)} for "
                f"{k} input{'s' * (k != 1)}; return one per positional input (None where no "
                "gradient flows)")
        if not retain_graph:
            self._saved = None
        return grads

    @classmethod
    def run_forward(cls, *arrays, **options):
        """forward on plain arrays and nothing else: no Tensors, no dtype checks, no graph, no
        observers, nothing kept after it returns. For inference loops whose inputs are known
        to be right (KV-cache decoding, GPT.decode), where apply's bookkeeping costs more
        than the op on one token's shapes."""
        fn = cls()
        fn._saved = ()
        fn.needs_input_grad = (False,) * len(arrays)
        return fn.forward(*arrays, **options)

    @classmethod
    def apply(cls, *inputs, **options) -> Tensor:
        fn = cls()
        fn._saved = ()
        tensors = [_as_tensor(x, inputs) for x in inputs]
        # Positional inputs are the differentiable operands: float32 or float64 only, all the
        # same dtype. Integer data (ids, targets, indices, masks) travels as a keyword option.
        for i, t in enumerate(tensors):
            check_float(t.data, f"{cls.__name__} input {i}")
        dtypes = [t.dtype for t in tensors]
        if any(d != dtypes[0] for d in dtypes):
            raise TypeError(f"{cls.__name__}: inputs mix dtypes {sorted(set(map(str, dtypes)))}; "
                            "convert them to one float dtype first (no silent promotion)")
        fn.needs_input_grad = tuple(t.requires_grad for t in tensors)
        out = fn.forward(*(t.data for t in tensors), **options)
        requires_grad = config.grad_enabled and any(fn.needs_input_grad)
        result = Tensor(out)
        if requires_grad:
            result.requires_grad = True
            result.creator = fn
            fn.inputs = tensors
        else:
            fn._saved = None  # nothing will call backward: free what forward kept
        for observer in config.observers:
            observer.forward(fn, tensors, result)
        return result

    def forward(self, *arrays, **options):
        raise NotImplementedError

    def backward(self, grad_output):
        raise NotImplementedError


def _as_tensor(x, siblings) -> Tensor:
    """Wrap a constant (Python number or array) as a Tensor matching its siblings' dtype.

    Python scalars take the dtype of the float tensor beside them, so `x * 0.5` stays float32.
    """
    if isinstance(x, Tensor):
        return x
    if isinstance(x, numbers.Number):
        ref = next((s for s in siblings if isinstance(s, Tensor)), None)
        if ref is not None and ref.dtype.kind == "f":
            xp = get_array_module(ref.data)
            return Tensor(xp.asarray(x, dtype=ref.dtype))
    return Tensor(x)


def unbroadcast(grad, shape):
    """Sum `grad` down to `shape`: the backward of NumPy broadcasting."""
    ### BEGIN SOLUTION
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        i + extra for i, n in enumerate(shape) if n == 1 and grad.shape[i + extra] != 1)
    g = grad.sum(axis=axes, keepdims=True) if axes else grad
    return g.reshape(shape)
    ### END SOLUTION


def _broadcast_shapes(op, a, b):
    try:
        return np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{op}: shapes {a.shape} and {b.shape} do not broadcast") from None


# ---- elementary ops -------------------------------------------------------------------------

class Add(Function):
    """y = a + b (broadcasting).  da = unbroadcast(g), db = unbroadcast(g)."""

    def forward(self, a, b):
        _broadcast_shapes("add", a, b)
        self.shapes = (a.shape, b.shape)
        return a + b

    def backward(self, g):
        return unbroadcast(g, self.shapes[0]), unbroadcast(g, self.shapes[1])


class Sub(Function):
    """y = a - b.  da = g, db = -g (each summed over broadcast axes)."""

    def forward(self, a, b):
        _broadcast_shapes("sub", a, b)
        self.shapes = (a.shape, b.shape)
        return a - b

    def backward(self, g):
        return unbroadcast(g, self.shapes[0]), unbroadcast(-g, self.shapes[1])


class Mul(Function):
    """y = a * b.  da = g * b, db = g * a."""

    def forward(self, a, b):
        _broadcast_shapes("mul", a, b)
        self.save(a, b)
        return a * b

    def backward(self, g):
        ### BEGIN SOLUTION
        a, b = self.saved
        return unbroadcast(g * b, a.shape), unbroadcast(g * a, b.shape)
        ### END SOLUTION


class Div(Function):
    """y = a / b.  da = g / b, db = -g * a / b^2."""

    def forward(self, a, b):
        _broadcast_shapes("div", a, b)
        self.save(a, b)
        return a / b

    def backward(self, g):
        ### BEGIN SOLUTION
        a, b = self.saved
        ga = g / b
        return unbroadcast(ga, a.shape), unbroadcast(-ga * a / b, b.shape)
        ### END SOLUTION


class Neg(Function):
    """y = -x.  dx = -g."""

    def forward(self, x):
        return -x

    def backward(self, g):
        return (-g,)


class MatMul(Function):
    """y = a @ b, batched over leading dims (broadcast).  a (..., n, k), b (..., k, m).

    da = g @ b^T,  db = a^T @ g  (each summed over broadcast batch dims).
    """

    def forward(self, a, b):
        if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are not aligned "
                             "(need (..., n, k) @ (..., k, m))")
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ValueError(f"matmul: batch dimensions of shapes {a.shape} and {b.shape} "
                             "do not broadcast") from None
        self.save(a, b)
        return a @ b

    def backward(self, g):
        ### BEGIN SOLUTION
        a, b = self.saved
        ga = g @ b.swapaxes(-1, -2) if self.needs_input_grad[0] else None  # (..., n, k)
        gb = a.swapaxes(-1, -2) @ g if self.needs_input_grad[1] else None  # (..., k, m)
        return (None if ga is None else unbroadcast(ga, a.shape),
                None if gb is None else unbroadcast(gb, b.shape))
        ### END SOLUTION


class Sum(Function):
    """y = sum(x, axis).  dx = g broadcast back over the summed axes."""

    def forward(self, x, axis=None, keepdims=False):
        self.in_shape, self.axis, self.keepdims = x.shape, axis, keepdims
        return x.sum(axis=axis, keepdims=keepdims)

    def backward(self, g):
        ### BEGIN SOLUTION
        xp = get_array_module(g)
        if self.axis is not None and not self.keepdims:
            g = xp.expand_dims(g, _normalize_axes(self.axis, len(self.in_shape)))
        return (xp.broadcast_to(g, self.in_shape).copy(),)
        ### END SOLUTION


class Mean(Function):
    """y = mean(x, axis).  dx = g / n broadcast back, n = number of elements averaged."""

    def forward(self, x, axis=None, keepdims=False):
        self.in_shape, self.axis, self.keepdims = x.shape, axis, keepdims
        return x.mean(axis=axis, keepdims=keepdims)

    def backward(self, g):
        ### BEGIN SOLUTION
        xp = get_array_module(g)
        axes = _normalize_axes(self.axis, len(self.in_shape))
        n = int(np.prod([self.in_shape[a] for a in axes])) if axes else 1
        if self.axis is not None and not self.keepdims:
            g = xp.expand_dims(g, axes)
        return (xp.broadcast_to(g / g.dtype.type(n), self.in_shape).copy(),)
        ### END SOLUTION


def _normalize_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(sorted(a % ndim for a in axes))


class Reshape(Function):
    """y = x.reshape(shape).  dx = g.reshape(x.shape)."""

    def forward(self, x, shape=()):
        self.in_shape = x.shape
        try:
            return x.reshape(shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape {x.shape} into {tuple(shape)}") from None

    def backward(self, g):
        return (g.reshape(self.in_shape),)


class Transpose(Function):
    """y = x.transpose(axes) (reverse all by default).  dx = g.transpose(inverse(axes))."""

    def forward(self, x, axes=None):
        axes = tuple(range(x.ndim))[::-1] if axes is None else tuple(a % x.ndim for a in axes)
        if sorted(axes) != list(range(x.ndim)):
            raise ValueError(f"transpose: axes {axes} are not a permutation for shape {x.shape}")
        self.inverse = tuple(np.argsort(axes))
        return x.transpose(axes)

    def backward(self, g):
        return (g.transpose(self.inverse),)


class GetItem(Function):
    """y = x[index] (any NumPy index).  dx = zeros with g scatter-added at index.

    Scatter-*add* matters: `x[[0, 0]]` uses row 0 twice, so it gets both gradients.
    """

    def forward(self, x, index=None):
        if isinstance(index, Tensor):
            index = index.data
        self.in_shape, self.index = x.shape, index
        self.basic = _is_basic_index(index)  # (the engine adds a basic slice's g in place)
        return x[index]

    def backward(self, g):
        xp = get_array_module(g)
        dx = xp.zeros(self.in_shape, dtype=g.dtype)
        if self.basic:
            dx[self.index] = g  # ints and slices select each element at most once: no add needed
        else:
            xp.add.at(dx, self.index, g)  # fancy indices may repeat: accumulate
        return (dx,)


def _is_basic_index(index) -> bool:
    """True for ints, slices, None and Ellipsis (alone or in a tuple): a view, never repeats."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (int, np.integer, slice)) or p is None or p is Ellipsis
               for p in parts) and not any(isinstance(p, bool) for p in parts)


class Concatenate(Function):
    """y = concatenate(xs, axis).  dx_i = the slice of g that x_i filled."""

    def forward(self, *xs, axis=0):
        xp = get_array_module(*xs)
        self.axis = axis
        self.sizes = [x.shape[axis] for x in xs]
        try:
            return xp.concatenate(xs, axis=axis)
        except ValueError:
            raise ValueError(f"concatenate: shapes {[x.shape for x in xs]} do not match "
                             f"outside axis {axis}") from None

    def backward(self, g):
        xp = get_array_module(g)
        splits = np.cumsum(self.sizes)[:-1].tolist()
        return tuple(xp.split(g, splits, axis=self.axis))


class Stack(Function):
    """y = stack(xs, axis) (a new axis).  dx_i = g taken at i along that axis."""

    def forward(self, *xs, axis=0):
        xp = get_array_module(*xs)
        if any(x.shape != xs[0].shape for x in xs):
            raise ValueError(f"stack: shapes {[x.shape for x in xs]} differ")
        self.axis, self.n = axis, len(xs)
        return xp.stack(xs, axis=axis)

    def backward(self, g):
        xp = get_array_module(g)
        return tuple(xp.take(g, i, axis=self.axis) for i in range(self.n))


class Exp(Function):
    """y = exp(x).  dx = g * y."""

    def forward(self, x):
        xp = get_array_module(x)
        y = xp.exp(x)
        self.save(y)
        return y

    def backward(self, g):
        (y,) = self.saved
        return (g * y,)


class Log(Function):
    """y = log(x).  dx = g / x."""

    def forward(self, x):
        xp = get_array_module(x)
        self.save(x)
        return xp.log(x)

    def backward(self, g):
        (x,) = self.saved
        return (g / x,)


class Tanh(Function):
    """y = tanh(x).  dx = g * (1 - y^2)."""

    def forward(self, x):
        xp = get_array_module(x)
        y = xp.tanh(x)
        self.save(y)
        return y

    def backward(self, g):
        (y,) = self.saved
        return (g * (1 - y * y),)


def concatenate(tensors, axis: int = 0) -> Tensor:
    return Concatenate.apply(*tensors, axis=axis)


def stack(tensors, axis: int = 0) -> Tensor:
    return Stack.apply(*tensors, axis=axis)
