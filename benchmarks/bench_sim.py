"""Simulated workflows per wall-clock second: the lab's SimPy engine against a bare SimPy
model of the same system, written here.

Scenario: a chain of 4 services (exponential service times of 20 ms, one server each),
Poisson arrivals at 30/s (utilisation 0.6 per service), no network latency; the
orchestration style and its event-driven twin (one consumer group of one consumer per
service, broker latency 0).  The bare models draw from numpy the same way and keep
nothing but the latencies; the lab keeps every record and builds its tables.

Run:  .venv/bin/python benchmarks/bench_sim.py [--duration 2000] [--repeat 3]
Prints workflows per CPU-second for each and the ratio lab / bare (target: within 1.3x), both
best against best and as the median of back-to-back pairs; and the same against the bare model
run under the garbage-collector thresholds the lab sets for its runs (lab.sim.engine.collector_tuned),
which isolates the cost of the lab's own code from the collector's.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import simpy

import lab
from lab.sim.engine import collector_tuned

SERVICES = ["s1", "s2", "s3", "s4"]
MEAN_S = 0.020
RATE_PER_S = 30.0


def scenario(duration_s: float, style: str) -> lab.Scenario:
    return lab.load_scenario(
        {
            "name": "bench-chain4",
            "duration_s": duration_s,
            "network": {"latency_ms": 0},
            "broker": {"latency_ms": 0, "partitions": 1},
            "workload": {"rate_per_s": RATE_PER_S},
            "services": {n: {"service_time": {"dist": "exponential", "mean_ms": MEAN_S * 1000}} for n in SERVICES},
            "flow": SERVICES,
            "style": style,
            "series_interval_s": duration_s / 200,
        }
    )


def bare_orchestration(duration_s: float, seed: int) -> int:
    env = simpy.Environment()
    rng = np.random.default_rng(seed)
    res = [simpy.Resource(env, 1) for _ in SERVICES]
    latencies: list[float] = []

    def workflow(times):
        t0 = env.now
        for r, st in zip(res, times, strict=True):
            with r.request() as req:
                yield req
                yield env.timeout(st)
        latencies.append(env.now - t0)

    def arrivals():
        while True:
            yield env.timeout(rng.exponential(1 / RATE_PER_S))
            if env.now >= duration_s:
                return
            env.process(workflow(rng.exponential(MEAN_S, len(SERVICES)).tolist()))

    env.process(arrivals())
    env.run()
    return len(latencies)


def bare_events(duration_s: float, seed: int) -> int:
    env = simpy.Environment()
    rng = np.random.default_rng(seed)
    stores = [simpy.Store(env) for _ in SERVICES]
    latencies: list[float] = []

    def consumer(i):
        while True:
            t0, times = yield stores[i].get()
            yield env.timeout(times[i])
            if i + 1 < len(SERVICES):
                stores[i + 1].put((t0, times))
            else:
                latencies.append(env.now - t0)

    for i in range(len(SERVICES)):
        env.process(consumer(i))

    def arrivals():
        while True:
            yield env.timeout(rng.exponential(1 / RATE_PER_S))
            if env.now >= duration_s:
                return
            stores[0].put((env.now, rng.exponential(MEAN_S, len(SERVICES)).tolist()))

    env.process(arrivals())
    env.run(until=duration_s * 1.5)
    return len(latencies)


def timed(fn) -> tuple[float, int]:
    """CPU seconds of this process (steadier than wall time on a shared machine)."""
    t = time.process_time()
    n = fn()
    return time.process_time() - t, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=2000.0, help="simulated seconds per run")
    ap.add_argument("--repeat", type=int, default=3, help="best of N (interleaved)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(f"4-service chain, {RATE_PER_S:g}/s for {args.duration:g} simulated s, best of {args.repeat}")
    for style, bare in (("orchestration", bare_orchestration), ("events", bare_events)):
        sc = scenario(args.duration, style)
        best = {"lab": float("inf"), "bare": float("inf"), "tuned": float("inf")}
        n = {}
        paired: dict[str, list[float]] = {"bare": [], "tuned": []}  # back-to-back: steadier under drifting load
        for _ in range(args.repeat):
            t_lab, res = timed(lambda sc=sc: lab.simulate(sc, seed=args.seed))
            n["lab"] = int(res.summary["completed"].iloc[0])
            t_bare, n["bare"] = timed(lambda bare=bare: bare(args.duration, args.seed))
            with collector_tuned():  # the bare model with the collector settings the lab runs under
                t_tuned, n["tuned"] = timed(lambda bare=bare: bare(args.duration, args.seed))
            for k, t in (("lab", t_lab), ("bare", t_bare), ("tuned", t_tuned)):
                best[k] = min(best[k], t)
            paired["bare"].append((t_lab / n["lab"]) / (t_bare / n["bare"]))
            paired["tuned"].append((t_lab / n["lab"]) / (t_tuned / n["tuned"]))
        rate = {k: n[k] / best[k] for k in best}
        print(
            f"{style:>13}: lab {rate['lab']:7.0f}/CPU-s   bare SimPy {rate['bare']:7.0f}/CPU-s: lab is "
            f"{rate['bare'] / rate['lab']:.2f}x slower (best vs best), {statistics.median(paired['bare']):.2f}x "
            f"(median of {args.repeat} pairs)   bare with the lab's collector settings {rate['tuned']:7.0f}/CPU-s: "
            f"{rate['tuned'] / rate['lab']:.2f}x, {statistics.median(paired['tuned']):.2f}x"
        )

if __name__ == "__main__":
    main()
