"""Fault metrics: how far a failure spread, how long recovery took.

Computed after a run from the records, the time series and the fault calendar; the same
code serves every engine.  Definitions (all per style):

- ``blast_radius``: share of workflows started after warm-up that were affected: failed,
  or slower than the p99 latency of the workflows that started before the first fault.
- ``blast_radius_services``: share of the services *without* a fault of their own that
  were affected: a failed step, or a queue/lag more than twice its pre-fault peak.
- ``cascade_depth``: mean number of failed steps per failed workflow (1 when only the
  faulty call fails; more when a synchronous chain fails every caller above it).
- ``downstream_failure_share``: share of failed steps that failed because a call below
  them failed (chain mode), not by their own doing.
- ``recovery_s``: from the end of the last fault until latency *and* throughput are back
  within 10% of before: the rolling median latency (of 20 workflows, by start time) at most
  1.1x the pre-fault median, and the completion rate over a window holding about 200
  pre-fault completions within 10% of the pre-fault rate (or within two Poisson standard
  deviations of the window's count, if that is wider).  A backlog being worked off keeps
  throughput *above* normal, so events recover when their backlog has drained.
- ``drain_s``: from the end of the last fault until the total backlog (queues + consumer
  lag) is back to its pre-fault level (+1).
- ``dlq``, ``retries``, ``fallbacks``, ``duplicates_absorbed``: counts.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .faults import FaultCalendar
from .records import COMPLETED, FAILED, Recorder

NAN = float("nan")


def fault_windows(cal: FaultCalendar | None, until_s: float) -> list[tuple[float, float]]:
    """Merged windows in which any fault was active, clipped to ``[0, until_s]``."""
    if cal is None:
        return []
    df = cal.to_frame()
    if df.empty:
        return []
    spans = sorted((max(0.0, s), min(until_s, e)) for s, e in zip(df["start_s"], df["end_s"], strict=True) if s < until_s)
    merged: list[list[float]] = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged if e > s]


def faulted_names(cal: FaultCalendar | None) -> set[str]:
    if cal is None:
        return set()
    df = cal.to_frame()
    return set(df["service"]) | {p for p in df["peer"] if p}


def fault_metrics(rec: Recorder, style: str, cal: FaultCalendar | None, services: list[str], warmup_s: float, duration_s: float) -> dict[str, float]:
    c = rec.counters
    out: dict[str, float] = {
        name: float(c.get((style, name), 0.0))
        for name in ("dlq", "retries", "fallbacks", "duplicates_absorbed", "redelivered")
    }
    failed_wf = [w for w in rec.workflows if w.style == style and w.status == FAILED]
    failed_steps = [s for s in rec.steps if s.style == style and s.status == FAILED]
    per_wf: dict[int, int] = {}
    for s in failed_steps:
        per_wf[s.workflow_id] = per_wf.get(s.workflow_id, 0) + 1
    out["cascade_depth"] = float(np.mean([per_wf.get(w.workflow_id, 1) for w in failed_wf])) if failed_wf else 0.0
    downstream = c.get((style, "failed_downstream_steps"), 0.0)
    out["downstream_failure_share"] = downstream / len(failed_steps) if failed_steps else 0.0
    windows = fault_windows(cal, duration_s)
    if not windows:
        out.update(blast_radius=0.0, blast_radius_services=0.0, recovery_s=NAN, drain_s=NAN)
        return out
    first, last_end = windows[0][0], windows[-1][1]
    wf = [w for w in rec.workflows if w.style == style and w.started_s >= warmup_s]
    before = np.array([w.finished_s - w.started_s for w in wf if w.status == COMPLETED and w.started_s < first and w.finished_s <= first])
    if before.size >= 20:
        p99 = float(np.percentile(before, 99))
        affected = sum(1 for w in wf if w.status != COMPLETED or (w.finished_s - w.started_s) > p99)
        out["blast_radius"] = affected / len(wf) if wf else NAN
        base_med = float(np.median(before))
        after = sorted((w.started_s, w.finished_s - w.started_s) for w in wf if w.status == COMPLETED and w.started_s >= last_end)
        latency_s = _recovery(after, base_med, last_end)
        base_rate = before.size / max(first - warmup_s, 1e-9)
        finishes = np.sort(np.array([w.finished_s for w in wf if w.status == COMPLETED], dtype=float))
        throughput_s = _throughput_recovery(finishes, base_rate, last_end, duration_s)
        out["recovery_s"] = max(latency_s, throughput_s)  # NaN if either never recovered
    else:
        out["blast_radius"] = sum(1 for w in wf if w.status != COMPLETED) / len(wf) if wf else NAN
        out["recovery_s"] = NAN
    series = [p for p in rec.series if p.style == style and p.metric in ("queue", "lag")]
    out["drain_s"] = _drain(series, first, last_end, warmup_s)
    faulted = faulted_names(cal)
    healthy = [s for s in services if s not in faulted]
    if healthy:
        hit = {s.service for s in failed_steps}
        peak_before: dict[str, float] = {}
        peak_during: dict[str, float] = {}
        for p in series:
            if p.time_s < first:
                peak_before[p.entity] = max(peak_before.get(p.entity, 0.0), p.value)
            elif any(s <= p.time_s <= e for s, e in windows):
                peak_during[p.entity] = max(peak_during.get(p.entity, 0.0), p.value)
        for name in healthy:
            if peak_during.get(name, 0.0) > 2 * (peak_before.get(name, 0.0) + 1):
                hit.add(name)
        out["blast_radius_services"] = len(hit & set(healthy)) / len(healthy)
    else:
        out["blast_radius_services"] = 0.0
    return out


def _recovery(after: list[tuple[float, float]], base_median: float, end_s: float, window: int = 20) -> float:
    if len(after) < window:
        return NAN
    lat = np.array([x for _, x in after])
    starts = np.array([t for t, _ in after])
    rolling = pd.Series(lat).rolling(window).median().to_numpy()
    ok = np.nonzero(rolling[window - 1 :] <= 1.1 * base_median)[0]
    if ok.size == 0:
        return NAN
    return max(0.0, float(starts[ok[0]] - end_s))


def _throughput_recovery(finishes: np.ndarray, base_rate: float, end_s: float, until_s: float, n: int = 200) -> float:
    """Seconds after ``end_s`` until the completion rate over a window of about ``n``
    pre-fault completions is back within 10% (or 2 Poisson standard deviations) of
    ``base_rate``; NaN when it never is before ``until_s``."""
    if base_rate <= 0:
        return NAN
    width = n / base_rate
    tol = max(0.1, 2.0 / math.sqrt(n))
    step = width / 10
    t = end_s
    while t + width <= until_s:
        count = np.searchsorted(finishes, t + width) - np.searchsorted(finishes, t)
        if abs(count / width - base_rate) <= tol * base_rate:
            return t - end_s
        t += step
    return NAN


def _drain(series, first: float, end: float, warmup_s: float) -> float:
    if not series:
        return NAN
    totals: dict[float, float] = {}
    for p in series:
        totals[p.time_s] = totals.get(p.time_s, 0.0) + p.value
    times = sorted(totals)
    base = [totals[t] for t in times if warmup_s <= t < first]
    level = (float(np.mean(base)) if base else 0.0) + 1.0
    for t in times:
        if t >= end and totals[t] <= level:
            return t - end
    return NAN


def timeline(rec: Recorder, style: str, cal: FaultCalendar | None, services: list[str], bucket_s: float, until_s: float) -> pd.DataFrame:
    """Per service and time bucket: ``state`` (up/degraded/down), ``queue`` and ``lag``
    (peak in the bucket), ``failures`` (failed steps ending in it) and, for the whole
    system, ``failed_workflows`` and ``completed_workflows`` (rows with service ``*``)."""
    n = max(1, math.ceil(until_s / bucket_s))
    edges = np.arange(n) * bucket_s
    names = list(services) + (["broker"] if any(p.metric == "lag" for p in rec.series if p.style == style) else [])
    if cal is not None:
        states = cal.timeline(names, bucket_s, until_s)
        state = {(r.name, round(r.t_s / bucket_s)): r.state for r in states.itertuples()}
    else:
        state = {}
    queue: dict[tuple[str, int], float] = {}
    lag: dict[tuple[str, int], float] = {}
    for p in rec.series:
        if p.style != style or p.metric not in ("queue", "lag") or p.time_s >= until_s:
            continue
        k = (p.entity, int(p.time_s // bucket_s))
        table = queue if p.metric == "queue" else lag
        table[k] = max(table.get(k, 0.0), p.value)
    fails: dict[tuple[str, int], int] = {}
    for s in rec.steps:
        if s.style == style and s.status == FAILED and s.finished_s < until_s:
            k = (s.service, int(s.finished_s // bucket_s))
            fails[k] = fails.get(k, 0) + 1
    wf_fail: dict[int, int] = {}
    wf_done: dict[int, int] = {}
    for w in rec.workflows:
        if w.style != style:
            continue
        if w.status == FAILED:
            b = int(w.started_s // bucket_s)
            wf_fail[b] = wf_fail.get(b, 0) + 1
        elif w.status == COMPLETED and w.finished_s < until_s:
            b = int(w.finished_s // bucket_s)
            wf_done[b] = wf_done.get(b, 0) + 1
    rows = []
    for name in names:
        for b, t in enumerate(edges.tolist()):
            k = (name, b)
            rows.append((style, t, name, state.get(k, "up"), queue.get(k, 0.0), lag.get(k, 0.0), fails.get(k, 0), 0, 0))
    for b, t in enumerate(edges.tolist()):
        rows.append((style, t, "*", "up", 0.0, 0.0, 0, wf_fail.get(b, 0), wf_done.get(b, 0)))
    cols = ["style", "time_s", "service", "state", "queue", "lag", "failures", "failed_workflows", "completed_workflows"]
    return pd.DataFrame(rows, columns=cols)
