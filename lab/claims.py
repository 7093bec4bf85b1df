"""The claims, measured: the comparison table that articles for South African businesses
repeat without evidence, each line turned into a small seeded experiment on the simulator.

:func:`check_claims` runs every experiment on common random numbers and returns one tidy
row per claim: what was measured, the figure under each style, a verdict (``supported``,
``not supported`` or ``depends``) and what the answer depends on.  The experiments are
small (seconds each) and deterministic per seed; the notebooks and the workshop go deeper
into each one.  ``lab claims`` prints the table.

The verdicts are computed from the figures by the rules written next to each experiment,
never typed in: change a scenario and a verdict may change with it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from .run import simulate
from .scenario import Scenario, load_scenario

log = logging.getLogger(__name__)

SUPPORTED, NOT_SUPPORTED, DEPENDS = "supported", "not supported", "depends"

#: columns of the table :func:`check_claims` returns
COLUMNS = ["aspect", "claim", "measure", "orchestration", "events", "hybrid", "verdict", "depends_on", "scenario"]


@dataclass
class Claim:
    """One line of the table: the claim, the measure, the figures, the verdict."""

    aspect: str
    claim: str
    measure: str
    orchestration: float
    events: float
    hybrid: float
    verdict: str
    depends_on: str
    scenario: str


def _row(summary: pd.DataFrame, style: str, column: str) -> float:
    rows = summary.loc[summary["style"] == style, column]
    return float(rows.iloc[0]) if len(rows) else math.nan


def chain_scenario(*, duration_s: float = 600.0, rate_per_s: float = 20.0, **overrides: Any) -> Scenario:
    """The claims' reference system: order -> inventory -> payment -> notify, 20 workflows/s,
    each service two workers of about 20 ms (utilisation 0.2), 2 ms a hop, a 5 ms broker."""
    services = {
        name: {"service_time": {"dist": "lognormal", "mean_ms": 20, "p99_ms": 80}, "concurrency": 2}
        for name in ("order", "inventory", "payment", "notify")
    }
    base = {
        "name": "claims-chain",
        "duration_s": duration_s,
        "warmup_s": min(60.0, duration_s / 10),
        "workload": {"arrivals": "poisson", "rate_per_s": rate_per_s},
        "network": {"latency_ms": 2},
        "services": services,
        "flow": list(services),
        "style": ["orchestration", "events"],
        "broker": {"latency_ms": 5, "partitions": 8, "retention_s": 7 * 86400},
        "orchestration": {"timeout_ms": 1000},
    }
    return load_scenario(base, **overrides)


# -- the experiments: each returns Claim rows ------------------------------------------------

def _real_time(seed: int, quick: bool) -> list[Claim]:
    """Staleness of data at four CRM branches: poll every 30 s against pushed changes.
    Supported when push is at least 10x fresher; polling staleness should be about T/2."""
    interval_s = 30.0
    sc = load_scenario("crm-sync", duration_s=900 if quick else 3600, **{"propagation.poll_interval_ms": interval_s * 1000})
    s = simulate(sc, seed=seed).summary
    poll, push = _row(s, "orchestration", "staleness_mean_s"), _row(s, "events", "staleness_mean_s")
    verdict = SUPPORTED if push * 10 <= poll else DEPENDS
    return [Claim(
        "real time", "polling-dependent (API) vs native (events)", "mean staleness at the branches, s",
        poll, push, math.nan, verdict,
        f"the poll interval: staleness is about T/2 ({interval_s / 2:g} s at T = {interval_s:g} s); push costs a broker hop",
        sc.name,
    )]  # fmt: skip


def _wasted_polls(seed: int, quick: bool) -> list[Claim]:
    """Polls that return nothing new, at a slow and a fast change rate (theory: exp(-rate T)).
    Supported when most polls are wasted at the slow rate; depends when the fast rate makes
    them mostly useful."""
    rows = []
    interval_s = 30.0
    shares = {}
    for rate in (0.005, 0.2):
        sc = load_scenario(
            "crm-sync", duration_s=3600 if quick else 14400,
            **{"propagation.poll_interval_ms": interval_s * 1000, "workload.rate_per_s": rate},
        )  # fmt: skip
        s = simulate(sc, seed=seed).summary
        polls, wasted = _row(s, "orchestration", "polls"), _row(s, "orchestration", "wasted_polls")
        shares[rate] = wasted / polls if polls else math.nan
        load_poll, load_push = _row(s, "orchestration", "source_load_per_s"), _row(s, "events", "source_load_per_s")
        rows.append((rate, sc.name, load_poll, load_push))
    slow, fast = shares[0.005], shares[0.2]
    verdict = SUPPORTED if slow > 0.5 and fast > 0.5 else DEPENDS if slow > 0.5 else NOT_SUPPORTED
    out = [Claim(
        "resources", "polling wastes resources", f"share of wasted polls, {r:g} changes/s (events: none)",
        shares[r], 0.0, math.nan, verdict,
        f"changes per poll interval: the wasted share is exp(-rate x T) = {math.exp(-r * interval_s):.3f} here",
        name,
    ) for r, name, _lp, _lq in rows]  # fmt: skip
    r, name, load_poll, load_push = rows[0]
    out.append(Claim(
        "resources", "polling loads the source system", f"requests/s on the CRM at {r:g} changes/s",
        load_poll, load_push, math.nan, SUPPORTED if load_poll > 2 * load_push else DEPENDS,
        "subscribers / T for polling, whatever changes; push reads the source only on a change", name,
    ))  # fmt: skip
    return out


def _coupling(seed: int, quick: bool) -> list[Claim]:
    """The payment service of a 4-service chain is down for 60 s of the run.
    Supported when orchestration loses workflows and events lose none."""
    duration = 600.0
    sc = chain_scenario(duration_s=duration, faults={"outages": [{"service": "payment", "start_s": 200, "duration_s": 60}]})
    s = simulate(sc, seed=seed).summary
    avail_o, avail_e = _row(s, "orchestration", "availability"), _row(s, "events", "availability")
    lost_e = _row(s, "events", "lost")
    p99_o, p99_e = _row(s, "orchestration", "latency_p99_s"), _row(s, "events", "latency_p99_s")
    verdict = SUPPORTED if avail_o < avail_e and lost_e == 0 else NOT_SUPPORTED
    return [
        Claim("coupling", "one failing API halts the whole process (API) vs fail independently (events)",
              "availability, payment down 60 s of 540", avail_o, avail_e, math.nan, verdict,
              "retention longer than the outage (events wait, nothing is lost); orchestration retries only "
              "help if the outage is shorter than the retries", sc.name),
        Claim("coupling", "events keep working through the outage", "p99 latency, s (the cost: events wait)",
              p99_o, p99_e, math.nan, DEPENDS if p99_e > p99_o else SUPPORTED,
              "whether a late answer is worth as much as a refused one: events deliver after the outage, "
              "orchestration fails fast", sc.name),
    ]  # fmt: skip


def _scalability(seed: int, quick: bool) -> list[Claim]:
    """The chain's services take about 100 workflows/s (two workers of ~20 ms).  Offered
    80/s: both styles carry it unless the orchestrator's in-flight limit (its thread pool,
    here 8) caps it by Little's law.  Offered 120/s (overload) with a 1 s call timeout:
    orchestration collapses (callers give up on work the services still do), events carry
    the services' capacity and queue the rest."""
    duration = 120.0 if quick else 600.0
    runs = {}
    for key, rate, limit in (("free", 80.0, None), ("capped", 80.0, 8), ("overload", 120.0, None)):
        sc = chain_scenario(duration_s=duration, rate_per_s=rate, **{"orchestration.max_in_flight": limit})
        s = simulate(sc, seed=seed).summary
        runs[key] = (sc.name, _row(s, "orchestration", "throughput_per_s"), _row(s, "events", "throughput_per_s"))
    name, free_o, free_e = runs["free"]
    _, capped_o, capped_e = runs["capped"]
    _, over_o, over_e = runs["overload"]
    same = abs(free_o - free_e) <= 0.05 * max(free_e, 1e-9)
    return [
        Claim("scalability", "limited, poor at high volumes (API) vs high throughput (events)",
              "throughput at 80/s offered (capacity ~100/s), workflows/s", free_o, free_e, math.nan,
              NOT_SUPPORTED if same else SUPPORTED if free_e > free_o else NOT_SUPPORTED,
              "the services' capacity, which both styles share", name),
        Claim("scalability", "an orchestrator's thread pool caps it", "throughput at 80/s offered, at most 8 in flight",
              capped_o, capped_e, math.nan, SUPPORTED if capped_o < 0.9 * capped_e else NOT_SUPPORTED,
              "the in-flight limit / end-to-end latency (Little's law), not the style", name),
        Claim("scalability", "poor at high volumes", "throughput at 120/s offered (overload), 1 s call timeout",
              over_o, over_e, math.nan, SUPPORTED if over_o < 0.9 * over_e else NOT_SUPPORTED,
              "timeouts under overload: callers abandon work the services still do (congestion collapse); "
              "events carry capacity but their backlog grows without bound", name),
    ]  # fmt: skip


