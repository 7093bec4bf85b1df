"""Sampling the scenario's distributions, in seconds.

A :class:`Sampler` draws from a numpy Generator in blocks (one numpy call per 1,024
values), which keeps per-draw cost low inside a simulation loop while staying a pure
function of the stream.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .scenario import Dist

BLOCK = 1024


def block_drawer(dist: Dist, rng: np.random.Generator) -> Callable[[int], np.ndarray]:
    """A function ``n -> array of n draws in seconds`` for ``dist``."""
    if dist.dist == "deterministic":
        value = dist.mean_ms / 1000.0
        return lambda n: np.full(n, value)
    if dist.dist == "exponential":
        mean = dist.mean_ms / 1000.0
        return lambda n: rng.exponential(mean, n)
    if dist.dist == "uniform":
        low, high = dist.low_ms / 1000.0, dist.high_ms / 1000.0
        return lambda n: rng.uniform(low, high, n)
    if dist.dist == "lognormal":
        mu, sigma = dist.lognormal_params()
        return lambda n: rng.lognormal(mu, sigma, n) / 1000.0
    raise ValueError(f"unknown distribution {dist.dist!r}")  # pragma: no cover - validated earlier


class Sampler:
    """Draws one value at a time from a distribution, refilling a block when empty."""

    __slots__ = ("_draw", "_buf", "_i", "constant")

    def __init__(self, dist: Dist, rng: np.random.Generator):
        self._draw = block_drawer(dist, rng)
        self.constant = dist.mean_ms / 1000.0 if dist.dist == "deterministic" else None
        self._buf: list[float] = []
        self._i = 0

    def __call__(self) -> float:
        if self.constant is not None:
            return self.constant
        i = self._i
        if i >= len(self._buf):
            self._buf = self._draw(BLOCK).tolist()
            i = 0
        self._i = i + 1
        return self._buf[i]


class Uniforms:
    """Uniform(0, 1) draws in blocks, for failure coins and jitter."""

    __slots__ = ("_rng", "_buf", "_i")

    def __init__(self, rng: np.random.Generator):
        self._rng = rng
        self._buf: list[float] = []
        self._i = 0

    def __call__(self) -> float:
        i = self._i
        if i >= len(self._buf):
            self._buf = self._rng.random(BLOCK).tolist()
            i = 0
        self._i = i + 1
        return self._buf[i]
