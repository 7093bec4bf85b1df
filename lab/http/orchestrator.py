"""The orchestrator: open-model arrivals on the scenario's clock, each workflow an asyncio
task calling the flow's stages in order over HTTP (a stage with several services is a
scatter-gather with ``asyncio.gather``), asynchronous jobs submitted then polled, with the
shared resilience policies of :mod:`lab.policies` (timeout, retry with backoff and jitter,
retry budget, circuit breaker, bulkhead) driven on ``time.monotonic()``.

No coordinated omission: arrival times are drawn in advance from the seed and each
workflow starts on schedule whether or not earlier ones have finished; how late each start
was (event-loop lag) is recorded, so a run that could not keep up says so.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

import httpx
import numpy as np

from ..policies import Bulkhead, DependencyPolicies
from ..records import (
    COMPLETED,
    FAILED,
    IN_FLIGHT,
    NAN,
    PollRecord,
    Recorder,
    SeriesPoint,
    StepRecord,
    WorkflowRecord,
)
from ..scenario import Scenario
from .client import OK, TIMEOUT, classify_exception, classify_status

log = logging.getLogger(__name__)

OPEN, BULKHEAD, DEAD, DOWNSTREAM = "open", "rejected", "refused", "downstream"

#: a call with no configured timeout still gives up after this long (a hung service must
#: not hang the run; the drain deadline is the other guard)
SAFETY_TIMEOUT_S = 60.0


class Orchestrator:
    """Runs the orchestrated part of one style of a flow scenario against live services."""

    def __init__(
        self,
        scenario: Scenario,
        style: str,
        urls: dict[str, str],
        client: httpx.AsyncClient,
        rec: Recorder,
        policies: dict[str, DependencyPolicies],
        jitter_rng: np.random.Generator,
        t0: float,
        *,
        dead: Callable[[], dict[str, int]] | None = None,
        down: list[tuple[float, float]] | None = None,
        series_every_s: float = 0.5,
        on_core_done: Callable[[int, float, float, dict | None], None] | None = None,
    ):
        self.sc = scenario
        self.style = style
        self.urls = urls
        self.client = client
        self.rec = rec
        self.policies = policies
        self.jitter = jitter_rng
        self.t0 = t0
        self._dead_fn = dead
        self.dead: set[str] = set()
        self.down = down or []  # the orchestrator's own outages (wall seconds)
        self.series_every_s = series_every_s
        #: hybrid on a broker: ``on_core_done(wid, start_s, response_s, draws)`` takes over a
        #: workflow whose core succeeded (it publishes the event the downstream stages react to
        #: and records the workflow); without it the orchestrator calls them itself, unheld
        self.on_core_done = on_core_done
        stages = scenario.stages
        self.stages = stages
        self.n_core = len(stages) if style == "orchestration" else scenario.core_steps
        self.chain_mode = getattr(scenario.orchestration, "mode", "central") == "chain" and style == "orchestration"
        self.where: dict[int, str] = {}  # chain mode: where a workflow's chain broke
        #: common random numbers: per workflow, per step (service_s, coin, job_s) drawn at
        #: arrival from the simulation's streams; retries draw from its retry streams
        self.draws: dict[int, dict[str, tuple[float, float, float]]] = {}
        self.retry_draw: dict[str, Callable[[], tuple[float, float, float]]] = {}
        mif = scenario.orchestration.max_in_flight
        self.slots = asyncio.Semaphore(mif) if mif is not None else None
        self.in_flight = 0
        #: calls in flight per service, from the orchestrator's side (sampled as "queue":
        #: waiting + in service + on the wire, the closest a client can see of a queue)
        self.outstanding = dict.fromkeys(scenario.steps, 0)
        self.lateness: list[float] = []
        self._late_max = 0.0
        self.open: dict[int, float] = {}

    def now(self) -> float:
        return time.monotonic() - self.t0

    # -- the run ------------------------------------------------------------------
    def use_common_random_numbers(self, seed: int) -> None:
        """Draw every workflow's service times, failure coins and job times as the
        simulation does (same streams, same order) and send them with each call, so a real
        run and a simulated run of one seed see the same dice."""
        from ..distributions import Sampler, Uniforms
        from ..rng import Streams

        streams = Streams(seed)
        sc = self.sc
        self._crn = []
        for n in sc.steps:
            svc = sc.services[n]
            job = Sampler(svc.job, streams.get(f"job:{n}")) if svc.job is not None else None
            self._crn.append((n, Sampler(svc.service_time, streams.get(f"svc:{n}")), Uniforms(streams.get(f"fail:{n}")), job))
            rs = Sampler(svc.service_time, streams.get(f"svc-retry:{n}"))
            ru = Uniforms(streams.get(f"fail-retry:{n}"))
            self.retry_draw[n] = lambda rs=rs, ru=ru, job=job: (rs(), ru(), job() if job is not None else 0.0)

    def _draw_workflow(self, wid: int) -> None:
        if getattr(self, "_crn", None):
            self.draws[wid] = {n: (s(), u(), j() if j is not None else 0.0) for n, s, u, j in self._crn}

    def _draw(self, wid: int, name: str, attempt: int) -> dict | None:
        """The dice of one attempt, as the body fields a service reads (None: it draws)."""
        if wid not in self.draws:
            return None
        d = self.draws[wid][name] if attempt == 1 else self.retry_draw[name]()
        return {"s": d[0], "u": d[1], "j": d[2]}

    async def run(self, arrivals: list[float], *, drain_s: float) -> float:
        """Start a workflow at each arrival time; wait for stragglers up to ``drain_s``;
        returns the end of the run (seconds since t0)."""
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task] = set()
        helpers = [loop.create_task(self._sampler()), loop.create_task(self._watch_dead())]
        try:
            for wid, at in enumerate(arrivals):
                delay = at - self.now()
                if delay > 0:
                    await asyncio.sleep(delay)
                self._draw_workflow(wid)
                late = max(0.0, self.now() - at)
                self.lateness.append(late)
                self._late_max = max(self._late_max, late)
                task = loop.create_task(self._workflow(wid, at))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.wait(set(tasks), timeout=drain_s)
        finally:
            end = self.now()
            for task in list(tasks):
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            for h in helpers:
                h.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        for wid, start in sorted(self.open.items()):
            self.rec.workflows.append(WorkflowRecord(self.style, wid, start, NAN, IN_FLIGHT, "", NAN))
        self._count_policies()
        return end

    async def _sampler(self) -> None:
        series = self.rec.series
        while True:
            now = self.now()
            series.append(SeriesPoint(self.style, now, "in_flight", "workflows", float(self.in_flight)))
            series.append(SeriesPoint(self.style, now, "start_lateness", "arrivals", self._late_max))
            self._late_max = 0.0
            for name, n in self.outstanding.items():
                series.append(SeriesPoint(self.style, now, "queue", name, float(n)))
            await asyncio.sleep(self.series_every_s)

    async def _watch_dead(self) -> None:
        if self._dead_fn is None:
            return
        while True:
            for name, code in self._dead_fn().items():
                if name not in self.dead:
                    self.dead.add(name)
                    log.warning("service %s died (exit code %s) at %.2f s", name, code, self.now())
                    self.rec.count(self.style, f"dead:{name}")
            await asyncio.sleep(0.1)

    def _count_policies(self) -> None:
        for name, pol in self.policies.items():
            if pol.breaker is not None:
                self.rec.count(self.style, f"breaker_rejected:{name}", pol.breaker.rejected)
                self.rec.count(self.style, f"breaker_opened:{name}", pol.breaker.opened)
            if pol.bulkhead is not None:
                self.rec.count(self.style, f"bulkhead_rejected:{name}", pol.bulkhead.rejected)
            if pol.budget is not None:
                self.rec.count(self.style, f"retry_budget_denied:{name}", pol.budget.denied)

    # -- one workflow ---------------------------------------------------------------
    async def _workflow(self, wid: int, start: float) -> None:
        self.in_flight += 1
        self.open[wid] = start
        if any(a <= start < b for a, b in self.down):  # the orchestrator itself is down
            self._finish(wid, start, FAILED, "down:orchestrator", NAN)
            self.in_flight -= 1
            return
        try:
            if self.slots is not None:
                await self.slots.acquire()
            try:
                if self.chain_mode:
                    reason = await self._chain(wid)
                    if reason:
                        self._finish(wid, start, FAILED, reason, NAN)
                        return
                for k in range(0 if not self.chain_mode else self.n_core, self.n_core):
                    reason = await self._stage(wid, self.stages[k])
                    if reason:
                        self._finish(wid, start, FAILED, reason, NAN)
                        return
            finally:
                if self.slots is not None:
                    self.slots.release()
            response = self.now()
            if self.on_core_done is not None and self.n_core < len(self.stages):
                # hybrid with a broker: the caller has its answer; the downstream stages are a
                # choreography that the callback starts (the workflow is no longer ours)
                self.open.pop(wid, None)
                self.on_core_done(wid, start, response, self.draws.pop(wid, None))
                return
            # hybrid: the caller has its answer; the downstream part is pushed on, unheld
            for k in range(self.n_core, len(self.stages)):
                reason = await self._stage(wid, self.stages[k])
                if reason:
                    self._finish(wid, start, FAILED, reason, response)
                    return
            self._finish(wid, start, COMPLETED, "", response)
        finally:
            self.in_flight -= 1

    def _finish(self, wid: int, start: float, status: str, reason: str, response: float) -> None:
        now = self.now()
        self.open.pop(wid, None)
        self.draws.pop(wid, None)
        self.rec.workflows.append(
            WorkflowRecord(
                self.style, wid, start, now if status == COMPLETED else NAN, status, reason,
                response if not math.isnan(response) else (now if status == COMPLETED else NAN),
            )
        )  # fmt: skip

    async def _stage(self, wid: int, stage: list[str]) -> str:
        """Run one stage; '' on success, else the reason of the first failed branch."""
        if len(stage) == 1:
            outcome = await self.call(wid, stage[0])
            return "" if outcome == OK else f"{outcome}:{stage[0]}"
        outcomes = await asyncio.gather(*(self.call(wid, name) for name in stage))
        for name, outcome in zip(stage, outcomes, strict=True):
            if outcome != OK:
                return f"{outcome}:{name}"
        return ""

    # -- chain mode: each service calls the next while holding its own slot -----------------
    def _chain_spec(self, wid: int) -> list[dict]:
        """Stages 1.. of the core as the first service passes them on: URLs and, per hop,
        the caller's timeout and retries (breakers and bulkheads stay with the orchestrator)."""
        spec = []
        for stage in self.stages[1 : self.n_core]:
            hops = []
            for name in stage:
                pol = self.policies[name]
                hops.append({
                    "name": name, "url": self.urls[name] + "/call",
                    "timeout_s": pol.timeout.per_call_ms / 1000.0 if pol.timeout.per_call_ms else SAFETY_TIMEOUT_S,
                    "retries": pol.retry.retries, "backoff_s": pol.retry.backoff_s(1) if pol.retry.retries else 0.0,
                    "multiplier": pol.retry.multiplier, "draw": self._draw(wid, name, 1),
                })  # fmt: skip
            spec.append(hops)
        return spec

    async def _chain(self, wid: int) -> str:
        first = self.stages[0]
        if len(first) > 1:  # a parallel first stage: nothing to chain through
            return await self._stage(wid, first)
        outcome = await self.call(wid, first[0], chain=self._chain_spec(wid))
        where = self.where.pop(wid, "")
        if outcome == OK:
            return ""
        if outcome == DOWNSTREAM:
            self.rec.count(self.style, "failed_downstream_steps")
            return f"{DOWNSTREAM}:{where or first[0]}"
        return f"{outcome}:{first[0]}"

    def _chain_steps(self, wid: int, r: httpx.Response) -> None:
        """Record the nested calls a chained service reports (its own hops, recursively)."""
        try:
            steps = r.json().get("steps", [])
        except ValueError:
            return
        for name, started, finished, status, attempts in steps:
            self.rec.steps.append(StepRecord(self.style, wid, name, started, finished, status, attempts, NAN))

    # -- one call with its policies ---------------------------------------------------
    async def call(self, wid: int, name: str, chain: list | None = None) -> str:
        pol = self.policies[name]
        started = self.now()
        deadline = pol.timeout.start(time.monotonic())
        if pol.budget is not None:
            pol.budget.record_request(time.monotonic())
        attempt = 0
        while True:
            attempt += 1
            outcome, stale = await self._attempt(wid, name, pol, deadline, chain, attempt)
            if outcome == OK:
                self.rec.steps.append(StepRecord(self.style, wid, name, started, self.now(), COMPLETED, attempt, stale))
                return OK
            retry = outcome not in (OPEN, BULKHEAD, DOWNSTREAM) and pol.retry.should_retry(attempt) and name not in self.dead
            if retry:
                delay = pol.retry.delay_s(attempt, self.jitter)
                mono = time.monotonic()
                if not deadline.allows_retry(mono, delay):
                    retry = False
                elif pol.budget is not None:
                    retry = pol.budget.can_retry(mono)
                    if retry:
                        pol.budget.record_retry(mono)
            if not retry:
                if pol.fallback is not None and outcome != DOWNSTREAM:  # a degraded answer instead
                    pol.fallback.respond(time.monotonic())
                    self.rec.count(self.style, "fallbacks")
                    self.rec.steps.append(StepRecord(self.style, wid, name, started, self.now(), "degraded", attempt, NAN))
                    return OK
                self.rec.steps.append(StepRecord(self.style, wid, name, started, self.now(), FAILED, attempt, NAN))
                return outcome
            self.rec.count(self.style, f"retries:{name}")
            self.rec.count(self.style, "retries")
            if delay > 0:
                await asyncio.sleep(delay)

    async def _attempt(
        self, wid: int, name: str, pol: DependencyPolicies, deadline, chain=None, attempt: int = 1
    ) -> tuple[str, float]:
        breaker = pol.breaker
        if breaker is not None and not breaker.allow(time.monotonic()):
            return OPEN, NAN
        if name in self.dead:
            if breaker is not None:
                breaker.record_failure(time.monotonic())
            return DEAD, NAN
        bulkhead = pol.bulkhead
        if bulkhead is not None and not await _enter(bulkhead):
            if breaker is not None:  # a refused admission is not the dependency's fault
                breaker.record_success(time.monotonic())
            return BULKHEAD, NAN
        timeout = deadline.call_timeout_s(time.monotonic())
        if timeout is None:
            timeout = SAFETY_TIMEOUT_S
        elif timeout <= 0:  # the overall deadline is spent
            if bulkhead is not None:
                _leave(bulkhead)
            return TIMEOUT, NAN
        jid = None
        self.outstanding[name] += 1
        try:
            async with asyncio.timeout(timeout):
                body = {"wf": wid}
                draw = self._draw(wid, name, attempt)
                if draw is not None:
                    body["draw"] = draw
                if chain is not None:
                    body["chain"] = chain
                r = await self.client.post(self.urls[name] + "/call", json=body)
                outcome = classify_status(r.status_code)
                if outcome == OK and r.status_code == 202:
                    jid = r.json()["job"]
                if chain:
                    self._chain_steps(wid, r)
                    if r.status_code == 502:
                        info = r.json()
                        outcome, self.where[wid] = DOWNSTREAM, info.get("where", name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every transport failure is classified
            outcome = classify_exception(exc)
        finally:
            self.outstanding[name] -= 1
            if bulkhead is not None:
                _leave(bulkhead)
        if breaker is not None:
            mono = time.monotonic()
            breaker.record_success(mono) if outcome == OK else breaker.record_failure(mono)
        if outcome == OK and jid is not None:
            return await self._poll_job(name, jid, pol)
        return outcome, NAN

    async def _poll_job(self, name: str, jid: int, pol: DependencyPolicies) -> tuple[str, float]:
        """Poll the job's status every poll interval until done; staleness = known - done."""
        svc = self.sc.services[name]
        interval = svc.poll_interval_ms / 1000.0
        per_call = pol.timeout.per_call_ms / 1000.0 if pol.timeout.per_call_ms else SAFETY_TIMEOUT_S
        polls = self.rec.polls
        url = f"{self.urls[name]}/jobs/{jid}"
        while True:
            await asyncio.sleep(interval)
            if name in self.dead:
                return DEAD, NAN
            try:
                async with asyncio.timeout(per_call):
                    r = await self.client.get(url)
                body = r.json() if r.status_code == 200 else None
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a failed poll is a wasted poll; keep polling
                body = None
            now = self.now()
            done = body is not None and body.get("status") == "done"
            polls.append(PollRecord(self.style, "orchestrator", name, now, done))
            if done:
                return OK, now - float(body["done_at"])


async def _enter(bulkhead: Bulkhead) -> bool:
    fut = asyncio.get_running_loop().create_future()
    state = bulkhead.enter(fut)
    if state == "acquired":
        return True
    if state == "rejected":
        return False
    try:
        await fut
    except asyncio.CancelledError:
        if not bulkhead.cancel(fut):  # the slot was handed to us as we were cancelled
            _leave(bulkhead)
        raise
    return True


def _leave(bulkhead: Bulkhead) -> None:
    waiter = bulkhead.release()
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
