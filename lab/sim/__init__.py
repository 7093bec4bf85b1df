"""The SimPy engine."""

from .engine import SimEngine

__all__ = ["SimEngine"]
