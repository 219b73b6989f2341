"""Modules: containers of parameters with PyTorch's names (`parameters`, `state_dict`, ...).

A Module's attributes that are `Parameter`s or `Module`s are registered in assignment order,
so `named_parameters()` yields dotted names such as `h.0.attn.c_attn.weight`, exactly the
names HuggingFace's GPT-1 uses, and weights can move between the two by name.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from . import functional as F
from .autograd import Tensor
from .backend import get_array_module, to_device, xp_default
from .checks import short_list
from .random import get_rng


class Parameter(Tensor):
    """A Tensor that a Module owns and an optimizer updates (requires_grad is always True)."""

    def __init__(self, data):
        super().__init__(data, requires_grad=True)

    def __repr__(self):
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


class Module:
    def __init__(self):
        object.__setattr__(self, "_params", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_params" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                               "before assigning attributes")
        # re-assigning a registered name (weight tying: `a.weight = b.weight`) keeps its
        # place in the order, as in PyTorch, so state_dict order does not depend on it
        if isinstance(value, Parameter):
            self._modules.pop(name, None)
            self._params[name] = value
        elif isinstance(value, Module):
            self._params.pop(name, None)
            self._modules[name] = value
        else:
            self._params.pop(name, None)
            self._modules.pop(name, None)
        object.__setattr__(self, name, value)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    # ---- traversal ---------------------------------------------------------------------
    def named_modules(self, prefix: str = ""):
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}{name}.")

    def named_parameters(self, prefix: str = ""):
        """(dotted name, Parameter) pairs; a parameter shared by two modules appears once."""
        seen = set()
        for mod_prefix, m in self.named_modules(prefix):
            for name, p in m._params.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield mod_prefix + name, p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # ---- modes and gradients -----------------------------------------------------------
    def train(self, mode: bool = True):
        for _, m in self.named_modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def to(self, device: str):
        """Move every parameter to "cpu" or "cuda" in place; returns self."""
        for p in self.parameters():
            p.data = to_device(p.data, device)
            if p.grad is not None:
                p.grad = to_device(p.grad, device)
        return self

    def astype(self, dtype):
        """Cast every parameter to a float dtype in place (float64 for gradient checks)."""
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = None
        return self

    # ---- state dict --------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, object]":
        """name -> array (the parameters' own arrays, not copies, as in PyTorch)."""
        return OrderedDict((name, p.data) for name, p in self.named_parameters())

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy arrays into the parameters by name, checking names and shapes first.

        strict: missing or unexpected keys raise KeyError naming them. Any shape mismatch
        raises ValueError naming the parameter and both shapes. Nothing is changed on error.
        """
        state = {k: (v.data if isinstance(v, Tensor) else v) for k, v in state.items()}
        own = OrderedDict(self.named_parameters())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys: [{short_list(missing, quote=True)}]")
            if unexpected:
                parts.append(f"unexpected keys: [{short_list(unexpected, quote=True)}]")
            raise KeyError(f"load_state_dict for {type(self).__name__}: " + "; ".join(parts))
        for name, p in own.items():
            if name in state and tuple(state[name].shape) != p.shape:
                raise ValueError(f"load_state_dict: parameter {name!r} has shape {p.shape} but "
                                 f"the state dict holds shape {tuple(state[name].shape)}")
        for name, p in own.items():
            if name in state:
                xp = get_array_module(p.data)
                value = to_device(state[name], "cuda" if xp is not np else "cpu")
                p.data = xp.array(value, dtype=p.dtype, copy=True)
                p.grad = None


class ModuleList(Module):
    """A list of modules registered as `0`, `1`, ... (GPT-1's `h.0`, `h.1`, ...)."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module: Module) -> None:
        setattr(self, str(len(self._modules)), module)

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]


def _normal(shape, std, dtype, rng):
    """N(0, std^2) initial values drawn on the CPU from `rng` (reproducible across backends)."""
    values = rng.standard_normal(shape, dtype=np.float64) * std
    return xp_default().asarray(values.astype(dtype))


class Linear(Module):
    """y = x @ weight + bias, weight stored (in, out) like GPT-1's and HuggingFace's Conv1D."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 std: float = 0.02, dtype=np.float32, rng=None):
        super().__init__()
        rng = rng if rng is not None else get_rng(np)
        self.weight = Parameter(_normal((in_features, out_features), std, dtype, rng))
        self.bias = Parameter(xp_default().zeros(out_features, dtype=dtype)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class Embedding(Module):
    def __init__(self, num_embeddings: int, embedding_dim: int, std: float = 0.02,
                 dtype=np.float32, rng=None):
        super().__init__()
        rng = rng if rng is not None else get_rng(np)
        self.weight = Parameter(_normal((num_embeddings, embedding_dim), std, dtype, rng))

    def forward(self, idx):
        return F.embedding(idx, self.weight)


class LayerNorm(Module):
    def __init__(self, dim: int, eps: float = 1e-5, dtype=np.float32):
        super().__init__()
        xp = xp_default()
        self.eps = eps
        self.weight = Parameter(xp.ones(dim, dtype=dtype))
        self.bias = Parameter(xp.zeros(dim, dtype=dtype))

    def forward(self, x):
        return F.layer_norm(x, self.weight, self.bias, self.eps)


class Dropout(Module):
    """Inverted dropout while training, identity in eval mode. rng: None = minigpt's global."""

    def __init__(self, p: float = 0.1, rng=None):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.rng = rng

    def forward(self, x):
        return F.dropout(x, self.p, self.training, self.rng)


__all__ = ["Module", "ModuleList", "Parameter", "Linear", "Embedding", "LayerNorm", "Dropout",
           "Tensor"]
