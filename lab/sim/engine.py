"""The SimPy engine: one scenario, one style, one seed -> records.

Styles:

* ``orchestration``: a central orchestrator runs each workflow, calling the services of
  each stage synchronously (a stage with several services is a scatter-gather), holding a
  workflow slot while it waits; asynchronous jobs are submitted, then polled.
* ``events``: a choreography over the simulated broker: each service's consumer group
  reacts to the previous stage's events and publishes its own; jobs push their completion.
* ``hybrid``: the first ``core_steps`` stages are orchestrated (the caller's answer),
  then a ``core.done`` event drives the remaining stages as a choreography.

For change propagation (``scenario.propagation``) orchestration means subscribers
polling the source every ``poll_interval_ms`` and events means pushed change events.

Common random numbers: every workflow's service times, failure coins and job times are
drawn at its arrival, in flow order, from per-service streams, so all styles of one seed
see the same dice for the same workflow.
"""

from __future__ import annotations

import logging
import math

import simpy

from ..distributions import Sampler, Uniforms
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
from ..scenario import Scenario
from ..workload import arrival_times
from .broker import Broker, Message

log = logging.getLogger(__name__)

OK, ERROR, REFUSED, TIMEOUT = "ok", "error", "refused", "timeout"


class _Workflow:
    __slots__ = ("wid", "start", "draws", "failed", "pending", "stage_hits", "response")

    def __init__(self, wid: int, start: float, draws: list[tuple[float, bool, float]]):
        self.wid = wid
        self.start = start
        self.draws = draws
        self.failed = False
        self.pending = 0
        self.stage_hits: dict[int, int] = {}
        self.response = NAN


class _Job:
    __slots__ = ("done_at", "event")


