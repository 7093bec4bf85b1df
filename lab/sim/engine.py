"""The SimPy engine: one scenario, one style, one seed -> records.

Styles:

* ``orchestration``: a central orchestrator runs each workflow, calling the services of
  each stage synchronously (a stage with several services is a scatter-gather), holding a
  workflow slot while it waits; asynchronous jobs are submitted, then polled.  In
  ``orchestration.mode: chain`` each service calls the next and holds its own worker
  while it waits, so slowness and failure travel up the chain.
* ``events``: a choreography over the simulated broker: each service's consumer group
  reacts to the previous stage's events and publishes its own; jobs push their completion.
* ``hybrid``: the first ``core_steps`` stages are orchestrated (the caller's answer),
  then a ``core.done`` event drives the remaining stages as a choreography.

For change propagation (``scenario.propagation``) orchestration means subscribers
polling the source every ``poll_interval_ms`` and events means pushed change events.

Faults (:mod:`lab.faults`, including load-shedding) and resilience policies
(:mod:`lab.policies`) are the shared, clock-agnostic objects; this module only decides
what they mean in simulated time.

Common random numbers: every workflow's service times, failure coins and job times are
drawn at its arrival, in flow order, from per-service streams, so all styles of one seed
see the same dice for the same workflow.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
from collections import deque

import simpy

from ..distributions import Sampler, Uniforms
from ..faults import BROKER, ORCHESTRATOR, FaultCalendar, fault_calendar
from ..policies import build_policies
from ..records import (
    COMPLETED,
    FAILED,
    IN_FLIGHT,
    NAN,
    EventRecord,
    PollRecord,
    Recorder,
    SeriesPoint,
    StepRecord,
    WorkflowRecord,
)
from ..rng import Streams
from ..scenario import Dist, Scenario
from ..workload import arrival_times
from .broker import Broker, Message

log = logging.getLogger(__name__)

# builds a record from a tuple without the named tuple's Python-level __new__ (hot paths)
_new = tuple.__new__

OK, ERROR, REFUSED, TIMEOUT, OPEN, REJECTED, DOWNSTREAM = (
    "ok", "error", "refused", "timeout", "open", "rejected", "downstream",
)  # fmt: skip
INF = math.inf


class _Workflow:
    __slots__ = ("wid", "start", "draws", "failed", "done_services", "stage_hits", "response", "closed")

    def __init__(self, wid: int, start: float, draws: list[tuple[float, float, float]]):
        self.wid = wid
        self.start = start
        self.draws = draws
        self.failed = False
        self.closed = False
        self.done_services: set[str] = set()
        self.stage_hits: dict[int, set[str]] = {}
        self.response = NAN


class _Job:
    __slots__ = ("done_at", "event")


#: the cyclic garbage collector's thresholds during a run (Python's default: 700, 10, 10)
GC_THRESHOLDS = (20_000, 10, 10)


@contextlib.contextmanager
def collector_tuned(thresholds: tuple[int, int, int] = GC_THRESHOLDS):
    """Run the cyclic garbage collector less often inside the block, then restore its
    thresholds.  A run appends hundreds of thousands of long-lived records, and with the
    default thresholds the collector rescans them (and everything pandas and friends
    imported) over and over: a third of a run's time.  The only cyclic garbage of a run is
    SimPy's finished processes, collected every ``thresholds[0]`` allocations as before."""
    old = gc.get_threshold()
    gc.set_threshold(*(max(a, b) for a, b in zip(old, thresholds, strict=True)))
    try:
        yield
    finally:
        gc.set_threshold(*old)


