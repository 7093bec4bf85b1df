"""Sweep benchmark: a 16-point sweep on 1 worker and on 2 worker processes, against the
same 16 runs in a plain loop of ``lab.simulate``.

Prints the speed-up of 2 workers over 1 (target: >= 1.8x on 2 free cores) and the
per-point overhead of the sweep machinery (grid, scenario building, hashing, progress,
Parquet store, compaction) over the plain loop (target: < 5%).  The three variants are
interleaved ``--repeats`` times in one process run, so a busy machine slows the baseline
as much as the sweep; figures are given for the median and for the best repeat (the
least disturbed one), with the load average, since a shared machine cannot give the
2-worker figure two free cores.

    .venv/bin/python benchmarks/bench_sweep.py [--repeats 3] [--duration 1000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lab
from lab.sweep import expand_grid, replication_seeds, sweep

GRID = {"workload.rate_per_s": [4, 5, 6, 7], "services.worker.service_time.mean_ms": [60, 80, 100, 110]}
SEED = 0


def plain_loop(base: lab.Scenario) -> tuple[float, float]:
    """(wall s, CPU s of this process)"""
    t0, c0 = time.perf_counter(), time.process_time()
    seed = replication_seeds(SEED, 1)[0]
    for p in expand_grid(GRID):
        lab.simulate(base.replace(**p), seed=seed).summary  # noqa: B018 - the same work the sweep stores
    return time.perf_counter() - t0, time.process_time() - c0


def _one_point(args: tuple[lab.Scenario, dict, int]) -> None:
    base, point, seed = args
    lab.simulate(base.replace(**point), seed=seed).summary  # noqa: B018


def plain_pool(base: lab.Scenario) -> tuple[float, float]:
    """The same 16 runs on a bare ``multiprocessing.Pool(2)`` (fork): what any 2-process
    executor can get from this machine right now, the ceiling for the sweep's 2 workers."""
    seed = replication_seeds(SEED, 1)[0]
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(_one_point, [(base, p, seed) for p in expand_grid(GRID)], chunksize=1)
    return time.perf_counter() - t0, 0.0


def swept(base: lab.Scenario, workers: int, tmp: Path) -> tuple[float, float]:
    """(wall s, CPU s of this process: all of it for 1 worker, which runs in-process)"""
    out = tmp / f"w{workers}-{time.monotonic_ns()}.parquet"
    t0, c0 = time.perf_counter(), time.process_time()
    df = sweep(base, GRID, replications=1, seed=SEED, workers=workers, out=out, progress=False)
    elapsed = time.perf_counter() - t0, time.process_time() - c0
    assert len(df) == 16 and df["error"].isna().all()
    shutil.rmtree(out)
    return elapsed


def machinery_only(base: lab.Scenario, tmp: Path, repeats: int = 5) -> float:
    """Seconds a point that the sweep machinery costs by itself: the same 16-point sweep
    (1 worker, with ``out``) with the engine's answer precomputed, so only the sweep's own
    work is timed (grid, scenarios, keys, rows, progress, Parquet, compaction, read-back).
    A direct measurement, far less sensitive to a busy machine than a difference of two
    long wall-clock times."""
    mod = sys.modules["lab.sweep"]
    canned = lab.simulate(base, seed=1).summary
    real = mod._simulate
    mod._simulate = lambda scenario, seed: canned
    try:
        times = []
        for i in range(repeats):
            out = tmp / f"m{i}.parquet"
            t0 = time.perf_counter()
            sweep(base, GRID, replications=1, seed=SEED, workers=1, out=out, progress=False)
            times.append(time.perf_counter() - t0)
            shutil.rmtree(out)
    finally:
        mod._simulate = real
    return min(times) / len(expand_grid(GRID))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=float, default=1000.0, help="simulated seconds per run")
    args = ap.parse_args()
    base = lab.load_scenario("mm1-teaching", duration_s=args.duration, warmup_s=args.duration / 10)
    lab.simulate(base, seed=1)  # warm imports and caches once
    loop, one, two, pool = [], [], [], []
    with tempfile.TemporaryDirectory() as d:
        for _ in range(args.repeats):
            loop.append(plain_loop(base))
            one.append(swept(base, 1, Path(d)))
            two.append(swept(base, 2, Path(d)))
            pool.append(plain_pool(base))
        machinery = machinery_only(base, Path(d))
    n = len(expand_grid(GRID))
    print(f"cpus: {os.cpu_count()}   load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"16-point sweep of mm1-teaching ({args.duration:g} simulated s a run), {args.repeats} interleaved repeats:")
    for label, pick in (("median", statistics.median), ("best", min)):
        t_loop, t_one, t_two, t_pool = (pick(w for w, _ in x) for x in (loop, one, two, pool))
        c_loop, c_one = (pick(c for _, c in x) for x in (loop, one))
        print(f"[{label}]")
        print(f"  plain loop of lab.simulate : {t_loop:7.2f} s  ({1000 * t_loop / n:.0f} ms a point)")
        print(f"  lab.sweep, 1 worker        : {t_one:7.2f} s")
        print(f"  lab.sweep, 2 workers       : {t_two:7.2f} s")
        print(f"  bare multiprocessing.Pool(2): {t_pool:7.2f} s")
        print(f"  speed-up 2 workers vs 1    : {t_one / t_two:.2f}x   (target >= 1.8x on 2 free cores)")
        print(f"  bare Pool(2) vs plain loop : {t_loop / t_pool:.2f}x   (what 2 processes can get here now; "
              f"the sweep's 2 workers reach {t_pool / t_two:.0%} of it)")
        over = (t_one - t_loop) / t_loop
        print(f"  overhead vs plain loop     : {100 * over:+.1f}% wall ({1000 * (t_one - t_loop) / n:+.1f} ms a point; target < 5%)")
        over = (c_one - c_loop) / c_loop
        print(f"                               {100 * over:+.1f}% CPU  ({1000 * (c_one - c_loop) / n:+.1f} ms a point)")

    per_point = min(w for w, _ in loop) / n
    print(f"sweep machinery alone        : {1000 * machinery:.1f} ms a point = {100 * machinery / per_point:.1f}% of a "
          f"{1000 * per_point:.0f} ms point (target < 5%)")


if __name__ == "__main__":
    main()
