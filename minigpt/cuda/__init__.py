"""minigpt on the GPU: hand-written CUDA kernels (kernels/*.cu) behind autograd Functions.

    loader.py           find the .cu files, compile them once per GPU (CuPy's RawModule),
                        argument hygiene, the launch call, the on/off switch use_fused()
    attention.py        kernels 01-05 and 10: softmax and flash attention (attention dropout
                        inside the kernels, the one-pass backward), FusedAttention/FusedSoftmax
    gelu.py             kernel 07: bias + GELU, FusedGELU and FusedLinearGELU (op linear_gelu)
    layers.py           kernels 06 and 08: LayerNorm (optionally with the residual add) and
                        softmax + cross-entropy, as autograd Functions
    adam.py             kernel 09: GPT-1's Adam over every parameter in one launch
    tiled_attention.py  the flash algorithm of 04/05 in NumPy, readable (the CPU twin)

Importing this package imports nothing heavy: CuPy is imported only through minigpt.backend,
and only when a kernel is first launched. Each module registers its Functions as the "cuda"
implementation of its op with minigpt.dispatch when it is imported.
"""
from . import adam, attention, gelu, layers, loader  # noqa: E402,F401  (light: NumPy only; registers)

__all__ = ["adam", "attention", "gelu", "layers", "loader"]