def _load_shedding(seed: int, quick: bool) -> list[Claim]:
    """Retail inventory through a stage-6 day (compressed 24x), the inventory system in area 5
    with no backup power.  Supported when the orchestrated flow loses clearly more."""
    sc = load_scenario(
        "retail-inventory", duration_s=3600, warmup_s=0, style=["orchestration", "events"],
        **{"faults.load_shedding": {"stage": 6, "compress": 24, "areas": {"inventory": 5}},
           "orchestration.timeout_ms": 2000, "broker.retention_s": 86400},
    )  # fmt: skip
    s = simulate(sc, seed=seed).summary
    avail_o, avail_e = _row(s, "orchestration", "availability"), _row(s, "events", "availability")
    return [Claim(
        "load-shedding", "polling and synchronous calls are risky where the power goes off",
        "availability through a stage-6 day, inventory without backup", avail_o, avail_e, math.nan,
        SUPPORTED if avail_e - avail_o > 0.05 else NOT_SUPPORTED,
        "the stage, the areas your services sit in and their backup power; events need the broker's site powered",
        sc.name,
    )]  # fmt: skip


def _hybrid(seed: int, quick: bool) -> list[Claim]:
    """Fintech payments: the caller's wait and availability under each style.
    Supported when the hybrid answers about as fast as orchestration's core and keeps the
    downstream reactions off the caller's path."""
    sc = load_scenario("fintech-hybrid", duration_s=300 if quick else 600)
    s = simulate(sc, seed=seed).summary
    resp = {st: _row(s, st, "response_mean_s") for st in ("orchestration", "events", "hybrid")}
    e2e = {st: _row(s, st, "latency_mean_s") for st in ("orchestration", "events", "hybrid")}
    verdict = SUPPORTED if resp["hybrid"] < resp["orchestration"] else DEPENDS
    return [
        Claim("hybrid", "orchestrate the transactional core, publish events downstream",
              "the caller's mean wait, s", resp["orchestration"], resp["events"], resp["hybrid"], verdict,
              "whether the caller needs the core's answer (hybrid, orchestration) or only an acknowledgement (events)",
              sc.name),
        Claim("hybrid", "the downstream reactions pay a broker hop", "mean end-to-end latency, s", e2e["orchestration"], e2e["events"], e2e["hybrid"],
              DEPENDS, "the broker hop the downstream steps pay", sc.name),
    ]  # fmt: skip


