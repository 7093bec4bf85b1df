"""``run_http``: run a scenario's orchestration (and the orchestrated part of a hybrid, and
change propagation by polling or push) against real HTTP service processes.

Time: records are in wall-clock seconds from the start of the run.  ``compress`` maps
scenario seconds to wall seconds (``wall = scenario / compress``) for the scenario's
*calendar*: duration, warm-up, the fault calendar (outages, spikes, error bursts,
load-shedding slots) and the workload's bursts and daily curve.  Service times, job
times, timeouts, backoff and poll intervals stay real milliseconds, and the arrival rate
stays ``rate_per_s`` per wall second.  With ``compress=1`` (the default) the arrival times
are exactly the simulation's for the same seed (common random numbers).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import httpx
import numpy as np

from ..errors import LabError
from ..faults import ORCHESTRATOR
from ..policies import DependencyPolicies, build_policies
from ..records import Recorder
from ..result import RunResult
from ..rng import Streams, spawn
from ..scenario import Scenario, Workload, load_scenario
from ..workload import arrival_times
from .client import make_client
from .fleet import ServiceFleet
from .orchestrator import Orchestrator
from .propagation import run_propagation

log = logging.getLogger(__name__)

#: styles the HTTP engine runs (events of a flow need a broker: the kafka engine)
HTTP_STYLES = ("orchestration", "hybrid")


def wall_workload(w: Workload, compress: float) -> Workload:
    """The workload on the wall clock: same rate per second, calendar shape compressed."""
    if compress == 1.0:
        return w
    data = w.model_dump()
    data["bursts"] = [
        {**b, "start_s": b["start_s"] / compress, "duration_s": b["duration_s"] / compress} for b in data["bursts"]
    ]
    data["day_length_s"] = w.day_length_s / compress
    return Workload.model_validate(data)


def fault_windows(sc: Scenario, seed: int) -> dict[str, list[dict[str, Any]]]:
    """The scenario's fault calendar (``faults:`` section, load shedding included) as windows
    per service in scenario seconds, the form a service process reads.  The calendar is the
    simulation's (:func:`lab.faults.fault_calendar`, same horizon and seed)."""
    faults = getattr(sc, "faults", None)
    if faults is None or faults.empty:
        return {}
    from ..faults import fault_calendar  # noqa: PLC0415

    horizon = sc.horizon_s  # as the simulation's horizon
    cal = fault_calendar(faults, list(sc.services), horizon, seed)
    out: dict[str, list[dict[str, Any]]] = {}
    for row in cal.to_frame().itertuples(index=False):
        if row.service not in sc.services and row.service != ORCHESTRATOR and row.kind != "partition":
            continue
        if row.kind == "down":
            w = {"kind": "outage", "mode": row.value}
        elif row.kind == "latency":
            w = {"kind": "spike", "multiplier": float(row.value)}
        elif row.kind == "errors":
            w = {"kind": "errors", "failure_prob": float(row.value)}
        elif row.kind == "partition" and ORCHESTRATOR in (row.service, row.peer):
            # cut off from the orchestrator: its calls go unanswered, as into a hung service
            name = row.peer if row.service == ORCHESTRATOR else row.service
            w = {"kind": "outage", "mode": "hang"}
            out.setdefault(name, []).append({**w, "start_s": float(row.start_s), "end_s": float(row.end_s)})
            continue
        else:  # a partition from the broker: no broker in this engine
            continue
        out.setdefault(row.service, []).append({**w, "start_s": float(row.start_s), "end_s": float(row.end_s)})
    return out


def call_policies(sc: Scenario, resilience: Any = None) -> dict[str, DependencyPolicies]:
    """Fresh policy objects per called service, as the simulation builds them: the
    scenario's ``resilience:`` section (or ``resilience`` given here, a mapping or model),
    with the ``orchestration:`` shorthands (timeout, retries, backoff) filling its defaults."""
    if resilience is None:
        res = sc.resilience
    else:
        from ..policies import parse_resilience

        res = parse_resilience(resilience, source="resilience")
    return build_policies(res.with_orchestration_defaults(sc.orchestration), sc.services)


