"""Moved: FusedAttention and FusedSoftmax now live in minigpt/cuda/attention.py."""
from .cuda.attention import FusedAttention, FusedSoftmax, attention, softmax  # noqa: F401

__all__ = ["FusedAttention", "FusedSoftmax", "attention", "softmax"]
