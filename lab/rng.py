"""Random streams: one independent stream per source of randomness, spawned from a seed.

``streams(seed).get("svc:payment")`` always returns the same stream for the same seed and
name, whatever else was drawn before: styles compared in one run draw from the same
named streams (common random numbers), and no code touches a global random state.
"""

from __future__ import annotations

import zlib

import numpy as np

from .errors import LabError


def stream_key(name: str) -> int:
    """A stable 32-bit key for a stream name (Python's ``hash`` is salted per process)."""
    return zlib.crc32(name.encode("utf-8"))


def spawn(seed: int | np.random.SeedSequence, name: str) -> np.random.Generator:
    """The generator of stream ``name`` under ``seed``."""
    entropy = seed.entropy if isinstance(seed, np.random.SeedSequence) else int(seed)
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(stream_key(name),)))


class Streams:
    """Named streams under one seed, created on first use."""

    def __init__(self, seed: int):
        self.seed = int(seed)
        if self.seed < 0:
            raise LabError(f"must be a non-negative integer (got {self.seed})", field="seed")
        self._cache: dict[str, np.random.Generator] = {}

    def get(self, name: str) -> np.random.Generator:
        rng = self._cache.get(name)
        if rng is None:
            rng = self._cache[name] = spawn(self.seed, name)
        return rng


def replication_seeds(root_seed: int, n: int) -> list[int]:
    """Independent 63-bit seeds for ``n`` replications, spawned from ``root_seed``."""
    children = np.random.SeedSequence(int(root_seed)).spawn(n)
    return [int(c.generate_state(2, dtype=np.uint64)[0] >> np.uint64(1)) for c in children]