def service_configs(
    sc: Scenario, style: str, seed: int, compress: float, windows: dict[str, list[dict[str, Any]]],
    *, emulate_network: bool = True, http: str = "httptools",
) -> dict[str, dict[str, Any]]:
    """What each service process is told (JSON)."""
    net = sc.network.model_dump() if emulate_network else {"latency_ms": 0.0, "jitter_ms": 0.0}
    names = list(sc.services) if sc.propagation is None else [sc.propagation.source, *sc.propagation.subscribers]
    cfgs = {
        n: {
            "service": sc.services[n].model_dump(mode="json"),
            "network": net,
            "seed": int(seed),
            "compress": float(compress),
            "faults": windows.get(n, []),
            "http": http,
            "loop": "uvloop" if http == "httptools" else "asyncio",
        }
        for n in names
    }
    return cfgs


def run_http(
    scenario: Scenario,
    *,
    seed: int | None = None,
    compress: float = 1.0,
    styles: list[str] | None = None,
    transport: str = "aiohttp",
    resilience: Any = None,
    faults: dict[str, list[dict[str, Any]]] | None = None,
    drain_s: float = 30.0,
    emulate_network: bool = True,
    max_connections: int | None = None,
    on_running: Any = None,
    crn: bool = True,
    **overrides: Any,
) -> RunResult:
    """Run ``scenario`` for real: one uvicorn process per service on 127.0.0.1, driven by
    an httpx orchestrator; returns a :class:`lab.result.RunResult` (engine ``http``).

    ``styles`` defaults to the scenario's styles that run over HTTP (orchestration and
    hybrid for flows; all three for change propagation: orchestration/hybrid poll, events
    push).  ``faults`` adds fault windows per service (``{"kind": "outage", "start_s",
    "end_s", "mode": "refuse"|"503"|"hang"}``, ``spike`` with ``multiplier``, ``errors``
    with ``failure_prob``; scenario seconds) to those of the scenario's ``faults:``.
    ``drain_s`` bounds the wait for workflows still running after the last arrival (they
    are then recorded ``in_flight``).  ``on_running(fleet, style)`` is called from a
    thread once the services are up (tests use it to kill one).  ``crn`` (default on):
    the orchestrator draws each workflow's service times, failure coins and job times from
    the simulation's streams and sends them with each call, so real and simulated runs of
    one seed use the same dice (off: each service draws from its own stream).  Other keywords are
    scenario overrides (``duration_s=60``, ``**{"workload.rate_per_s": 5}``).
    """
    sc = scenario if not overrides else load_scenario(scenario, **overrides)
    seed = sc.seed if seed is None else int(seed)
    if compress <= 0:
        raise LabError("must be > 0", source="--compress", field=str(compress))
    propagation = sc.propagation is not None
    allowed = ("orchestration", "events", "hybrid") if propagation else HTTP_STYLES
    chosen = [s for s in (styles or sc.styles) if s in allowed]
    skipped = [s for s in (styles or sc.styles) if s not in allowed]
    for s in skipped:
        log.warning("the http engine does not run style %r of a flow (needs a broker: use --engine kafka)", s)
    if not chosen:
        raise LabError(
            f"no style the http engine runs (has {', '.join(sc.styles)}; runs {', '.join(allowed)})",
            source=sc.name, field="style",
        )  # fmt: skip
    windows = fault_windows(sc, seed)
    orchestrator_down = orchestrator_outages(windows, compress)
    for name, ws in (faults or {}).items():
        if name not in sc.services:
            raise LabError(f"unknown service {name!r}", source="faults", field=name)
        windows.setdefault(name, []).extend(ws)

    duration_w = sc.duration_s / compress
    streams = Streams(seed)
    arrivals = list(arrival_times(wall_workload(sc.workload, compress), duration_w, streams))
    rec = Recorder()
    end_s: dict[str, float] = {}
    meta: dict[str, Any] = {"compress": compress, "transport": transport, "styles_skipped": skipped, "styles": {}}
    for style in chosen:
        cfgs = service_configs(sc, style, seed, compress, windows, emulate_network=emulate_network)
        phases: dict[str, float] = {}
        if propagation:
            p = sc.propagation
            phase_rng = spawn(seed, "poll-phase")
            if style == "events":
                cfgs[p.source]["push_to"] = [f"@{s}" for s in p.subscribers]
            else:
                for s in p.subscribers:
                    cfgs[s]["poll"] = {"url": f"@{p.source}/changes", "interval_ms": p.poll_interval_ms}
                    phases[s] = float(phase_rng.random()) * p.poll_interval_ms / 1000.0
        end, lateness, dead = drive_fleet(
            sc, style, cfgs, rec, arrivals, seed, compress=compress, resilience=resilience, transport=transport,
            drain_s=drain_s, max_connections=max_connections, phases=phases, on_running=on_running,
            orchestrator_down=orchestrator_down, crn=crn,
        )  # fmt: skip
        end_s[style] = min(end, duration_w)
        lat = np.array(lateness, dtype=float)
        meta["styles"][style] = {
            "arrivals": len(arrivals),
            "start_lateness_p50_s": float(np.percentile(lat, 50)) if lat.size else 0.0,
            "start_lateness_p99_s": float(np.percentile(lat, 99)) if lat.size else 0.0,
            "start_lateness_max_s": float(lat.max()) if lat.size else 0.0,
            "dead_services": dead,
        }
        if dead:
            log.warning("style %s: service(s) died during the run: %s", style, dead)
    return _result(sc, rec, seed, chosen, end_s, compress, meta, _series_every(sc, compress))


