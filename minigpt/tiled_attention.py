"""Moved: the NumPy flash attention now lives in minigpt/cuda/tiled_attention.py."""
from .cuda.tiled_attention import *  # noqa: F401,F403
from .cuda.tiled_attention import __all__  # noqa: F401
