"""Cost per call of the fault-calendar queries and the resilience policies.

An engine asks the calendar and the policies on every call, so their cost adds to every
simulated request.  This prints operations per second for each, and for the calendar the
ratio against a naive linear scan of the same intervals measured in the same run.

    .venv/bin/python benchmarks/bench_policies.py [--seed 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lab.faults import fault_calendar
from lab.policies import Bulkhead, CircuitBreaker, RetryBudget, RetryPolicy

N_QUERIES = 200_000
HORIZON_S = 100_000.0
MTBF_S, MTTR_S = 100.0, 10.0  # about 900 down intervals over the horizon


def rate(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    cal = fault_calendar(
        {"crashes": [{"service": "s", "mtbf_s": MTBF_S, "mttr_s": MTTR_S}]}, ["s"], HORIZON_S, args.seed
    )
    intervals = cal.down_intervals("s")
    times = np.random.default_rng(args.seed).uniform(0, HORIZON_S, N_QUERIES).tolist()

    def calendar(n):
        for t in times[:n]:
            cal.is_down("s", t)

    def naive(n):
        for t in times[:n]:
            any(s <= t < e for s, e in intervals)

    def breaker(n):
        cb = CircuitBreaker(failure_threshold=5, open_ms=100)
        for k in range(n):
            now = k * 0.001
            if cb.allow(now):
                (cb.record_failure if k % 7 == 0 else cb.record_success)(now)

    def budget(n):
        b = RetryBudget(ratio=0.1, window_s=10)
        for k in range(n):
            now = k * 0.001
            b.record_request(now)
            if k % 3 == 0 and b.can_retry(now):
                b.record_retry(now)

    def bulkhead(n):
        bh = Bulkhead(max_concurrent=4)
        for _ in range(n):
            if bh.try_acquire():
                bh.release()

    def jitter(n):
        p = RetryPolicy(retries=5, jitter="full")
        rng = np.random.default_rng(args.seed)
        for k in range(n):
            p.delay_s(k % 5 + 1, rng)

    r_cal = rate(calendar, N_QUERIES)
    r_naive = rate(naive, N_QUERIES // 20)
    print(f"calendar with {len(intervals)} down intervals over {HORIZON_S:g} s")
    print(f"is_down (bisect)        {r_cal:12,.0f} /s")
    print(f"is_down (linear scan)   {r_naive:12,.0f} /s   bisect is {r_cal / r_naive:,.0f}x faster")
    for name, fn in (("breaker allow+record", breaker), ("budget request+retry", budget),
                     ("bulkhead acquire+release", bulkhead), ("retry delay (full jitter)", jitter)):
        print(f"{name:24s}{rate(fn, N_QUERIES):12,.0f} /s")


if __name__ == "__main__":
    main()