def orchestrator_outages(windows: dict[str, list[dict[str, Any]]], compress: float) -> list[tuple[float, float]]:
    """Take the orchestrator's own outages out of ``windows`` (from :func:`fault_windows`),
    as wall-clock intervals: no process plays them, the orchestrator fails what arrives in them."""
    return [(w["start_s"] / compress, w["end_s"] / compress) for w in windows.pop(ORCHESTRATOR, []) if w["kind"] == "outage"]


def drive_fleet(
    sc: Scenario, style: str, cfgs: dict[str, dict[str, Any]], rec: Recorder, arrivals: list[float], seed: int, *,
    compress: float = 1.0, resilience: Any = None, transport: str = "aiohttp", drain_s: float = 30.0,
    max_connections: int | None = None, phases: dict[str, float] | None = None, on_running: Any = None,
    orchestrator_down: list[tuple[float, float]] | None = None, crn: bool = True,
    on_start: Any = None, on_core_done: Any = None,
) -> tuple[float, list[float], dict[str, int]]:
    """Start one process per service of ``cfgs`` (:func:`service_configs`), link them and
    drive one style over HTTP; returns (end of the run in wall seconds since t0, start
    lateness per arrival, services that died).

    ``on_start(orchestrator)`` is called on the event loop once the services have their start
    time (``orchestrator.t0``, on ``time.monotonic()``) and before the first arrival.
    ``on_core_done(wid, start_s, response_s, draws)``: the orchestrator hands each workflow
    whose orchestrated core succeeded to it instead of calling the downstream stages itself
    (the Kafka engine publishes it to the broker; see :class:`Orchestrator`)."""
    with ServiceFleet(cfgs) as fleet:
        _link(fleet, cfgs)
        end, lateness = _run_loop(
            _drive(
                sc, style, fleet, rec, arrivals, seed, resilience, transport, drain_s, max_connections,
                phases or {}, on_running, orchestrator_down or [], _series_every(sc, compress), crn,
                on_start, on_core_done,
            )
        )  # fmt: skip
        dead = fleet.dead()
    return end, lateness, dead


