"""Arrival processes: open-model arrival times on the scenario's clock.

Arrivals never wait for the system (no coordinated omission): the same times are used by
every style and every engine for a given seed.
"""

from __future__ import annotations

from collections.abc import Iterator

from .distributions import Uniforms
from .rng import Streams
from .scenario import Workload


def arrival_times(workload: Workload, duration_s: float, streams: Streams) -> Iterator[float]:
    """Yield arrival times in ``[0, duration_s)``.

    ``poisson``: exponential gaps (a time-varying rate by thinning, Lewis and Shedler);
    ``constant``: gaps of ``1 / rate(t)``.
    """
    rate = workload.rate_per_s
    if workload.arrivals == "constant":
        t = 0.0
        step_if_idle = min(1.0, 1.0 / rate)
        while t < duration_s:
            r = rate * workload.multiplier(t)
            if r <= 0:
                t += step_if_idle
                continue
            yield t
            t += 1.0 / r
        return
    gaps = Uniforms(streams.get("arrivals"))
    accept = Uniforms(streams.get("arrivals-thinning"))
    varying = workload.time_varying
    peak = rate * workload.max_multiplier() if varying else rate
    t = 0.0
    from math import log

    while True:
        t += -log(1.0 - gaps()) / peak
        if t >= duration_s:
            return
        if varying and accept() * peak > rate * workload.multiplier(t):
            continue
        yield t
