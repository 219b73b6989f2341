"""The reference ops: one file per op, each the math, the shapes, and a `Function` whose
forward and backward read formula for formula like that math.

    embedding.py      y = W[idx]                     dW: scatter-add
    linear.py         y = x W + b                    dx = g W^T, dW = X^T G, db = sum G
    linear_gelu.py    y = gelu(x W + b)              linear then gelu (one kernel on the GPU)
    layer_norm.py     y = (x - mean) rstd w + b      dx = rstd (gh - mean gh - xhat mean(gh xhat))
    gelu.py           y = 0.5 x (1 + tanh u)         dy/dx by the product rule
    softmax.py        softmax and log_softmax        dx = y (g - sum g y),  g - softmax sum g
    attention.py      softmax(q k^T / sqrt hs) v     + THE mask rule and shape check
    dropout.py        y = x m / (1 - p)              dx = g m / (1 - p)
    cross_entropy.py  mean -log softmax(z)[y]        dz = (softmax - onehot) / K

Each file also holds the public function (`layer_norm(x, w, b)`, ...): it checks its inputs
and lets minigpt.dispatch pick the implementation (this reference, the tuned one in
minigpt/fast/, or a CUDA kernel). `import minigpt.functional as F` collects them all.
"""
from .attention import Attention, attention, attention_mask, check_attention_inputs
from .cross_entropy import CrossEntropy, cross_entropy
from .dropout import Dropout, dropout
from .embedding import Embedding, embedding
from .gelu import GELU, gelu
from .layer_norm import LayerNorm, layer_norm
from .linear import Linear, linear
from .linear_gelu import LinearGELU, linear_gelu
from .softmax import LogSoftmax, Softmax, log_softmax, softmax, stable_log_softmax

__all__ = ["Embedding", "embedding", "Linear", "linear", "LayerNorm", "layer_norm", "GELU",
           "gelu", "Softmax", "softmax", "LogSoftmax", "log_softmax", "stable_log_softmax",
           "Attention", "attention", "attention_mask", "check_attention_inputs", "Dropout",
           "dropout", "CrossEntropy", "cross_entropy", "LinearGELU", "linear_gelu"]
