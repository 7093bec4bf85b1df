"""Compare engines on one scenario: the same summary metrics side by side, with the
relative difference of each engine to the first (usually ``sim`` vs ``http``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..errors import LabError
from ..result import RunResult
from ..scenario import Scenario, load_scenario

#: the metrics compared, in this order
METRICS = (
    "latency_p50_s", "latency_p95_s", "latency_p99_s", "throughput_per_s", "availability",
    "staleness_mean_s", "wasted_polls",
)  # fmt: skip


def compare_results(results: Sequence[RunResult], metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """One row per (style, metric) present in every result: a column per engine and, for each
    engine after the first, ``reldiff_<engine>`` = (engine - first) / first."""
    if len(results) < 2:
        raise LabError("need at least two runs to compare", source="compare")
    engines = [r.engine for r in results]
    styles = [s for s in results[0].summary["style"] if all(s in set(r.summary["style"]) for r in results[1:])]
    rows: list[dict[str, Any]] = []
    for style in styles:
        vals = [r.summary.set_index("style").loc[style] for r in results]
        for m in metrics:
            if m not in vals[0]:
                continue
            row: dict[str, Any] = {"style": style, "metric": m}
            first = float(vals[0][m])
            for e, v in zip(engines, vals, strict=True):
                row[e] = float(v[m])
            for e, v in zip(engines[1:], vals[1:], strict=True):
                x = float(v[m])
                row[f"reldiff_{e}"] = (x - first) / first if first and not math.isnan(first) else math.nan
            if all(math.isnan(row[e]) for e in engines):
                continue
            rows.append(row)
    return pd.DataFrame(rows)


def compare_engines(
    scenario: Scenario | str,
    engines: Sequence[str] = ("sim", "http"),
    *,
    seed: int | None = None,
    options: dict[str, dict[str, Any]] | None = None,
) -> tuple[pd.DataFrame, list[RunResult]]:
    """Run ``scenario`` on each engine (same seed) and compare; ``options`` maps an engine
    to its keyword options (e.g. ``{"http": {"compress": 10}}``).  Returns the comparison
    table and the runs."""
    from ..run import run

    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    seed = sc.seed if seed is None else int(seed)
    results = [run(sc, engine=e, seed=seed, **(options or {}).get(e, {})) for e in engines]
    return compare_results(results), results
