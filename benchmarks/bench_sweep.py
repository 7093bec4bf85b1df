"""Sweep benchmark: a 16-point sweep on 1 worker and on 2 worker processes, against the
same 16 runs in a plain loop of ``lab.simulate``.

Prints the speed-up of 2 workers over 1 (target: >= 1.8x on 2 free cores) and the
per-point overhead of the sweep machinery (grid, scenario building, hashing, progress,
Parquet store, compaction) over the plain loop (target: < 5%).  Every figure is the
median of ``--repeats`` interleaved repetitions, measured in the same process run, so
a busy machine slows the baseline as much as the sweep.

    .venv/bin/python benchmarks/bench_sweep.py [--repeats 3] [--duration 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
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


def swept(base: lab.Scenario, workers: int, tmp: Path) -> tuple[float, float]:
    """(wall s, CPU s of this process: all of it for 1 worker, which runs in-process)"""
    out = tmp / f"w{workers}-{time.monotonic_ns()}.parquet"
    t0, c0 = time.perf_counter(), time.process_time()
    df = sweep(base, GRID, replications=1, seed=SEED, workers=workers, out=out, progress=False)
    elapsed = time.perf_counter() - t0, time.process_time() - c0
    assert len(df) == 16 and df["error"].isna().all()
    shutil.rmtree(out)
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=float, default=1000.0, help="simulated seconds per run")
    args = ap.parse_args()
    base = lab.load_scenario("mm1-teaching", duration_s=args.duration, warmup_s=args.duration / 10)
    lab.simulate(base, seed=1)  # warm imports and caches once
    loop, one, two = [], [], []
    with tempfile.TemporaryDirectory() as d:
        for _ in range(args.repeats):
            loop.append(plain_loop(base))
            one.append(swept(base, 1, Path(d)))
            two.append(swept(base, 2, Path(d)))
    t_loop, t_one, t_two = (statistics.median(w for w, _ in x) for x in (loop, one, two))
    c_loop, c_one = (statistics.median(c for _, c in x) for x in (loop, one))
    n = len(expand_grid(GRID))
    print(f"cpus: {os.cpu_count()}   load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"16-point sweep of mm1-teaching ({args.duration:g} simulated s a run), median of {args.repeats}:")
    print(f"  plain loop of lab.simulate : {t_loop:7.2f} s  ({1000 * t_loop / n:.0f} ms a point)")
    print(f"  lab.sweep, 1 worker        : {t_one:7.2f} s")
    print(f"  lab.sweep, 2 workers       : {t_two:7.2f} s")
    print(f"speed-up 2 workers vs 1      : {t_one / t_two:.2f}x   (target >= 1.8x on 2 free cores)")
    over = (t_one - t_loop) / t_loop
    print(f"sweep overhead vs plain loop : {100 * over:+.1f}% wall ({1000 * (t_one - t_loop) / n:+.1f} ms a point; target < 5%)")
    over = (c_one - c_loop) / c_loop
    print(f"                               {100 * over:+.1f}% CPU  ({1000 * (c_one - c_loop) / n:+.1f} ms a point; "
          "CPU time is what a busy machine distorts least)")


if __name__ == "__main__":
    main()
