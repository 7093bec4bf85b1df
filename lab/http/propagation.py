"""Change propagation over HTTP: polling a change feed vs pushed webhooks.

The workload's arrivals are changes made at the scenario's ``propagation.source``: the
driver POSTs each one to the source's ``/change`` on schedule (open model).  Then

- ``orchestration`` (and ``hybrid``): every subscriber process polls the source's
  ``GET /changes?since=N`` every ``poll_interval_ms`` (each poll costs a service-time draw
  at the source; a random phase per subscriber) and applies what is new;
- ``events``: the source POSTs each change to every subscriber's ``/webhook`` at once
  (retrying until delivered: at-least-once), and the subscriber applies it.

Each subscriber reports what it applied and when, and its polls; staleness of a change
at a subscriber is applied time minus the change's scheduled time, a poll that brought
nothing new is a wasted poll.  Rows: one workflow per change (complete when every
subscriber applied it), one step per (change, subscriber), one poll row per poll.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from ..records import COMPLETED, FAILED, IN_FLIGHT, NAN, PollRecord, Recorder, StepRecord, WorkflowRecord
from ..scenario import Scenario
from .client import OK, classify_exception, classify_status

log = logging.getLogger(__name__)


async def run_propagation(
    sc: Scenario,
    style: str,
    urls: dict[str, str],
    client: httpx.AsyncClient,
    rec: Recorder,
    t0: float,
    arrivals: list[float],
    *,
    drain_s: float,
    seed: int | None = None,
) -> tuple[float, list[float]]:
    """Drive the changes and collect the subscribers' reports; returns (end_s, lateness)."""
    p = sc.propagation
    source = urls[p.source]
    subs = list(p.subscribers)
    lateness: list[float] = []
    acks: dict[int, tuple[str, float]] = {}

    def now() -> float:
        return time.monotonic() - t0

    draw = None
    if seed is not None:  # common random numbers: each subscriber's apply time, as the sim draws it
        from ..distributions import Sampler
        from ..rng import Streams

        streams = Streams(seed)
        samplers = {n: Sampler(sc.services[n].service_time, streams.get(f"svc:{n}")) for n in subs}

        def draw() -> dict[str, float]:
            return {n: samplers[n]() for n in subs}

    async def change(seq: int, at: float, draws: dict | None) -> None:
        body = {"seq": seq, "t": at}
        if draws:
            body["draws"] = draws
        try:
            async with asyncio.timeout(10.0):
                r = await client.post(source + "/change", json=body)
            outcome = classify_status(r.status_code)
        except Exception as exc:  # noqa: BLE001
            outcome = classify_exception(exc)
        acks[seq] = (outcome, now())

    tasks = []
    for seq, at in enumerate(arrivals):
        delay = at - now()
        if delay > 0:
            await asyncio.sleep(delay)
        lateness.append(max(0.0, now() - at))
        tasks.append(asyncio.ensure_future(change(seq, at, draw() if draw else None)))
    if tasks:
        await asyncio.gather(*tasks)
    n = len(arrivals)
    made = sum(1 for o, _ in acks.values() if o == OK)
    for name in subs:
        await client.post(urls[name] + "/control/expect", json={"changes": n})
    # wait until every subscriber applied every change that was made, or the drain deadline
    deadline = time.monotonic() + drain_s
    reports: dict[str, dict] = {}
    while True:
        reports = {name: (await client.get(urls[name] + "/report")).json() for name in subs}
        if all(len({a[0] for a in r["applied"]}) >= made for r in reports.values()) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    end = now()

    applied: dict[int, dict[str, tuple[float, float]]] = {}
    for name, r in reports.items():
        seen: set[int] = set()
        for seq, _t, at in r["applied"]:
            seq = int(seq)
            if seq in seen:
                rec.count(style, "duplicates")
                continue
            seen.add(seq)
            applied.setdefault(seq, {})[name] = (float(at), float(at))
        for t, useful in r["polls"]:
            rec.polls.append(PollRecord(style, name, p.source, float(t), bool(useful)))
        for key, v in r.get("counters", {}).items():
            rec.count(style, f"{key}:{name}", v)
    for seq, at in enumerate(arrivals):
        outcome, ack = acks.get(seq, ("error", NAN))
        if outcome != OK:
            rec.workflows.append(WorkflowRecord(style, seq, at, NAN, FAILED, f"{outcome}:{p.source}", NAN))
            continue
        got = applied.get(seq, {})
        for name in subs:
            if name in got:
                t_applied = got[name][0]
                rec.steps.append(StepRecord(style, seq, name, at, t_applied, COMPLETED, 1, t_applied - at))
        if len(got) == len(subs):
            fin = max(v[0] for v in got.values())
            rec.workflows.append(WorkflowRecord(style, seq, at, fin, COMPLETED, "", ack))
        else:
            rec.workflows.append(WorkflowRecord(style, seq, at, NAN, IN_FLIGHT, "", ack))
    return end, lateness
