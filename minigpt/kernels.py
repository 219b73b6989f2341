"""Moved: the kernel loader and launchers now live in minigpt/cuda/ (loader.py, attention.py).

This name stays for code written against the first release (`import minigpt.kernels as K`,
`minigpt.kernels.use_fused(False)`); new code imports minigpt.cuda.loader / minigpt.cuda.attention.
"""
from .cuda.attention import *  # noqa: F401,F403
from .cuda.attention import __all__ as _attention_names
from .cuda.loader import *  # noqa: F401,F403
from .cuda.loader import __all__ as _loader_names

__all__ = list(_loader_names) + list(_attention_names)