class SimEngine:
    """Runs one style of a scenario in a fresh SimPy environment."""

    def __init__(self, scenario: Scenario, style: str, seed: int, recorder: Recorder | None = None):
        self.sc = sc = scenario
        self.style = style
        self.seed = int(seed)
        self.rec = recorder if recorder is not None else Recorder()
        self.env = simpy.Environment()
        self.streams = streams = Streams(self.seed)
        self.names = list(sc.services)
        self.service_time = {n: Sampler(s.service_time, streams.get(f"svc:{n}")) for n, s in sc.services.items()}
        self.retry_time = {n: Sampler(s.service_time, streams.get(f"svc-retry:{n}")) for n, s in sc.services.items()}
        self.fail_coin = {n: Uniforms(streams.get(f"fail:{n}")) for n in sc.services}
        self.retry_coin = {n: Uniforms(streams.get(f"fail-retry:{n}")) for n in sc.services}
        self.job_time = {n: Sampler(s.job, streams.get(f"job:{n}")) for n, s in sc.services.items() if s.job is not None}
        self.jitter = Uniforms(streams.get("retry-jitter"))
        self.poison_coin = Uniforms(streams.get("poison"))
        net = sc.network
        self._net_const = net.latency_ms / 1000.0
        self._net_jitter = Sampler(Dist(dist="exponential", mean_ms=net.jitter_ms), streams.get("network")) if net.jitter_ms > 0 else None
        self.resources = {n: simpy.Resource(self.env, capacity=s.concurrency) for n, s in sc.services.items()}
        self.job_workers = {
            n: simpy.Resource(self.env, capacity=s.job_concurrency)
            for n, s in sc.services.items()
            if s.job is not None and s.job_concurrency is not None
        }
        self.slots = (
            simpy.Resource(self.env, capacity=sc.orchestration.max_in_flight)
            if sc.orchestration.max_in_flight is not None
            else None
        )
        self.horizon = sc.horizon_s
        self.cal: FaultCalendar | None = (
            None if sc.faults.empty else fault_calendar(sc.faults, self.names, self.horizon, self.seed)
        )
        resilience = sc.resilience.with_orchestration_defaults(sc.orchestration)
        self.pol = build_policies(resilience, self.names)
        self.ev = resilience.events
        self.broker: Broker | None = None
        self.in_flight = 0
        self.arrivals_done = False
        self.finished = self.env.event()
        self.step_index = {n: i for i, n in enumerate(sc.steps)}
        self.end_s = sc.duration_s
        self.busy_s = dict.fromkeys(self.names, 0.0)
        self.requests = dict.fromkeys(self.names, 0)
        self.executions: dict[tuple[int, str], int] = {}
        self.seen: dict[str, set[int]] = {}
        self.failures: dict[tuple[int, str], int] = {}
        self.poisoned: dict[tuple[int, str], bool] = {}
        self._pausers: list = []
        self.producer_buffered = 0
        self._active: set[str] = set()
        self._net_zero = net.latency_ms == 0 and net.jitter_ms == 0
        self._broker_s = sc.broker.latency_ms / 1000.0
        self._ack_s = 2 * self._net_const + self._broker_s  # a producer's ack: there and back
        self._queue_limit = {n: s.queue_limit for n, s in sc.services.items()}
        self._failure_prob = {n: s.failure_prob for n, s in sc.services.items()}
        # calls that need none of the policies take a short path (same numbers, fewer steps)
        self._plain = {
            n: (
                p.breaker is None and p.bulkhead is None and p.budget is None and p.fallback is None
                and p.retry.retries == 0 and p.timeout.per_call_ms is None and p.timeout.overall_ms is None
                and sc.services[n].job is None
            )
            for n, p in self.pol.items()
        }  # fmt: skip
        self._track_executions = {n: p.retry.retries > 0 for n, p in self.pol.items()}
        self._all_plain = (
            self.cal is None and self.slots is None and sc.orchestration.mode == "central"
            and sc.propagation is None and all(self._plain[n] for n in sc.steps)
        )  # fmt: skip

    # -- small helpers --------------------------------------------------------------
    def hop(self) -> float:
        d = self._net_const
        if self._net_jitter is not None:
            d += self._net_jitter()
        return d

    def _broker_delay(self) -> float:
        if self._net_jitter is None:
            return 2 * self._net_const + self._broker_s
        return self.hop() + self._broker_s + self.hop()

    def count(self, name: str, by: float = 1.0) -> None:
        self.rec.count(self.style, name, by)

    def _fails(self, name: str, u: float) -> bool:
        p = self.sc.services[name].failure_prob
        if self.cal is not None:
            q = self.cal.extra_failure_prob(name, self.env.now)
            if q > 0:
                p = 1.0 - (1.0 - p) * (1.0 - q)
        return u < p

    def _slowdown(self, name: str) -> float:
        return self.cal.latency_multiplier(name, self.env.now) if self.cal is not None else 1.0

    def _blocked_until(self, name: str, peer: str) -> float:
        """0 when ``name`` can work with ``peer`` now; else when that may change."""
        cal = self.cal
        if cal is None:
            return 0.0
        now = self.env.now
        if not (cal.is_down(name, now) or cal.partitioned(name, peer, now) or cal.is_down(peer, now)):
            return 0.0
        return min(cal.next_change(name, now, "any"), cal.next_change(peer, now, "down"))

    def _finish(self, wf: _Workflow, status: str, reason: str = "") -> None:
        if wf.closed:
            return
        wf.closed = True
        now = self.env.now
        self.open_workflows.pop(wf.wid, None)
        response = wf.response if not math.isnan(wf.response) else (now if status == COMPLETED else NAN)
        self.rec.workflows.append(
            _new(WorkflowRecord, (self.style, wf.wid, wf.start, now if status == COMPLETED else NAN, status, reason, response))
        )
        self.in_flight -= 1
        if self.in_flight == 0 and self.arrivals_done and not self.finished.triggered:
            self.finished.succeed()

    def _fail(self, wf: _Workflow, reason: str) -> None:
        if not wf.failed:
            wf.failed = True
            self._finish(wf, FAILED, reason)

    # -- the run --------------------------------------------------------------------
    def run(self) -> Recorder:
        sc = self.sc
        env = self.env
        self.open_workflows: dict[int, _Workflow] = {}
        if sc.propagation is not None:
            self._setup_propagation()
        else:
            self._setup_flow()
        env.process(self._arrivals())
        env.process(self._sampler())
        with collector_tuned():
            env.run(until=simpy.AnyOf(env, [self.finished, env.timeout(self.horizon)]))
        self.end_s = env.now
        for wf in list(self.open_workflows.values()):
            self.rec.workflows.append(WorkflowRecord(self.style, wf.wid, wf.start, NAN, IN_FLIGHT, "", wf.response))
        if self.broker is not None:
            self.count("published", self.broker.published)
            self.count("left_in_broker", sum(g.lag for g in self.broker.groups.values()))
        for n, b in self.busy_s.items():
            self.count(f"busy_s:{n}", b)
        self.count("backpressure_pauses", sum(bp.pauses for bp in self._pausers))
        for n, p in self.pol.items():
            if p.breaker is not None:
                self.count(f"breaker_rejected:{n}", p.breaker.rejected)
                self.count("breaker_opened", p.breaker.opened)
            if p.bulkhead is not None:
                self.count("bulkhead_rejected", p.bulkhead.rejected)
            if p.budget is not None:
                self.count("retries_denied_by_budget", p.budget.denied)
        return self.rec

    def _arrivals(self):
        env = self.env
        sc = self.sc
        start = self._start_workflow
        order = sc.steps if sc.propagation is None else sc.propagation.subscribers
        samplers = [self.service_time[n] for n in order]
        coins = [self.fail_coin[n] for n in order]
        jobs = [self.job_time.get(n) for n in order]
        triples = list(zip(samplers, coins, jobs, strict=True))
        for wid, t in enumerate(arrival_times(sc.workload, sc.duration_s, self.streams)):
            if t > env.now:
                yield env.timeout(t - env.now)
            draws = [(s(), c(), j() if j is not None else 0.0) for s, c, j in triples]
            self.in_flight += 1
            start(_Workflow(wid, env.now, draws))
        self.arrivals_done = True
        if self.in_flight == 0 and not self.finished.triggered:
            self.finished.succeed()

    def _sampler(self):
        env = self.env
        sc = self.sc
        every = sc.series_interval_s or max(0.1, sc.duration_s / 200.0)
        series = self.rec.series
        style = self.style
        while True:
            now = env.now
            for n, r in self.resources.items():
                if n in self._active:
                    series.append(SeriesPoint(style, now, "queue", n, float(len(r.queue) + r.count)))
                    if self.requests[n]:
                        series.append(SeriesPoint(style, now, "requests", n, float(self.requests[n])))
                        self.requests[n] = 0
            if self.broker is not None:
                for g in self.broker.groups.values():
                    series.append(SeriesPoint(style, now, "lag", g.name, float(g.lag)))
            series.append(SeriesPoint(style, now, "in_flight", "workflows", float(self.in_flight)))
            yield env.timeout(every)

    # -- flows ------------------------------------------------------------------------
    def _setup_flow(self) -> None:
        sc = self.sc
        stages = sc.stages
        if self.style == "orchestration":
            self.n_core = len(stages)
        elif self.style == "events":
            self.n_core = 0
        else:
            self.n_core = sc.core_steps
        self._active = set(sc.steps)
        if self.n_core < len(stages):
            self.broker = Broker(self.env, sc.broker.partitions, self._broker_delay)
            for k in range(self.n_core, len(stages)):
                if k == 0:
                    topics = ["workflow.requested"]
                elif k == self.n_core:
                    topics = ["core.done"]
                else:
                    topics = [f"{p}.done" for p in stages[k - 1]]
                for name in stages[k]:
                    g = self.broker.group(name, topics, sc.consumers_of(name), self._make_handler(name, k))
                    self._guard_group(g, name)
            if self.ev.pause_at_lag is not None:
                for k in range(self.n_core, len(stages) - 1):
                    below = [self.broker.groups[n] for n in stages[k + 1]]
                    for name in stages[k]:
                        self._backpressure(self.broker.groups[name], below)
        # per core stage: a single service's (name, draw index, resource, queue limit,
        # failure probability), or None for a scatter-gather stage
        self._core_plan = [
            (stage, None if len(stage) > 1 else (
                stage[0], self.step_index[stage[0]], self.resources[stage[0]],
                self._queue_limit[stage[0]], self._failure_prob[stage[0]],
            ))
            for stage in stages[: self.n_core]
        ]  # fmt: skip
        self._start_workflow = self._start_flow

    def _start_flow(self, wf: _Workflow) -> None:
        self.open_workflows[wf.wid] = wf
        if self.n_core > 0:
            self.env.process(self._orchestrate_plain(wf) if self._all_plain else self._orchestrate(wf))
        else:
            # the caller has its answer when the broker acknowledges the event (a round trip
            # to it), or at once when the event goes to a local outbox table
            wf.response = self.env.now + (0.0 if self.ev.outbox.enabled or self.ev.acks == 0 else self._ack_s)
            if self.cal is None and not self.ev.outbox.enabled:  # nothing can hold the publish
                self.broker.publish("workflow.requested", wf.wid)
            else:
                self.env.process(self._publish(wf, "workflow.requested", producer=None))

    # -- orchestration ------------------------------------------------------------
    def _orchestrate(self, wf: _Workflow):
        env = self.env
        cal = self.cal
        if cal is not None and cal.is_down(ORCHESTRATOR, env.now):
            self._fail(wf, f"down:{ORCHESTRATOR}")
            return
        slot = None
        if self.slots is not None:
            slot = self.slots.request()
            yield slot
        stages = self.sc.stages
        chain = self.sc.orchestration.mode == "chain"
        try:
            if chain:
                outcome, where = yield from self._chain_call(wf, 0)
                if outcome != OK:
                    self._fail(wf, f"{outcome}:{where}")
                    return
            else:
                for k in range(self.n_core):
                    stage = stages[k]
                    if len(stage) == 1:
                        outcome = yield from self._call(wf, stage[0])
                        if outcome != OK:
                            self._fail(wf, f"{outcome}:{stage[0]}")
                            return
                    else:
                        procs = [env.process(self._call(wf, name)) for name in stage]
                        yield simpy.AllOf(env, procs)
                        for name, p in zip(stage, procs, strict=True):
                            if p.value != OK:
                                self._fail(wf, f"{p.value}:{name}")
                                return
        finally:
            if slot is not None:
                self.slots.release(slot)
        if self.n_core == len(stages):
            self._finish(wf, COMPLETED)
        else:
            wf.response = env.now
            yield from self._publish(wf, "core.done", producer=ORCHESTRATOR)

    def _orchestrate_plain(self, wf: _Workflow):
        """:meth:`_orchestrate` for the common case (no faults, no policies, no jobs, no
        slot limit), inlined: the same events in the same order, fewer generator frames."""
        env = self.env
        net = not self._net_zero
        hop = self.hop
        style = self.style
        steps = self.rec.steps
        requests = self.requests
        busy = self.busy_s
        draws = wf.draws
        for stage, plan in self._core_plan:
            if plan is None:
                procs = [env.process(self._call(wf, name)) for name in stage]
                yield simpy.AllOf(env, procs)
                for name, p in zip(stage, procs, strict=True):
                    if p.value != OK:
                        self._fail(wf, f"{p.value}:{name}")
                        return
                continue
            name, i, res, limit, p_fail = plan
            service_s, u, _job = draws[i]
            started = env.now
            if net:
                d = hop()
                if d > 0:
                    yield env.timeout(d)
            requests[name] += 1
            if limit is not None and len(res.queue) >= limit and res.count >= res.capacity:
                outcome = REFUSED
            else:
                req = res.request()
                yield req
                if service_s > 0:
                    yield env.timeout(service_s)
                res.release(req)
                busy[name] += service_s
                outcome = ERROR if u < p_fail else OK
            if net:
                d = hop()
                if d > 0:
                    yield env.timeout(d)
            if outcome != OK:
                self._record_step(wf, name, started, FAILED, 1, NAN, outcome)
                self._fail(wf, f"{outcome}:{name}")
                return
            steps.append(_new(StepRecord, (style, wf.wid, name, started, env.now, COMPLETED, 1, NAN)))
        if self.broker is None:
            self._finish(wf, COMPLETED)
        else:
            wf.response = env.now
            if self.ev.outbox.enabled:
                yield from self._publish(wf, "core.done", producer=ORCHESTRATOR)
            else:
                self.broker.publish("core.done", wf.wid)

    def _wait_if_down(self, name: str, peer: str):
        """Arriving at ``name``: REFUSED at once if it refuses connections; if it is
        without power or cut off (``hang``), nothing answers and the request is gone: the
        caller waits for its own timeout (without one, until the end of the run)."""
        env = self.env
        cal = self.cal
        now = env.now
        partition = cal.partitioned(name, peer, now)
        mode = cal.down_mode(name, now)
        if not partition and mode is None:
            return OK
        if mode == "refuse" and not partition:
            return REFUSED
        self.count("hung_requests")
        yield env.timeout(max(self.horizon - now, 0.0) + 1.0)
        return TIMEOUT

    def _request(self, name: str, service_s: float, key: int = -1, serve_extra=None, peer: str = ORCHESTRATOR):
        """One request: hop, queue, serve, hop back.  Returns (outcome, served_at)."""
        env = self.env
        net = not self._net_zero
        if net:
            d = self.hop()
            if d > 0:
                yield env.timeout(d)
        self.requests[name] += 1
        cal = self.cal
        if cal is not None:
            gate = yield from self._wait_if_down(name, peer)
            if gate != OK:
                if net:
                    yield env.timeout(self.hop())
                return gate, env.now
        res = self.resources[name]
        limit = self._queue_limit[name]
        if limit is not None and len(res.queue) >= limit and res.count >= res.capacity:
            if net:
                yield env.timeout(self.hop())
            return REFUSED, env.now
        outcome = OK
        with res.request() as req:
            yield req
            if cal is not None and cal.is_down(name, env.now):
                # the service died while the request waited: the connection is reset
                outcome = ERROR
            else:
                if cal is not None:
                    service_s *= cal.latency_multiplier(name, env.now)
                if service_s > 0:
                    yield env.timeout(service_s)
                self.busy_s[name] += service_s
                if key >= 0 and self._track_executions[name]:
                    k = (key, name)
                    self.executions[k] = self.executions.get(k, 0) + 1
                if serve_extra is not None:  # chain mode: call onward while holding this worker
                    outcome = yield from serve_extra()
        served = env.now
        if net:
            d = self.hop()
            if d > 0:
                yield env.timeout(d)
        return outcome, served

    def _with_timeout(self, gen, timeout_s: float | None):
        """Run a request with a per-call timeout (the server keeps working when it fires)."""
        if timeout_s is None:
            result = yield from gen
            return result
        env = self.env
        proc = env.process(gen)
        yield proc | env.timeout(timeout_s)
        if proc.triggered:
            return proc.value
        return TIMEOUT, NAN

    def _call(self, wf: _Workflow, name: str, serve_extra=None):
        """Call a service with the resilience policies; jobs are submitted then polled.

        Returns the outcome (``ok`` or why it failed)."""
        env = self.env
        i = self.step_index[name]
        service_s, u, job_s = wf.draws[i]
        if self._plain[name]:
            started = env.now
            outcome, _served = yield from self._request(name, service_s, wf.wid, serve_extra)
            if outcome == OK and (u < self._failure_prob[name] if self.cal is None else self._fails(name, u)):
                outcome = ERROR
            if outcome == OK:
                self.rec.steps.append(StepRecord(self.style, wf.wid, name, started, env.now, COMPLETED, 1, NAN))
                return OK
            self._record_step(wf, name, started, FAILED, 1, NAN, outcome)
            return outcome
        svc = self.sc.services[name]
        pol = self.pol[name]
        deadline = pol.timeout.start(env.now)
        attempt = 0
        started = env.now
        while True:
            attempt += 1
            if attempt > 1:
                service_s = self.retry_time[name]()
                u = self.retry_coin[name]()
                job_s = self.job_time[name]() if svc.job is not None else 0.0
            now = env.now
            stale = NAN
            if pol.breaker is not None and not pol.breaker.allow(now):
                outcome = OPEN
            elif pol.bulkhead is not None and not pol.bulkhead.try_acquire():
                outcome = REJECTED
            else:
                if pol.budget is not None:
                    pol.budget.record_request(now)
                outcome, served = yield from self._with_timeout(
                    self._request(name, service_s, wf.wid, serve_extra), deadline.call_timeout_s(env.now)
                )
                if outcome == OK and self._fails(name, u):
                    outcome = ERROR
                    k = (wf.wid, name)
                    if k in self.executions:  # a failed execution leaves no side effect
                        self.executions[k] -= 1
                if outcome == OK and svc.job is not None:
                    outcome, stale = yield from self._poll_job(name, served, job_s, deadline)
                if pol.bulkhead is not None:
                    pol.bulkhead.release()
                if pol.breaker is not None:
                    if outcome == OK:
                        pol.breaker.record_success(env.now)
                    else:
                        pol.breaker.record_failure(env.now)
            if outcome == OK:
                self._record_step(wf, name, started, COMPLETED, attempt, stale)
                return OK
            retry = outcome not in (OPEN, DOWNSTREAM) and pol.retry.should_retry(attempt)
            if retry and pol.budget is not None and not pol.budget.can_retry(env.now):
                retry = False
            delay = pol.retry.delay_s(attempt, u=self.jitter()) if retry else 0.0
            if retry and not deadline.allows_retry(env.now, delay):
                retry = False
            if not retry:
                if pol.fallback is not None and outcome != DOWNSTREAM:
                    self.count("fallbacks")
                    self._record_step(wf, name, started, "degraded", attempt, stale)
                    return OK
                self._record_step(wf, name, started, FAILED, attempt, NAN, outcome)
                return outcome
            if pol.budget is not None:
                pol.budget.record_retry(env.now)
            self.count("retries")
            yield env.timeout(delay)

    def _record_step(self, wf: _Workflow, name: str, started: float, status: str, attempts: int, stale: float, outcome: str = "") -> None:
        self.rec.steps.append(StepRecord(self.style, wf.wid, name, started, self.env.now, status, attempts, stale))
        if outcome:
            self.count(f"step_failed:{outcome}")
        n = self.executions.pop((wf.wid, name), 0)
        if n > 1:
            if self.pol[name].idempotency_keys:
                self.count("duplicates_absorbed", n - 1)
            else:
                self.count("duplicates", n - 1)

    def _chain_call(self, wf: _Workflow, k: int):
        """Chain mode: stage ``k`` calls stage ``k + 1`` while holding its own worker."""
        stages = self.sc.stages
        stage = stages[k]
        below: dict[str, str] = {}

        def onward():
            if k + 1 >= self.n_core:
                return OK
            outcome, where = yield from self._chain_call(wf, k + 1)
            below["where"] = where
            return OK if outcome == OK else DOWNSTREAM

        if len(stage) == 1:
            name = stage[0]
            outcome = yield from self._call(wf, name, serve_extra=onward)
            if outcome == DOWNSTREAM:
                self.count("failed_downstream_steps")
                return DOWNSTREAM, below.get("where", name)
            return outcome, name
        env = self.env
        procs = [env.process(self._call(wf, name)) for name in stage]
        yield simpy.AllOf(env, procs)
        for name, p in zip(stage, procs, strict=True):
            if p.value != OK:
                return p.value, name
        return OK, stage[-1]

    def _start_job(self, name: str, job_s: float, accepted_at: float | None = None) -> _Job:
        """Start a job on the service's job workers; ``job.event`` fires when it is done."""
        env = self.env
        job = _Job()
        workers = self.job_workers.get(name)
        if workers is None:
            start = env.now if accepted_at is None else accepted_at
            job.done_at = start + job_s
            job.event = env.timeout(max(0.0, job.done_at - env.now))
            return job
        job.done_at = INF
        job.event = env.event()

        def run():
            with workers.request() as req:
                yield req
                yield env.timeout(job_s)
            job.done_at = env.now
            job.event.succeed()

        env.process(run())
        return job

    def _poll_job(self, name: str, accepted_at: float, job_s: float, deadline):
        """Poll the job's status endpoint every poll interval until it reports done."""
        env = self.env
        svc = self.sc.services[name]
        job = self._start_job(name, job_s, accepted_at)
        interval = svc.poll_interval_ms / 1000.0
        poll_s = svc.poll_time_ms / 1000.0
        polls = self.rec.polls
        while True:
            if deadline.expired(env.now + interval):
                return TIMEOUT, NAN
            yield env.timeout(interval)
            outcome, served = yield from self._with_timeout(self._request(name, poll_s), deadline.call_timeout_s(env.now))
            finished = outcome == OK and job.done_at <= served
            polls.append(PollRecord(self.style, "orchestrator", name, env.now, finished))
            if finished:
                return OK, env.now - job.done_at

    # -- events -------------------------------------------------------------------
    def _publish(self, wf: _Workflow | None, topic: str, producer: str | None, key: int | None = None):
        """A producer publishes: through the outbox relay, buffered while the broker is
        unreachable (bounded), or lost with ``acks: 0``."""
        env = self.env
        ev = self.ev
        key = wf.wid if key is None else key
        if ev.outbox.enabled:
            yield env.timeout(ev.outbox.relay_delay_ms / 1000.0)
        cal = self.cal
        if cal is not None:
            site = producer or BROKER
            wait = self._blocked_until(site, BROKER) if producer else (
                0.0 if not cal.is_down(BROKER, env.now) else cal.next_change(BROKER, env.now, "down")
            )
            if wait > 0:
                if ev.outbox.enabled:
                    pass  # the outbox table holds it; the relay retries until the broker is back
                elif ev.acks == 0:
                    self.count("lost")
                    return
                elif self.producer_buffered >= ev.producer_buffer:
                    if wf is not None:
                        self._fail(wf, f"refused:{BROKER}")
                    return
                self.producer_buffered += 1
                while True:
                    yield env.timeout(max(min(wait, self.horizon) - env.now, 1e-9))
                    wait = self._blocked_until(site, BROKER) if producer else (
                        0.0 if not cal.is_down(BROKER, env.now) else cal.next_change(BROKER, env.now, "down")
                    )
                    if wait == 0 or env.now >= self.horizon:
                        break
                self.producer_buffered -= 1
        self.broker.publish(topic, key)

    def _backpressure(self, g, below: list) -> None:
        """Pause/resume: a group stops fetching while the lag of the next stage's groups is
        at ``pause_at_lag`` (until it falls to ``resume_at_lag``): the backlog stays upstream."""
        bp = self.ev.backpressure()
        check_s = max(self._broker_s, 0.001)
        inner = g.gate

        def gate() -> float:
            wait = inner() if inner is not None else 0.0
            if wait > 0:
                return wait
            if bp.update(max(b.lag for b in below)):
                return check_s
            return 0.0

        g.gate = gate
        self._pausers.append(bp)

    def _guard_group(self, g, name: str) -> None:
        """Consumers stop while their service is down, cut off from the broker, or the
        broker is down.  Offsets are committed every ``commit_interval_ms``; when the
        service dies, what it processed since its last commit is delivered again
        (at-least-once), to be absorbed only by an idempotent consumer."""
        if self.cal is None:
            return
        env = self.env
        cal = self.cal
        every = self.sc.broker.commit_interval_ms / 1000.0
        recent: deque[tuple[Message, float]] = deque()
        phase = Uniforms(self.streams.get(f"commit-phase:{name}"))() * every

        def gate() -> float:
            wait = self._blocked_until(name, BROKER)
            return 0.0 if wait == 0.0 else min(wait, self.horizon) - env.now

        def processed(msg: Message, now: float) -> None:
            if every > 0:
                recent.append((msg, now))
                while recent and recent[0][1] < now - every:
                    recent.popleft()

        def crashes():
            for start, _end in cal.down_intervals(name):
                if start >= self.horizon:
                    return
                if start > env.now:
                    yield env.timeout(start - env.now)
                last_commit = phase + math.floor((start - phase) / every) * every if every > 0 else start
                redo = [m for m, t in recent if t > last_commit]
                recent.clear()
                if redo:
                    self.count("redelivered", len(redo))
                    for msg in reversed(redo):
                        g.redeliver(msg, front=True, duplicate=True)

        g.gate = gate
        g.on_commit = processed
        env.process(crashes())

    def _make_handler(self, name: str, k: int):
        env = self.env
        sc = self.sc
        stages = sc.stages
        i = self.step_index[name]
        svc = sc.services[name]
        prev_stage = stages[k - 1] if k > 0 and k != self.n_core else None
        last = k == len(stages) - 1
        out_topic = f"{name}.done"
        events = self.rec.events
        style = self.style
        open_wf = self.open_workflows
        seen = self.seen.setdefault(name, set())
        ev = self.ev
        retention = sc.broker.retention_s

        def handler(msg: Message):
            now = env.now
            if retention is not None and now - msg.published_s > retention:
                events.append(EventRecord(style, msg.topic, name, msg.partition, msg.offset, msg.key, msg.published_s, NAN, False))
                if msg.payload == "redelivery":  # a copy of an event already processed
                    return
                self.count("lost")
                wf = open_wf.get(msg.key)
                if wf is not None:
                    self._fail(wf, f"expired:{name}")
                return
            duplicate = msg.payload == "redelivery"
            if duplicate and ev.idempotent_consumer and msg.key in seen:
                events.append(EventRecord(style, msg.topic, name, msg.partition, msg.offset, msg.key, msg.published_s, now, True))
                self.count("duplicates_absorbed")
                return
            wf = open_wf.get(msg.key)
            if wf is None and not duplicate:  # the workflow failed elsewhere: nothing to do
                events.append(EventRecord(style, msg.topic, name, msg.partition, msg.offset, msg.key, msg.published_s, now, False))
                return
            if prev_stage is not None and len(prev_stage) > 1 and wf is not None:
                hits = wf.stage_hits.setdefault(k, set())
                hits.add(msg.topic)
                if len(hits) < len(prev_stage):  # a join: wait for every branch of the previous stage
                    events.append(EventRecord(style, msg.topic, name, msg.partition, msg.offset, msg.key, msg.published_s, now, False))
                    return
            started = now
            if wf is not None and not duplicate:
                service_s, u, job_s = wf.draws[i]
            else:
                service_s, u, job_s = self.retry_time[name](), 1.0, 0.0
            failures = self.failures.get((msg.key, name), 0)
            if failures:
                service_s, u = self.retry_time[name](), self.retry_coin[name]()
            service_s *= self._slowdown(name)
            if service_s > 0:
                yield env.timeout(service_s)
            self.busy_s[name] += service_s
            events.append(EventRecord(style, msg.topic, name, msg.partition, msg.offset, msg.key, msg.published_s, env.now, duplicate))
            if duplicate:
                self.count("duplicates")
                return
            seen.add(msg.key)
            poison = False
            if ev.poison_rate > 0:  # a poison message fails every time it is processed
                pk = (msg.key, name)
                poison = self.poisoned.get(pk)
                if poison is None:
                    poison = self.poisoned[pk] = self.poison_coin() < ev.poison_rate
            if poison or self._fails(name, u):
                yield from self._after_failure(wf, name, msg, started)
                return
            if svc.job is not None:
                env.process(self._job_then_publish(wf, name, started, job_s, last, out_topic))
                return
            self.rec.steps.append(StepRecord(style, wf.wid, name, started, env.now, COMPLETED, failures + 1, NAN))
            yield from self._step_done(wf, name, last, out_topic)

        plain = (
            retention is None and self.cal is None and ev.poison_rate == 0 and svc.job is None
            and not (prev_stage is not None and len(prev_stage) > 1)
        )  # fmt: skip
        if not plain:
            return handler
        # the short path: no faults, no poison, no join, no job (same numbers, fewer steps)
        p_fail = svc.failure_prob
        direct = not ev.outbox.enabled
        steps = self.rec.steps
        failures_of = self.failures
        n_last = len(stages[-1])
        publish = self.broker.publish

        def plain_handler(msg: Message):
            wf = open_wf.get(msg.key)
            if wf is None:
                events.append(EventRecord(style, msg.topic, name, msg.partition, msg.offset, msg.key, msg.published_s, env.now, False))
                return
            started = env.now
            failures = failures_of.get((msg.key, name), 0) if failures_of else 0
            if failures:
                service_s, u = self.retry_time[name](), self.retry_coin[name]()
            else:
                service_s, u, _job = wf.draws[i]
            if service_s > 0:
                yield env.timeout(service_s)
            self.busy_s[name] += service_s
            events.append(_new(EventRecord, (style, msg.topic, name, msg.partition, msg.offset, msg.key, msg.published_s, env.now, False)))
            if u < p_fail:
                yield from self._after_failure(wf, name, msg, started)
                return
            steps.append(_new(StepRecord, (style, wf.wid, name, started, env.now, COMPLETED, failures + 1, NAN)))
            if last:
                wf.done_services.add(name)
                if len(wf.done_services) == n_last and not wf.failed:
                    self._finish(wf, COMPLETED)
            elif direct:
                publish(out_topic, wf.wid)
            else:
                yield from self._publish(wf, out_topic, producer=name)

        return plain_handler

    def _after_failure(self, wf: _Workflow, name: str, msg: Message, started: float):
        env = self.env
        key = (msg.key, name)
        n = self.failures.get(key, 0) + 1
        self.failures[key] = n
        where = self.ev.after_failure(n)
        pol = self.pol[name]
        if where == "redeliver":  # in place: the partition waits
            self.count("retries")
            yield env.timeout(pol.retry.delay_s(n, u=self.jitter()))
            self.broker.groups[name].redeliver(msg, front=True)
            return
        if where == "retry_topic":  # non-blocking: the event comes back later via the retry topic
            self.count("retries")
            delay = pol.retry.delay_s(n, u=self.jitter()) + self._broker_delay()
            t = env.timeout(delay)
            t.callbacks.append(lambda _e: self.broker.groups[name].redeliver(msg))
            return
        self.rec.steps.append(StepRecord(self.style, wf.wid, name, started, env.now, FAILED, n, NAN))
        if where == "dlq":
            self.count("dlq")
            self._fail(wf, f"dlq:{name}")
        else:
            self._fail(wf, f"error:{name}")

    def _job_then_publish(self, wf: _Workflow, name: str, started: float, job_s: float, last: bool, topic: str):
        yield self._start_job(name, job_s).event
        # the completion is pushed: awareness lags the job only by the delivery delay
        stale = self._broker_delay() if not last else 0.0
        self.rec.steps.append(StepRecord(self.style, wf.wid, name, started, self.env.now, COMPLETED, 1, stale))
        if not wf.failed:
            yield from self._step_done(wf, name, last, topic)

    def _step_done(self, wf: _Workflow, name: str, last: bool, topic: str):
        if last:
            wf.done_services.add(name)
            if len(wf.done_services) == len(self.sc.stages[-1]) and not wf.failed:
                self._finish(wf, COMPLETED)
        else:
            yield from self._publish(wf, topic, producer=name)

    # -- change propagation -------------------------------------------------------
    def _setup_propagation(self) -> None:
        sc = self.sc
        p = sc.propagation
        self.changes: list[float] = []
        self.subs = list(p.subscribers)
        self.n_core = 0
        self._active = {p.source, *p.subscribers}
        if self.style == "events":
            self.broker = Broker(self.env, sc.broker.partitions, self._broker_delay)
            for j, name in enumerate(self.subs):
                g = self.broker.group(name, ["changes"], sc.consumers_of(name), self._make_apply_handler(name, j))
                self._guard_group(g, name)
            self._start_workflow = self._start_change_push
        else:  # orchestration and hybrid both poll: the downstream systems pull
            self.last_seen = dict.fromkeys(self.subs, 0)
            phase = Uniforms(self.streams.get("poll-phase"))
            for name in self.subs:
                self.env.process(self._poller(name, phase() * p.poll_interval_ms / 1000.0))
            self._start_workflow = self._start_change_poll

    def _start_change_push(self, wf: _Workflow) -> None:
        self.open_workflows[wf.wid] = wf
        self.changes.append(wf.start)
        wf.response = wf.start
        self.env.process(self._publish(wf, "changes", producer=self.sc.propagation.source))

    def _start_change_poll(self, wf: _Workflow) -> None:
        self.open_workflows[wf.wid] = wf
        self.changes.append(wf.start)
        wf.response = wf.start

    def _applied(self, wf: _Workflow, name: str, started: float) -> None:
        now = self.env.now
        self.rec.steps.append(StepRecord(self.style, wf.wid, name, started, now, COMPLETED, 1, now - wf.start))
        wf.done_services.add(name)
        if len(wf.done_services) == len(self.subs):
            self._finish(wf, COMPLETED)

    def _make_apply_handler(self, name: str, j: int):
        env = self.env
        events = self.rec.events
        style = self.style
        seen = self.seen.setdefault(name, set())
        ev = self.ev

        def handler(msg: Message):
            wf = self.open_workflows.get(msg.key)
            duplicate = msg.payload == "redelivery"
            if duplicate and ev.idempotent_consumer:
                events.append(EventRecord(style, msg.topic, name, msg.partition, msg.offset, msg.key, msg.published_s, env.now, True))
                self.count("duplicates_absorbed")
                return
            started = env.now
            service_s = (wf.draws[j][0] if wf is not None and not duplicate else self.retry_time[name]()) * self._slowdown(name)
            if service_s > 0:
                yield env.timeout(service_s)
            self.busy_s[name] += service_s
            events.append(EventRecord(style, msg.topic, name, msg.partition, msg.offset, msg.key, msg.published_s, env.now, duplicate))
            if duplicate:
                self.count("duplicates")
                return
            seen.add(msg.key)
            if wf is not None:
                self._applied(wf, name, started)

        return handler

    def _poller(self, name: str, phase_s: float):
        """A subscriber polling the source's change feed on a fixed timer."""
        env = self.env
        sc = self.sc
        source = sc.propagation.source
        interval = sc.propagation.poll_interval_ms / 1000.0
        source_time = self.service_time[source]
        res = self.resources[name]
        j = self.subs.index(name)
        pol = self.pol[source]
        yield env.timeout(phase_s)
        next_at = env.now
        while True:
            if self.arrivals_done and self.last_seen[name] >= len(self.changes):
                return
            if self.cal is not None and self.cal.is_down(name, env.now):
                outcome = "self-down"  # the subscriber itself is down: no poll
            else:
                outcome, served = yield from self._with_timeout(
                    self._request(source, source_time(), peer=name), pol.timeout.start(env.now).call_timeout_s(env.now)
                )
                seen = self.last_seen[name]
                new = [] if outcome != OK else [k for k in range(seen, len(self.changes)) if self.changes[k] <= served]
                self.rec.polls.append(PollRecord(self.style, name, source, env.now, bool(new)))
                if new:
                    self.last_seen[name] = new[-1] + 1
                    env.process(self._apply_batch(name, j, new, res))
            next_at += interval
            if next_at > env.now:
                yield env.timeout(next_at - env.now)

    def _apply_batch(self, name: str, j: int, ids: list[int], res: simpy.Resource):
        env = self.env
        with res.request() as req:
            yield req
            for k in ids:
                wf = self.open_workflows.get(k)
                if wf is None:
                    continue
                started = env.now
                service_s = wf.draws[j][0] * self._slowdown(name)
                if service_s > 0:
                    yield env.timeout(service_s)
                self.busy_s[name] += service_s
                self._applied(wf, name, started)
