"""Assess *your* scenario: the questions a team asks before choosing a style, answered by
the simulator for the scenario at hand (a preset or the team's own YAML).

:func:`assess` runs every style of the scenario on common random numbers through four
experiments and returns one tidy long table (``question, case, style, metric, value``):

* ``everyday``: the scenario as written - latency, the caller's wait, throughput, availability;
* ``headroom``: the arrival rate multiplied (1.5x, 2x): does each style still carry it
  (``carried``: completions per second over arrivals per second)?
* ``one service down``: each service of the flow in turn refuses calls for a tenth of the
  run, in the middle - availability, loss, the p99 paid, the drain after;
* ``load-shedding``: a stage-4 day compressed into the run, no backup power: every service on
  one site, then each on a site of its own in neighbouring areas (the rotation takes
  neighbouring areas off one slot after another, so a flow that needs all its sites at once
  is dark most of the day) - availability and the drain.

:func:`verdicts` reads the table into one line per question: which style does best on the
measure that question is about, and by how much.  ``lab assess SCENARIO`` prints both.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pandas as pd

from .errors import LabError
from .run import simulate
from .scenario import Scenario, load_scenario

log = logging.getLogger(__name__)

COLUMNS = ["question", "case", "style", "metric", "value"]
VERDICT_COLUMNS = ["question", "measure", "best", "best_value", "runner_up", "runner_up_value", "tie"]
#: the summary columns each question keeps
METRICS = {
    "everyday": ["latency_p50_s", "latency_p99_s", "response_mean_s", "throughput_per_s", "availability",
                 "staleness_mean_s", "wasted_polls"],
    "headroom": ["carried", "throughput_per_s", "latency_p99_s", "availability", "max_backlog"],
    "one service down": ["availability", "lost", "latency_p99_s", "drain_s", "staleness_mean_s"],
    "load-shedding": ["availability", "lost", "in_flight", "latency_p99_s", "drain_s", "staleness_mean_s"],
}
#: per question, the measure a verdict is about, and whether more is better
DECIDING = {
    "everyday": ("latency_p99_s", False),
    "headroom": ("carried", True),
    "one service down": ("availability", True),
    "load-shedding": ("availability", True),
}
HEADROOM = (1.5, 2.0)
OUTAGE_SHARE = 0.1
STAGE = 4
#: relative difference below which two styles' figures count as the same
TIE = 0.01


def _rows(question: str, case: str, summary: pd.DataFrame, sc: Scenario) -> list[dict[str, Any]]:
    out = []
    window = sc.duration_s - sc.warmup_s
    for _, r in summary.iterrows():
        values = {m: float(r[m]) for m in METRICS[question] if m in summary.columns}
        if question == "headroom":  # completions per second over arrivals per second
            arrivals = r["started"] / window
            values["carried"] = float(r["throughput_per_s"]) / arrivals if arrivals > 0 else math.nan
        out += [{"question": question, "case": case, "style": r["style"], "metric": m, "value": v} for m, v in values.items()]
    return out


def _flow_services(sc: Scenario) -> list[str]:
    return list(sc.steps) if sc.propagation is None else [sc.propagation.source, *sc.propagation.subscribers]


def assess(scenario: Scenario | str, *, seed: int | None = None, questions: list[str] | None = None) -> pd.DataFrame:
    """Run the assessment's experiments on ``scenario`` (every style it names); a tidy long
    table, one row per question, case, style and metric (see :data:`COLUMNS`)."""
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    seed = sc.seed if seed is None else int(seed)
    chosen = list(METRICS) if questions is None else questions
    for q in chosen:
        if q not in METRICS:
            raise LabError(f"unknown question (choose from {', '.join(METRICS)})", source="assess", field=q)
    # the experiments replace the scenario's own faults, so that each measures one thing
    base = sc.replace(faults={}) if not sc.faults.empty else sc
    rows: list[dict[str, Any]] = []
    if "everyday" in chosen:
        rows += _rows("everyday", "as written", simulate(sc, seed=seed).summary, sc)
    if "headroom" in chosen:
        for k in HEADROOM:
            bigger = base.replace(allow_overload=True, **{"workload.rate_per_s": base.workload.rate_per_s * k})
            rows += _rows("headroom", f"rate x{k:g}", simulate(bigger, seed=seed).summary, bigger)
    mid, width = base.warmup_s + (base.duration_s - base.warmup_s) / 2, OUTAGE_SHARE * (base.duration_s - base.warmup_s)
    if "one service down" in chosen:
        for name in _flow_services(base):
            down = base.replace(faults={"outages": [{"service": name, "start_s": mid - width / 2, "duration_s": width}]})
            rows += _rows("one service down", f"{name} down", simulate(down, seed=seed).summary, down)
    if "load-shedding" in chosen:
        names = _flow_services(base)
        cases = {  # no backup power anywhere; the broker and the orchestrator keep theirs
            "one site (area 1)": dict.fromkeys(names, 1),
            "a site per service (areas 1, 2, ...)": {name: (i % 16) + 1 for i, name in enumerate(names)},
        }
        for case, areas in cases.items():
            ls = {"stage": STAGE, "compress": 86400 / base.duration_s, "areas": areas}
            shed = base.replace(faults={"load_shedding": ls})
            rows += _rows("load-shedding", f"stage {STAGE} day, {case}", simulate(shed, seed=seed).summary, shed)
    log.info("assessed %s: %d rows", sc.name, len(rows))
    return pd.DataFrame(rows, columns=COLUMNS)


def verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """One row per question: the best style on the deciding measure (the worst case over
    the question's cases), the runner-up, and both figures."""
    out = []
    for q, (metric, higher) in DECIDING.items():
        if q == "everyday" and table[(table.question == q) & (table.metric == "staleness_mean_s")]["value"].notna().any():
            metric = "staleness_mean_s"  # change propagation: how stale the subscribers' data is
        t = table[(table.question == q) & (table.metric == metric)]
        if t.empty:
            continue
        per_style = t.groupby("style")["value"].agg("min" if higher else "max")  # each style's worst case
        per_style = per_style.dropna()
        if per_style.empty:
            continue
        ranked = per_style.sort_values(ascending=not higher)
        best, value = ranked.index[0], float(ranked.iloc[0])
        runner = ranked.index[1] if len(ranked) > 1 else ""
        runner_value = float(ranked.iloc[1]) if len(ranked) > 1 else math.nan
        # within 1%: the style makes no difference to this measure
        tie = bool(runner) and abs(value - runner_value) <= TIE * max(abs(value), abs(runner_value), 1e-12)
        out.append({"question": q, "measure": f"{metric} (worst case, {'higher' if higher else 'lower'} is better)",
                    "best": best, "best_value": value, "runner_up": runner, "runner_up_value": runner_value, "tie": tie})  # fmt: skip
    return pd.DataFrame(out, columns=VERDICT_COLUMNS)
