"""Records: plain rows appended during a run, one schema for every engine.

Engines append named tuples to a :class:`Recorder`; pandas appears only at the edge,
in :meth:`Recorder.frames` and :func:`summarize`.  Times are seconds from the start of
the run (simulated seconds for the sim engine, wall-clock seconds for real engines).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

NAN = float("nan")

COMPLETED, FAILED, IN_FLIGHT = "completed", "failed", "in_flight"


class WorkflowRecord(NamedTuple):
    """One business workflow (one arrival; for change propagation, one change)."""

    style: str
    workflow_id: int
    started_s: float
    finished_s: float  # NaN when it did not finish
    status: str  # completed | failed | in_flight
    reason: str  # empty, or what failed it: "error:payment", "timeout:payment", "refused:payment"
    response_s: float  # when the caller had its answer (orchestration: end; hybrid: end of core)


class StepRecord(NamedTuple):
    """One service's part in a workflow (for propagation: one subscriber's awareness)."""

    style: str
    workflow_id: int
    service: str
    started_s: float
    finished_s: float
    status: str
    attempts: int
    staleness_s: float  # job done (or change made) until the caller/subscriber knew; NaN if n/a


class PollRecord(NamedTuple):
    """One poll of a status endpoint or a change feed."""

    style: str
    poller: str
    target: str
    time_s: float
    useful: bool  # False: returned nothing new (a wasted poll)


class EventRecord(NamedTuple):
    """One event delivered to one consumer group."""

    style: str
    topic: str
    group: str
    partition: int
    offset: int
    key: int
    published_s: float
    processed_s: float  # NaN when never processed
    duplicate: bool


class SeriesPoint(NamedTuple):
    """A sample of a time series: queue length, consumer lag, in-flight workflows..."""

    style: str
    time_s: float
    metric: str
    entity: str
    value: float


@dataclass
class Recorder:
    """Where an engine appends its rows.  Plain lists: cheap to append, easy to test."""

    workflows: list[WorkflowRecord] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    polls: list[PollRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    series: list[SeriesPoint] = field(default_factory=list)
    counters: dict[tuple[str, str], float] = field(default_factory=dict)

    def count(self, style: str, name: str, by: float = 1.0) -> None:
        key = (style, name)
        self.counters[key] = self.counters.get(key, 0.0) + by

    def extend(self, other: Recorder) -> None:
        self.workflows += other.workflows
        self.steps += other.steps
        self.polls += other.polls
        self.events += other.events
        self.series += other.series
        for k, v in other.counters.items():
            self.counters[k] = self.counters.get(k, 0.0) + v

    def frames(self) -> dict[str, pd.DataFrame]:
        return {
            "workflows": pd.DataFrame(self.workflows, columns=WorkflowRecord._fields),
            "steps": pd.DataFrame(self.steps, columns=StepRecord._fields),
            "polls": pd.DataFrame(self.polls, columns=PollRecord._fields),
            "events": pd.DataFrame(self.events, columns=EventRecord._fields),
            "series": pd.DataFrame(self.series, columns=SeriesPoint._fields),
        }


SUMMARY_COLUMNS = [
    "scenario", "style", "engine", "seed", "started", "completed", "failed",
    "throughput_per_s", "latency_mean_s", "latency_p50_s", "latency_p95_s", "latency_p99_s",
    "availability", "polls", "wasted_polls", "staleness_mean_s", "max_backlog", "lost", "duplicates",
]  # fmt: skip


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else NAN


def summarize_style(
    rec: Recorder,
    *,
    scenario: str,
    style: str,
    engine: str,
    seed: int,
    warmup_s: float,
    end_s: float,
) -> dict[str, float | int | str]:
    """The summary row of one style.

    Latency is end to end, of completed workflows started after warm-up; availability is
    completed / started over those workflows; throughput counts completions after warm-up
    per second of the measured window.
    """
    # one pass over the workflows (a sweep summarises millions of them)
    latencies: list[float] = []
    n_started = n_failed = completions = 0
    for w in rec.workflows:
        if w.style != style:
            continue
        status = w.status
        if status == COMPLETED and warmup_s <= w.finished_s <= end_s:
            completions += 1
        if w.started_s >= warmup_s:
            n_started += 1
            if status == COMPLETED:
                latencies.append(w.finished_s - w.started_s)
            elif status == FAILED:
                n_failed += 1
    done = np.array(latencies, dtype=float)
    window = max(end_s - warmup_s, 1e-12)
    polls = [p for p in rec.polls if p.style == style and p.time_s >= warmup_s]
    stale = np.array(  # x == x: not NaN, the cheap test first (most steps have no staleness)
        [s.staleness_s for s in rec.steps if s.staleness_s == s.staleness_s and s.style == style and s.started_s >= warmup_s],
        dtype=float,
    )
    backlog = [p.value for p in rec.series if p.style == style and p.metric in ("lag", "queue")]
    c = rec.counters
    row: dict[str, float | int | str] = {
        "scenario": scenario,
        "style": style,
        "engine": engine,
        "seed": int(seed),
        "started": n_started,
        "completed": int(done.size),
        "failed": int(n_failed),
        # started, neither completed nor failed when the run ended: hung on a dead peer with
        # no timeout, or still in the pipeline (availability counts them as not completed)
        "in_flight": int(n_started - done.size - n_failed),
        "throughput_per_s": completions / window,
        "latency_mean_s": float(done.mean()) if done.size else NAN,
        "latency_p50_s": _pct(done, 50),
        "latency_p95_s": _pct(done, 95),
        "latency_p99_s": _pct(done, 99),
        "availability": done.size / n_started if n_started else NAN,
        "polls": len(polls),
        "wasted_polls": sum(1 for p in polls if not p.useful),
        "staleness_mean_s": float(stale.mean()) if stale.size else NAN,
        "max_backlog": float(max(backlog)) if backlog else float(c.get((style, "max_backlog"), 0.0)),
        "lost": int(c.get((style, "lost"), 0)),
        "duplicates": int(c.get((style, "duplicates"), 0)),
    }
    return row


def summary_frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    front = [c for c in SUMMARY_COLUMNS if c in df.columns]
    return df[front + [c for c in df.columns if c not in front]]