def _link(fleet: ServiceFleet, cfgs: dict[str, dict[str, Any]]) -> None:
    """Resolve "@name" links now that every service has its port, and send them."""
    with httpx.Client(trust_env=False, timeout=5.0) as c:
        for name, cfg in cfgs.items():
            links: dict[str, Any] = {}
            if "push_to" in cfg:
                links["push_to"] = [fleet.urls[u[1:]] + "/webhook" for u in cfg["push_to"]]
            if "poll" in cfg:
                target, path = cfg["poll"]["url"][1:].split("/", 1)
                links["poll"] = {**cfg["poll"], "url": f"{fleet.urls[target]}/{path}"}
            if links:
                c.post(fleet.urls[name] + "/control/links", json=links).raise_for_status()


def _series_every(sc: Scenario, compress: float) -> float:
    """Sampling interval of the time series, in wall seconds (the simulation's rule)."""
    return (sc.series_interval_s or max(0.1, sc.duration_s / 200.0)) / compress


def _run_loop(coro):
    """Run the engine's coroutine on a fresh event loop; inside Jupyter, where this thread
    already runs a loop, on a private thread instead."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run_fresh(coro)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lab-http") as pool:
        return pool.submit(_run_fresh, coro).result()


def _run_fresh(coro):
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency through uvicorn[standard]
        return asyncio.run(coro)


async def _drive(
    sc, style, fleet, rec, arrivals, seed, resilience, transport, drain_s, max_connections, phases, on_running,
    orchestrator_down, series_every_s, crn, on_start=None, on_core_done=None,
):
    async with make_client(transport, max_connections=max_connections) as client:
        # warm up: open a connection to every service and run its code paths once, so the
        # first workflow does not pay for the run's start-up
        for _ in range(2):
            await asyncio.gather(*(client.get(url + "/health") for url in fleet.urls.values()))
        t0 = time.monotonic() + 0.1
        for name, url in fleet.urls.items():
            r = await client.post(url + "/control/start", json={"t0": t0, "poll_phase_s": phases.get(name, 0.0)})
            r.raise_for_status()
        if on_running is not None:
            threading.Thread(target=on_running, args=(fleet, style), daemon=True).start()
        if sc.propagation is not None:
            return await run_propagation(
                sc, style, fleet.urls, client, rec, t0, arrivals, drain_s=drain_s, seed=seed if crn else None
            )
        orch = Orchestrator(
            sc, style, fleet.urls, client, rec, call_policies(sc, resilience), spawn(seed, "retry-jitter"), t0,
            dead=fleet.dead, down=orchestrator_down, series_every_s=series_every_s, on_core_done=on_core_done,
        )  # fmt: skip
        if crn:
            orch.use_common_random_numbers(seed)
        if on_start is not None:
            on_start(orch)
        end = await orch.run(arrivals, drain_s=drain_s)
        return end, orch.lateness


def _result(sc, rec, seed, styles, end_s, compress, meta, series_every_s) -> RunResult:
    """Summaries on the wall clock (duration and warm-up divided by ``compress``), with the
    simulation's fault metrics and failure-propagation timeline (those need the fault
    calendar on the records' clock: computed when ``compress`` is 1, else without windows)."""
    import pandas as pd

    from ..faults import fault_calendar
    from ..metrics import fault_metrics, timeline

    wall = sc if compress == 1.0 else sc.replace(duration_s=sc.duration_s / compress, warmup_s=sc.warmup_s / compress)
    cal = None
    if compress == 1.0 and not sc.faults.empty:
        cal = fault_calendar(sc.faults, list(sc.services), sc.horizon_s, seed)
    names = list(sc.services)
    extra, lines = {}, []
    for style in styles:
        extra[style] = {
            **fault_metrics(rec, style, cal, names, wall.warmup_s, wall.duration_s),
            "start_lateness_p99_s": meta["styles"][style]["start_lateness_p99_s"],
        }
        lines.append(timeline(rec, style, cal, names, series_every_s, end_s[style]))
    res = RunResult.from_recorder(
        wall, rec, engine="http", seed=seed, styles=styles, end_s=end_s, extra=extra,
        timeline=pd.concat(lines, ignore_index=True),
    )  # fmt: skip
    res.scenario = sc
    res.meta.update(meta)
    return res
