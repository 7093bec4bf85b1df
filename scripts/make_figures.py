"""Regenerate the README's figures (docs/figures/*.png): small PNGs of the key pictures.

    .venv/bin/python scripts/make_figures.py            # all figures, about a minute on 2 cores
    .venv/bin/python scripts/make_figures.py --only polling_tradeoff

Every figure is simulated here with a fixed seed (the same PNG on every machine, up to
font rendering) by calling :mod:`lab` and :mod:`lab.plots`; nothing is drawn by hand.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

import lab  # noqa: E402
from lab import loadshedding, plots  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "figures"
DPI = 80
SEED = 2026
log = logging.getLogger("make_figures")


def _save(fig, name: str, out: Path) -> Path:
    path = out / f"{name}.png"
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def latency_cdf(out: Path) -> Path:
    r = lab.simulate("fintech-hybrid", seed=SEED, duration_s=120, warmup_s=20)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    plots.plot_latency_cdf(r.records, ax=axes[0], column="response", title="fintech: the customer's wait")
    plots.plot_latency_cdf(r.records, ax=axes[1], title="fintech: until compliance and alerts are done")
    fig.tight_layout()
    return _save(fig, "latency_cdf", out)


def polling_tradeoff(out: Path) -> Path:
    base = lab.load_scenario("crm-sync", duration_s=900, warmup_s=60, **{"workload.rate_per_s": 0.05})
    rows = [lab.simulate(base, seed=SEED, **{"propagation.poll_interval_ms": s * 1000}).summary.assign(poll_interval_s=s)
            for s in (1, 2, 5, 10, 30, 60, 120)]
    table = pd.concat(rows, ignore_index=True)
    table["wasted_polls_per_s"] = table["wasted_polls"] / (base.duration_s - base.warmup_s)
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    plots.plot_polling_tradeoff(table, ax=ax, interval="poll_interval_s",
                                title="crm-sync: 4 branches, one change per 20 s")
    return _save(fig, "polling_tradeoff", out)


def _chain(n: int, failure_prob: float, **extra) -> lab.Scenario:
    names = [f"s{i}" for i in range(1, n + 1)]
    svc = {"service_time": {"dist": "exponential", "mean_ms": 10}, "concurrency": 4, "failure_prob": failure_prob}
    return lab.load_scenario({
        "name": f"chain-{n}", "duration_s": 120, "warmup_s": 10, "seed": 7, "workload": {"rate_per_s": 20},
        "services": {s: dict(svc) for s in names}, "flow": names, "style": ["orchestration", "events"], **extra})


def availability_chain(out: Path) -> Path:
    rows = [lab.simulate(_chain(n, 0.01)).summary.assign(chain_length=n) for n in (1, 2, 3, 4, 6, 8)]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    plots.plot_availability_vs_chain(pd.concat(rows), ax=ax, service_availability=0.99,
                                     title="each call fails 1%: availability of the workflow")
    return _save(fig, "availability_chain", out)


def failure_propagation(out: Path) -> Path:
    sc = _chain(4, 0.0, faults={"outages": [{"service": "s3", "start_s": 60, "duration_s": 60, "mode": "refuse"}]},
                orchestration={"timeout_ms": 1000}).replace(duration_s=240)
    r = lab.simulate(sc)
    fig, ax = plt.subplots(figsize=(10, 3.6))
    plots.plot_failure_propagation(r.timeline, ax=ax, bucket_s=5, title="s3 of a 4-service chain down from 60 s to 120 s")
    return _save(fig, "failure_propagation", out)


AREAS = {
    "gateway": 1,
    "tracker": {"area": 5, "backup": "cell_tower"},
    "erp": {"area": 9, "backup": {"kind": "generator", "start_delay_min": 2}},
    "broker": {"area": 3, "backup": {"kind": "battery", "runtime_h": 2, "recharge_h": 8}},
}


def loadshedding_backlog(out: Path) -> Path:
    day_s = 720
    sc = lab.load_scenario("supply-chain", duration_s=day_s, warmup_s=0, **{
        "workload.day_length_s": day_s, "workload.rate_per_s": 2, "orchestration.timeout_ms": 5000,
        "faults": {"load_shedding": {"stage": 4, "compress": 86400 / day_s, "areas": AREAS}}})
    r = lab.simulate(sc)
    sites = [*sc.services, "broker", "orchestrator"]
    cal = loadshedding.calendar_frame(loadshedding.outage_calendar(sc.faults.load_shedding, sites, day_s, seed=sc.seed))
    fig, ax = plt.subplots(figsize=(10, 3.4))
    plots.plot_backlog(r.series, ax=ax, outages=cal, time_unit="min",
                       title="supply chain through a stage-4 day compressed to 12 minutes (grey: a site dark)")
    return _save(fig, "loadshedding_backlog", out)


def saturation(out: Path) -> Path:
    sc = lab.load_scenario("fintech-hybrid", duration_s=60, warmup_s=10, style=["orchestration", "events"],
                           **{"workload.bursts": [], "orchestration.retries": 0})
    runs = lab.sweep(sc, {"workload.rate_per_s": [10, 20, 40, 55, 65, 75, 90]}, replications=2, seed=SEED,
                     workers=1, progress=False)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    plots.plot_throughput_vs_load(runs, ax=axes[0], title="fintech: throughput against offered load")
    plots.plot_latency_vs_load(runs, ax=axes[1], title="fintech: p95 latency against offered load")
    fig.tight_layout()
    return _save(fig, "saturation", out)


def sweep_ci(out: Path) -> Path | None:
    stored = ROOT / "data" / "sweeps" / "crm-sync-poll-vs-rate.parquet"
    if not stored.exists():
        log.warning("skipping sweep_ci: %s is not there (run `lab sweep examples/sweeps/crm-sync-poll-vs-rate.yaml`)", stored)
        return None
    runs = lab.read_sweep(stored).drop_duplicates(["run_id", "style"])  # one row per run and style
    ci = lab.sweep_ci(runs, metrics=["staleness_mean_s"])
    at = ci[ci["workload.rate_per_s"] == sorted(ci["workload.rate_per_s"].unique())[1]]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    plots.plot_sweep_ci(at, ax=ax, x="propagation.poll_interval_ms", metric="staleness_mean_s",
                        xlabel="poll interval (ms)", ylabel="mean staleness (s)",
                        title="crm-sync sweep: staleness, 95% CI over replications")
    return _save(fig, "sweep_ci", out)


def loadshedding_sweep(out: Path) -> Path | None:
    stored = ROOT / "data" / "sweeps" / "retail-loadshedding-stage-x-style.parquet"
    if not stored.exists():
        log.warning("skipping loadshedding_sweep: %s is not there", stored)
        return None
    ci = lab.sweep_ci(lab.read_sweep(stored), metrics=["availability"])
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    plots.plot_sweep_ci(ci, ax=ax, x="faults.load_shedding.stage", metric="availability",
                        xlabel="load-shedding stage", title="retail sales completed under load-shedding, 95% CI")
    return _save(fig, "loadshedding_sweep", out)


FIGURES = {
    "latency_cdf": latency_cdf,
    "polling_tradeoff": polling_tradeoff,
    "availability_chain": availability_chain,
    "failure_propagation": failure_propagation,
    "loadshedding_backlog": loadshedding_backlog,
    "saturation": saturation,
    "sweep_ci": sweep_ci,
    "loadshedding_sweep": loadshedding_sweep,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate docs/figures/*.png")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--only", action="append", choices=sorted(FIGURES), help="make only this figure (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or FIGURES:
        path = FIGURES[name](args.out)
        if path is not None:
            print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