class SimEngine:
    """Runs one style of a scenario in a fresh SimPy environment."""

    def __init__(self, scenario: Scenario, style: str, seed: int, recorder: Recorder | None = None):
        self.sc = scenario
        self.style = style
        self.seed = int(seed)
        self.rec = recorder if recorder is not None else Recorder()
        self.env = simpy.Environment()
        self.streams = streams = Streams(self.seed)
        sc = scenario
        self.names = list(sc.services)
        self.service_time = {n: Sampler(s.service_time, streams.get(f"svc:{n}")) for n, s in sc.services.items()}
        self.retry_time = {n: Sampler(s.service_time, streams.get(f"svc-retry:{n}")) for n, s in sc.services.items()}
        self.fail_coin = {n: Uniforms(streams.get(f"fail:{n}")) for n, s in sc.services.items()}
        self.job_time = {n: Sampler(s.job, streams.get(f"job:{n}")) for n, s in sc.services.items() if s.job is not None}
        self.jitter = Uniforms(streams.get("retry-jitter"))
        net = sc.network
        self._net_const = net.latency_ms / 1000.0
        self._net_jitter = Sampler(_exp(net.jitter_ms), streams.get("network")) if net.jitter_ms > 0 else None
        self.resources = {
            n: simpy.Resource(self.env, capacity=s.concurrency) for n, s in sc.services.items()
        }
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
        self.broker: Broker | None = None
        self.in_flight = 0
        self.arrivals_done = False
        self.finished = self.env.event()
        self.step_index = {n: i for i, n in enumerate(sc.steps)}
        self.stage_of = {n: k for k, stage in enumerate(sc.stages) for n in stage}
        self.end_s = sc.duration_s
        self.busy_s = dict.fromkeys(self.names, 0.0)

    # -- small helpers --------------------------------------------------------------
    def hop(self) -> float:
        d = self._net_const
        if self._net_jitter is not None:
            d += self._net_jitter()
        return d

    def _broker_delay(self) -> float:
        return self.hop() + self.sc.broker.latency_ms / 1000.0 + self.hop()

    def _finish(self, wf: _Workflow, status: str, reason: str = "") -> None:
        now = self.env.now
        self.rec.workflows.append(
            WorkflowRecord(
                self.style, wf.wid, wf.start, now if status == COMPLETED else NAN, status, reason,
                wf.response if not math.isnan(wf.response) else (now if status == COMPLETED else NAN),
            )
        )  # fmt: skip
        self.in_flight -= 1
        if self.in_flight == 0 and self.arrivals_done and not self.finished.triggered:
            self.finished.succeed()

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
        cap = sc.duration_s + max(60.0, 0.5 * sc.duration_s)
        env.run(until=simpy.AnyOf(env, [self.finished, env.timeout(cap)]))
        self.end_s = env.now
        for wf in list(self.open_workflows.values()):
            self.rec.workflows.append(WorkflowRecord(self.style, wf.wid, wf.start, NAN, IN_FLIGHT, "", NAN))
        if self.broker is not None:
            self.rec.count(self.style, "published", self.broker.published)
        for n, b in self.busy_s.items():
            self.rec.count(self.style, f"busy_s:{n}", b)
        return self.rec

    def _arrivals(self):
        env = self.env
        sc = self.sc
        start = self._start_workflow
        order = sc.steps if sc.propagation is None else sc.propagation.subscribers
        samplers = [self.service_time[n] for n in order]
        coins = [(self.fail_coin[n], sc.services[n].failure_prob) for n in order]
        jobs = [self.job_time.get(n) for n in order]
        for wid, t in enumerate(arrival_times(sc.workload, sc.duration_s, self.streams)):
            if t > env.now:
                yield env.timeout(t - env.now)
            draws = []
            for s, (coin, p), j in zip(samplers, coins, jobs, strict=True):
                u = coin()
                draws.append((s(), u < p, j() if j is not None else 0.0))
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
                    self.broker.group(name, topics, sc.consumers_of(name), self._make_handler(name, k))
            self._start_workflow = self._start_flow
        else:
            self._start_workflow = self._start_flow

    def _start_flow(self, wf: _Workflow) -> None:
        self.open_workflows[wf.wid] = wf
        if self.n_core > 0:
            self.env.process(self._orchestrate(wf))
        else:
            self.broker.publish("workflow.requested", wf.wid)
            wf.response = self.env.now

    def _fail(self, wf: _Workflow, reason: str) -> None:
        if not wf.failed:
            wf.failed = True
            del self.open_workflows[wf.wid]
            self._finish(wf, FAILED, reason)

    # -- orchestration ------------------------------------------------------------
    def _orchestrate(self, wf: _Workflow):
        env = self.env
        slot = None
        if self.slots is not None:
            slot = self.slots.request()
            yield slot
        stages = self.sc.stages
        try:
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
            del self.open_workflows[wf.wid]
            self._finish(wf, COMPLETED)
        else:
            wf.response = env.now
            self.broker.publish("core.done", wf.wid)

    def _request(self, name: str, service_s: float):
        """One HTTP-like request: hop, queue, serve, hop back.  Returns (outcome, served_at)."""
        env = self.env
        d = self.hop()
        if d > 0:
            yield env.timeout(d)
        res = self.resources[name]
        limit = self.sc.services[name].queue_limit
        if limit is not None and len(res.queue) >= limit and res.count >= res.capacity:
            if d > 0:
                yield env.timeout(self.hop())
            return REFUSED, env.now
        with res.request() as req:
            yield req
            if service_s > 0:
                yield env.timeout(service_s)
            self.busy_s[name] += service_s
        served = env.now
        d = self.hop()
        if d > 0:
            yield env.timeout(d)
        return OK, served

    def _with_timeout(self, gen):
        """Run a request with the orchestrator's per-call timeout (the server keeps working)."""
        timeout_ms = self.sc.orchestration.timeout_ms
        if timeout_ms is None:
            result = yield from gen
            return result
        env = self.env
        proc = env.process(gen)
        t = env.timeout(timeout_ms / 1000.0)
        yield proc | t
        if proc.triggered:
            return proc.value
        return TIMEOUT, NAN

    def _call(self, wf: _Workflow, name: str):
        """Call a service with retries; jobs are submitted then polled.  Returns the outcome."""
        env = self.env
        o = self.sc.orchestration
        svc = self.sc.services[name]
        i = self.step_index[name]
        service_s, failed, job_s = wf.draws[i]
        attempt = 0
        started = env.now
        while True:
            attempt += 1
            if attempt > 1:
                service_s = self.retry_time[name]()
                failed = self.fail_coin[name]() < svc.failure_prob
                job_s = self.job_time[name]() if svc.job is not None else 0.0
            outcome, served = yield from self._with_timeout(self._request(name, service_s))
            if outcome == OK and failed:
                outcome = ERROR
            stale = NAN
            if outcome == OK and svc.job is not None:
                outcome, stale = yield from self._poll_job(name, served, job_s)
            if outcome == OK:
                self.rec.steps.append(StepRecord(self.style, wf.wid, name, started, env.now, COMPLETED, attempt, stale))
                return OK
            if attempt > o.retries:
                self.rec.steps.append(StepRecord(self.style, wf.wid, name, started, env.now, FAILED, attempt, NAN))
                return outcome
            yield env.timeout(self._backoff(attempt))

    def _backoff(self, attempt: int) -> float:
        o = self.sc.orchestration
        b = o.backoff_ms / 1000.0 * o.backoff_multiplier ** (attempt - 1)
        if o.jitter == "full":
            return self.jitter() * b
        if o.jitter == "equal":
            return b / 2 + self.jitter() * b / 2
        return b

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
        job.done_at = math.inf
        job.event = env.event()

        def run():
            with workers.request() as req:
                yield req
                yield env.timeout(job_s)
            job.done_at = env.now
            job.event.succeed()

        env.process(run())
        return job

    def _poll_job(self, name: str, accepted_at: float, job_s: float):
        """Poll the job's status endpoint every poll interval until it reports done."""
        env = self.env
        svc = self.sc.services[name]
        job = self._start_job(name, job_s, accepted_at)
        interval = svc.poll_interval_ms / 1000.0
        poll_s = svc.poll_time_ms / 1000.0
        polls = self.rec.polls
        while True:
            yield env.timeout(interval)
            outcome, served = yield from self._with_timeout(self._request(name, poll_s))
            if outcome != OK:
                polls.append(PollRecord(self.style, "orchestrator", name, env.now, False))
                continue
            finished = job.done_at <= served
            polls.append(PollRecord(self.style, "orchestrator", name, env.now, finished))
            if finished:
                return OK, env.now - job.done_at

    # -- events -------------------------------------------------------------------
    def _make_handler(self, name: str, k: int):
        env = self.env
        sc = self.sc
        stages = sc.stages
        i = self.step_index[name]
        svc = sc.services[name]
        prev = len(stages[k - 1]) if k > 0 and k != self.n_core else 1
        last = k == len(stages) - 1
        out_topic = f"{name}.done"
        events = self.rec.events
        steps = self.rec.steps
        style = self.style
        open_wf = self.open_workflows
        n_last = len(stages[-1])

        def handler(msg: Message):
            wf = open_wf.get(msg.key)
            if wf is None:  # the workflow failed elsewhere; the event is consumed, nothing to do
                events.append(EventRecord(style, msg.topic, name, msg.partition, msg.offset, msg.key, msg.published_s, env.now, False))
                return
            if prev > 1:
                hits = wf.stage_hits.get(k, 0) + 1
                wf.stage_hits[k] = hits
                if hits < prev:  # a join: wait for every branch of the previous stage
                    events.append(EventRecord(style, msg.topic, name, msg.partition, msg.offset, msg.key, msg.published_s, env.now, False))
                    return
            started = env.now
            service_s, failed, job_s = wf.draws[i]
            if service_s > 0:
                yield env.timeout(service_s)
            self.busy_s[name] += service_s
            events.append(EventRecord(style, msg.topic, name, msg.partition, msg.offset, msg.key, msg.published_s, env.now, False))
            if failed:
                steps.append(StepRecord(style, wf.wid, name, started, env.now, FAILED, 1, NAN))
                self._fail(wf, f"error:{name}")
                return
            if svc.job is not None:
                env.process(self._job_then_publish(wf, name, started, job_s, last, n_last, out_topic))
                return
            steps.append(StepRecord(style, wf.wid, name, started, env.now, COMPLETED, 1, NAN))
            self._step_done(wf, last, n_last, out_topic)

        return handler

    def _job_then_publish(self, wf: _Workflow, name: str, started: float, job_s: float, last: bool, n_last: int, topic: str):
        yield self._start_job(name, job_s).event
        # the completion is pushed: awareness lags the job only by the delivery delay
        stale = self._broker_delay() if not last else 0.0
        self.rec.steps.append(StepRecord(self.style, wf.wid, name, started, self.env.now, COMPLETED, 1, stale))
        if not wf.failed:
            self._step_done(wf, last, n_last, topic)

    def _step_done(self, wf: _Workflow, last: bool, n_last: int, topic: str) -> None:
        if last:
            wf.pending += 1
            if wf.pending == n_last and not wf.failed:
                del self.open_workflows[wf.wid]
                self._finish(wf, COMPLETED)
        else:
            self.broker.publish(topic, wf.wid)

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
                self.broker.group(name, ["changes"], sc.consumers_of(name), self._make_apply_handler(name, j))
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
        self.broker.publish("changes", wf.wid)

    def _start_change_poll(self, wf: _Workflow) -> None:
        self.open_workflows[wf.wid] = wf
        self.changes.append(wf.start)
        wf.response = wf.start

    def _applied(self, wf: _Workflow, name: str, started: float) -> None:
        now = self.env.now
        self.rec.steps.append(StepRecord(self.style, wf.wid, name, started, now, COMPLETED, 1, now - wf.start))
        wf.pending += 1
        if wf.pending == len(self.subs):
            del self.open_workflows[wf.wid]
            self._finish(wf, COMPLETED)

    def _make_apply_handler(self, name: str, j: int):
        env = self.env
        events = self.rec.events
        style = self.style

        def handler(msg: Message):
            wf = self.open_workflows[msg.key]
            started = env.now
            service_s = wf.draws[j][0]
            if service_s > 0:
                yield env.timeout(service_s)
            self.busy_s[name] += service_s
            events.append(EventRecord(style, msg.topic, name, msg.partition, msg.offset, msg.key, msg.published_s, env.now, False))
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
        yield env.timeout(phase_s)
        next_at = env.now
        while True:
            if self.arrivals_done and self.last_seen[name] >= len(self.changes):
                return
            outcome, served = yield from self._with_timeout(self._request(source, source_time()))
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
                wf = self.open_workflows[k]
                started = env.now
                service_s = wf.draws[j][0]
                if service_s > 0:
                    yield env.timeout(service_s)
                self.busy_s[name] += service_s
                self._applied(wf, name, started)


def _exp(mean_ms: float):
    from ..scenario import Dist

    return Dist(dist="exponential", mean_ms=mean_ms)