def _complexity(seed: int, quick: bool) -> list[Claim]:
    """Moving parts to build and run for the fintech flow, counted from the scenario (not
    measured at run time): processes, topics, consumer groups, offsets to manage, contracts."""
    sc = load_scenario("fintech-hybrid")
    n = len(sc.steps)
    stages = sc.stages
    topics_events = 1 + sum(len(st) for st in stages[:-1])  # workflow.requested + <service>.done
    topics_hybrid = 1 + sum(len(st) for st in stages[sc.core_steps:-1])
    parts_o = n + 1  # the services and the orchestrator
    parts_e = n + 1 + topics_events + n  # services, broker, topics, one consumer group per service
    parts_h = n + 2 + topics_hybrid + (n - sc.core_steps)
    return [Claim(
        "complexity", "lower (API) vs higher (events: broker, schemas, idempotency)",
        "moving parts: processes + topics + consumer groups", float(parts_o), float(parts_e), float(parts_h),
        SUPPORTED if parts_e > parts_o else NOT_SUPPORTED,
        "each event type is a schema to version, each group needs idempotency and a dead-letter plan",
        sc.name,
    )]  # fmt: skip


EXPERIMENTS: dict[str, Callable[[int, bool], list[Claim]]] = {
    "real time": _real_time,
    "resources": _wasted_polls,
    "coupling": _coupling,
    "scalability": _scalability,
    "load-shedding": _load_shedding,
    "hybrid": _hybrid,
    "complexity": _complexity,
}


def check_claims(*, seed: int = 2026, quick: bool = True, aspects: list[str] | None = None) -> pd.DataFrame:
    """Run the experiments behind each claim; one row per claim (see :data:`COLUMNS`).

    ``quick`` keeps every experiment to a few seconds; ``quick=False`` runs longer for
    tighter figures.  ``aspects`` picks some of :data:`EXPERIMENTS`.
    """
    chosen = list(EXPERIMENTS) if aspects is None else aspects
    rows: list[dict[str, Any]] = []
    for aspect in chosen:
        if aspect not in EXPERIMENTS:
            from .errors import LabError

            raise LabError(f"unknown aspect (choose from {', '.join(EXPERIMENTS)})", source="claims", field=aspect)
        log.info("claims: %s", aspect)
        rows += [asdict(c) for c in EXPERIMENTS[aspect](seed, quick)]
    return pd.DataFrame(rows, columns=COLUMNS)
