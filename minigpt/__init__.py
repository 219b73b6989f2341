"""minigpt: GPT-1 from scratch in NumPy, every forward and backward written by hand."""
from . import functional, nn
from .autograd import Function, Tensor, concatenate, is_grad_enabled, no_grad, stack
from .backend import get_array_module, get_backend, set_backend
from .settings import config, using
from .dispatch import implementations, use
from .gradcheck import GradcheckError, gradcheck
from .random import manual_seed

__version__ = "0.1.0"

__all__ = ["Tensor", "Function", "no_grad", "is_grad_enabled", "concatenate", "stack",
           "functional", "nn", "gradcheck", "GradcheckError", "manual_seed",
           "set_backend", "get_backend", "get_array_module", "use", "implementations", "config",
           "using"]

from .model import GPT, GPTConfig  # noqa: E402
from . import optim  # noqa: E402

__all__ += ["GPT", "GPTConfig", "optim"]

from .trace import trace  # noqa: E402  (minigpt.trace(model, idx, targets): every op of one pass)

__all__ += ["trace"]
