"""GPT-1's layer ops, each one `Function` with a hand-derived backward.  `import minigpt.functional as F`.

Each op lives in its own file in minigpt/ops/ (the math, the shapes, the reference Function
and this public function); the tuned CPU versions are in minigpt/fast/ and the CUDA kernels in
minigpt/cuda/. Every function below lets minigpt.dispatch choose among them: see
`minigpt.implementations()` and `minigpt.use("reference" | "fast" | "auto")`.

Conventions: B batch, T time (sequence), C channels (n_embd), V vocabulary, nh heads,
hs head size. Every op keeps its input dtype (float32 stays float32: scalars are Python
floats or cast to the array's dtype, never NumPy float64 scalars, which NumPy 2 would promote).
"""
from __future__ import annotations

from . import fast  # noqa: F401  (registers the tuned CPU versions)
from . import cuda  # noqa: F401  (registers the CUDA kernels as the "cuda" implementations)
from .ops import (GELU, Attention, CrossEntropy, Dropout, Embedding, LayerNorm, Linear,
                  LogSoftmax, Softmax, attention, attention_mask, check_attention_inputs,
                  cross_entropy, dropout, embedding, gelu, layer_norm, linear, linear_gelu,
                  log_softmax, softmax)

__all__ = ["embedding", "linear", "layer_norm", "gelu", "softmax", "log_softmax", "attention",
           "dropout", "cross_entropy", "linear_gelu", "attention_mask", "check_attention_inputs",
           "Embedding", "Linear", "LayerNorm", "GELU", "Softmax", "LogSoftmax", "Attention",
           "Dropout", "CrossEntropy"]

