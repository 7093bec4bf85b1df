"""The Kafka engine: a scenario's event-driven style, and the choreographed part of its
hybrid style, on a real Apache Kafka broker.

Same choreography as the simulated ``events`` style (:mod:`lab.sim.engine`), for real, with
kafka-python:

* one topic per event type: ``workflow.requested`` (an arrival) and ``<service>.done`` for
  every service whose stage has a successor, with the scenario's ``broker.partitions``,
  created by the lab (and deleted after the run); plus a ``dead-letter`` topic;
* producers with ``acks`` and idempotence as asked (:class:`KafkaOptions`);
* one consumer group per subscribing service, with ``scenario.consumers_of(service)``
  consumers, each a thread with its own ``KafkaConsumer``; a service sleeps its sampled
  service time per event and then publishes its ``.done`` event.  A stage with several
  services is a fan-out (several groups read the same topic); the next stage joins;
* keys are workflow ids, so every event of one workflow lands in the same partition
  number and per-entity order holds;
* arrivals follow the scenario's clock (open model, no coordinated omission): latency runs
  from the *scheduled* arrival, carried in every event with its publish timestamp;
* offsets are committed after the batch's downstream events are acknowledged
  (at-least-once).  After the run the lab reconciles what was produced with what each
  group processed: ``lost`` must be 0, ``duplicates`` are counted, and an idempotent
  consumer (a processed-event store per service) absorbs them;
* consumer lag over time comes from the broker: end offsets minus committed offsets.

Clocks: ``compress`` (as in the HTTP engine) divides the scenario's calendar - duration,
warm-up, faults, bursts - keeping the rate per second and the service times, so latencies stay
comparable with the simulation; records are then in wall seconds.  ``time_scale`` instead
plays everything, service times included, at ``time_scale`` wall seconds per second (0.1 plays
a 60 s scenario in 6 s) and records in the scenario's seconds.

Faults (:class:`ConsumerOutage`, :class:`ConsumerCrash`, :class:`BrokerRestart`, or the
scenario's ``faults:`` section when it has one): an outage pauses a service's consumers
(they stay in the group and resume where they were); a crash kills consumers between
processing and committing (their group rebalances; the uncommitted events are redelivered,
hence duplicates), optionally restarting them; a broker restart stops and restarts the
lab's own broker, keeping its data.  The scenario's fault calendar
(:func:`lab.faults.fault_calendar`: outages, load-shedding after backup power, broker crashes)
plays as pauses of a service's consumers and restarts of the broker.

Hybrid (style ``hybrid``): the first ``hybrid.core_steps`` stages are orchestrated over real
HTTP by the HTTP engine's machinery (:func:`lab.http.engine.drive_fleet`: one uvicorn process
per core service, the :class:`~lab.http.orchestrator.Orchestrator` with the scenario's
policies); when a workflow's core succeeds, the orchestrator hands it over
(``on_core_done``) and the run publishes a ``core.done`` event, which the downstream
services' consumer groups react to as in the events style.  ``response_s`` is when the core
answered, the end-to-end latency runs to the last downstream step, and reconciliation covers
the Kafka part.  Real HTTP service times run at real speed, so a hybrid needs
``time_scale=1`` (``compress`` shortens the calendar instead).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..distributions import Sampler, Uniforms
from ..errors import EngineUnavailable, LabError
from ..records import (
    COMPLETED,
    FAILED,
    IN_FLIGHT,
    NAN,
    EventRecord,
    Recorder,
    SeriesPoint,
    StepRecord,
    WorkflowRecord,
)
from ..rng import Streams
from ..scenario import Scenario
from ..workload import arrival_times
from . import broker as lab_broker

log = logging.getLogger(__name__)

STYLE = "events"
HYBRID = "hybrid"
#: styles this engine runs (for change propagation: events only)
KAFKA_STYLES = (STYLE, HYBRID)
REQUESTED = "workflow.requested"
CORE_DONE = "core.done"  # the hybrid's hand-over event, as in the simulation
CHANGES = "changes"
DEAD_LETTER = "dead-letter"


# -- options and faults ----------------------------------------------------------------------

@dataclass
class KafkaOptions:
    """Client settings of a run.  Defaults are at-least-once with idempotent producers and
    consumers; group timeouts are short so crashes and rebalances do not stall a run."""

    acks: str | int = "all"
    idempotent_producer: bool = True
    idempotent_consumer: bool = True
    max_poll_records: int = 20
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 500
    linger_ms: int = 1
    drain_timeout_s: float = 90.0  # wall seconds to wait for stragglers after the last arrival
    join_timeout_s: float = 60.0  # wall seconds for every consumer group to get its partitions
    commit_timeout_s: float = 20.0  # wall seconds, once every event is processed, for the groups' commits to land
    delete_topics: bool = True


@dataclass(frozen=True)
class ConsumerOutage:
    """``service``'s consumers pause from ``start_s`` for ``duration_s`` (scenario seconds)."""

    service: str
    start_s: float
    duration_s: float


@dataclass(frozen=True)
class ConsumerCrash:
    """At ``at_s``, ``consumers`` of ``service``'s consumers (all if None) die after processing
    their next event and before committing it; restarted after ``restart_after_s`` if given."""

    service: str
    at_s: float
    consumers: int | None = 1
    restart_after_s: float | None = None


@dataclass(frozen=True)
class BrokerRestart:
    """At ``at_s`` the lab's broker is stopped (controlled shutdown), kept down ``down_s``
    (plus its start-up time) and started again with the same data."""

    at_s: float
    down_s: float = 0.0


Fault = ConsumerOutage | ConsumerCrash | BrokerRestart


def options_from_scenario(sc: Scenario) -> KafkaOptions:
    """Client settings from the scenario's ``resilience.events`` section when it has one
    (``acks``, ``idempotent_producer``, ``idempotent_consumer``, ``max_poll_records``);
    otherwise the :class:`KafkaOptions` defaults."""
    opt = KafkaOptions()
    events = getattr(getattr(sc, "resilience", None), "events", None)
    if events is not None:
        opt.acks = events.acks
        opt.idempotent_producer = bool(events.idempotent_producer)
        opt.idempotent_consumer = bool(events.idempotent_consumer)
        opt.max_poll_records = min(int(events.max_poll_records), 100)
    return opt


def faults_from_scenario(sc: Scenario, seed: int) -> list[Fault]:
    """Map the scenario's ``faults:`` section (if the scenario has one) to Kafka faults, in
    scenario seconds.

    The down intervals of the scenario's fault calendar (:func:`lab.faults.fault_calendar`,
    the simulation's: outages, load-shedding after backup power, crashes of ``broker``;
    merged per site) pause a service's consumers (:class:`ConsumerOutage`) or stop and restart
    the broker (:class:`BrokerRestart`); a partition from the broker (given, or a service's
    network link dark in load-shedding) pauses the service's consumers too; a crash window of a service kills all its consumers and restarts them at its
    end (:class:`ConsumerCrash`).  The orchestrator's down time has no consumer to pause (a
    hybrid's core plays it over HTTP)."""
    faults = getattr(sc, "faults", None)
    if faults is None or faults.empty:
        return []
    from ..faults import BROKER, crash_intervals, fault_calendar
    from ..rng import spawn

    # service crashes are played as consumer crashes (below); every other way for a site to
    # be down (a broker crash too) comes from the calendar.  Crash streams are per service
    # and index, so leaving out the services' crashes keeps the broker's draws as they are.
    down_only = faults.model_copy(update={
        "crashes": [c for c in faults.crashes if c.service == BROKER],
        "latency_spikes": [], "error_bursts": [], "partitions": [],
    })  # fmt: skip
    horizon = sc.horizon_s  # the simulation's and HTTP engine's horizon
    cal = fault_calendar(down_only, list(sc.services), horizon, seed)
    out: list[Fault] = []
    for name in sorted(cal.down):
        for s, e in cal.down_intervals(name):
            if name == BROKER:
                out.append(BrokerRestart(at_s=s, down_s=e - s))
            elif name in sc.services:
                out.append(ConsumerOutage(name, s, e - s))
    for pt in getattr(faults, "partitions", []):
        if pt.peer == BROKER:  # cut off from the broker: its consumers get nothing
            out.append(ConsumerOutage(pt.service, pt.start_s, pt.duration_s))
    for (a, b), iv in sorted(cal.partitions.items()):  # a network link without power (load-shedding)
        if BROKER in (a, b) and (a if b == BROKER else b) in sc.services:
            for s, e in zip(iv.starts, iv.ends, strict=True):
                out.append(ConsumerOutage(a if b == BROKER else b, s, e - s))
    per_service: dict[str, int] = {}
    for c in getattr(faults, "crashes", []):
        if c.service not in sc.services:
            continue
        i = per_service.get(c.service, 0)
        per_service[c.service] = i + 1
        rng = spawn(seed, f"faults.crash:{c.service}:{i}")
        for s, e in crash_intervals(c, sc.duration_s, rng):
            out.append(ConsumerCrash(c.service, s, consumers=None, restart_after_s=e - s))
    return out


# -- the run ---------------------------------------------------------------------------------

class _Workflow:
    __slots__ = ("wid", "start_wall", "response_wall", "draws", "failed", "done", "last_hits")

    def __init__(self, wid: int, start_wall: float, draws: dict[str, tuple[float, float, float]]):
        self.wid = wid
        self.start_wall = start_wall
        self.response_wall: float | None = None  # hybrid: when the orchestrated core answered
        self.draws = draws
        self.failed = False
        self.done = False
        self.last_hits: set[str] = set()


@dataclass
class _Consumer:
    service: str
    index: int
    thread: threading.Thread | None = None
    crash: threading.Event = field(default_factory=threading.Event)
    crashed: bool = False


@dataclass
class _Commits:
    """One consumer's offset bookkeeping (touched by its own thread only: kafka-python runs
    commit callbacks inside ``poll``/``commit_async`` on the calling thread).

    ``pending``: per partition, in offset order, (next offset, the downstream sends of that
    record); ``acked``: per partition, the offset up to which every record's sends are
    acknowledged and which the broker has not yet confirmed as committed.  An offset leaves
    ``acked`` only when its commit succeeded (or the partition was revoked), so a commit
    that fails - during a rebalance, with the coordinator moving - is sent again."""

    pending: dict[Any, deque] = field(default_factory=dict)
    acked: dict[Any, int] = field(default_factory=dict)
    inflight_since: float | None = None  # a commit_async whose callback has not run yet
    retry_at: float = 0.0  # after a failed commit: not before this (wall clock)
    stuck_since: float | None = None  # see KafkaRun._repair_membership


def _member_stable(consumer: Any) -> bool:
    """Whether ``consumer`` is a stable member of its group with no rejoin due (kafka-python's
    coordinator state; True when this kafka-python does not tell)."""
    coord = getattr(consumer, "_coordinator", None)
    try:
        return str(coord.state) == "<stable>" and not coord.need_rejoin()
    except Exception:  # noqa: BLE001 - internals of another kafka-python version
        return True


def _rebalance_listener(run: KafkaRun, service: str, index: int):
    """A listener for ``subscribe``.  Having one matters with kafka-python 3: only then does
    it stop fetching (and returning) records of partitions being revoked while an eager
    rebalance runs, instead of handing a consumer events that another member is about to
    own (processed twice, commits refused).  It runs on kafka-python's IO thread (3.x) or in
    ``poll`` (2.x), so it only counts and logs."""
    from kafka import ConsumerRebalanceListener

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            log.debug("%s consumer %d: %d partition(s) revoked", service, index, len(revoked))

        def on_partitions_assigned(self, assigned):
            log.debug("%s consumer %d: %d partition(s) assigned", service, index, len(assigned))
            with run.lock:
                run.rec.count(run.style, "rebalances")

    return Listener()


def _kafka():
    try:
        import kafka  # noqa: F401
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise EngineUnavailable("kafka-python is not installed (pip install kafka-python)") from exc
    return kafka


class KafkaRun:
    """One run of a scenario's event-driven style (or of its hybrid style: the core over HTTP,
    the rest on the broker) on a real broker."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int,
        bootstrap: str,
        time_scale: float = 1.0,
        compress: float = 1.0,
        options: KafkaOptions | None = None,
        faults: list[Fault] | None = None,
        style: str = STYLE,
        transport: str = "aiohttp",
    ):
        if style not in KAFKA_STYLES:
            raise LabError(f"the Kafka engine runs {' and '.join(KAFKA_STYLES)}", source="style", field=style)
        if style == HYBRID and scenario.propagation is not None:
            raise LabError("change propagation runs its events style on Kafka, not hybrid", source=scenario.name, field="style")
        if style == HYBRID and time_scale != 1.0:
            raise LabError("a hybrid's core runs over real HTTP at real speed: use --compress, not --time-scale",
                           source="--time-scale", field=str(time_scale))  # fmt: skip
        if not time_scale > 0:
            raise LabError("must be > 0", source="--time-scale", field=str(time_scale))
        if not compress > 0:
            raise LabError("must be > 0", source="--compress", field=str(compress))
        self.sc = scenario
        self.seed = int(seed)
        self.bootstrap = bootstrap
        self.scale = float(time_scale)
        self.compress = float(compress)
        self.horizon = scenario.duration_s / self.compress  # the run's length in engine seconds
        self.opt = options or KafkaOptions()
        self.style = style
        self.transport = transport
        self.faults = [_compressed(f, self.compress) for f in faults or []]
        for f in self.faults:
            if not isinstance(f, BrokerRestart) and f.service not in scenario.services:
                raise LabError(f"unknown service {f.service!r}", source="faults", field="service")
            if isinstance(f, BrokerRestart) and not lab_broker.owns(bootstrap):
                raise LabError("a broker restart needs the lab's own broker (`lab kafka up`), not an external cluster",
                               source="faults", field="broker")  # fmt: skip
        self.rec = Recorder()
        self.prefix = f"lab.{_safe(scenario.name)}.{uuid.uuid4().hex[:8]}"
        self.n_core = scenario.core_steps if style == HYBRID else 0
        if style == HYBRID:  # the orchestrated core publishes core.done; the rest is a choreography
            self.stages, self.first_event = scenario.stages[self.n_core :], CORE_DONE
        elif scenario.propagation is None:
            self.stages, self.first_event = scenario.stages, REQUESTED
        else:  # change propagation: the source publishes each change; every subscriber applies it
            self.stages, self.first_event = [list(scenario.propagation.subscribers)], CHANGES
        self.steps = [n for st in self.stages for n in st]
        self.propagation = scenario.propagation is not None
        # the topic whose acknowledgement answers the caller (events style only)
        self._requested_topic = self.topic(REQUESTED) if self.first_event == REQUESTED else None
        self.stage_of = {n: k for k, st in enumerate(self.stages) for n in st}
        if style == HYBRID:  # the core services' faults are played by their HTTP processes
            core = [f for f in self.faults if not isinstance(f, BrokerRestart) and f.service not in self.stage_of]
            if core:
                log.info("hybrid: %d fault(s) of core services are played over HTTP, not on Kafka", len(core))
            self.faults = [f for f in self.faults if f not in core]
        self.clock = threading.Event()  # set when the run's clock (t0) starts
        self.core_rec = Recorder()  # hybrid: what the HTTP orchestrator records
        self.orch: Any = None
        self.core_meta: dict[str, Any] = {}
        self.lock = threading.Lock()
        self._tls = threading.local()
        self.stop = threading.Event()
        self.workflows: dict[int, _Workflow] = {}
        self.open = 0
        self.arrivals_done = False
        self.produced: dict[str, set[int]] = {}  # topic -> workflow ids acknowledged by the broker
        self.where: dict[tuple[str, int], tuple[int, int]] = {}  # (topic, wid) -> (partition, offset)
        self.processed: dict[str, set[tuple[str, int]]] = {n: set() for n in self.steps}  # the idempotency store
        self.seen: dict[str, set[tuple[str, int]]] = {n: set() for n in self.steps}
        self.join_hits: dict[tuple[str, int], set[str]] = {}
        self.consumers: dict[str, list[_Consumer]] = {n: [] for n in self.steps}
        self.assigned: dict[str, set[int]] = {n: set() for n in self.steps}
        self.commit_state: dict[tuple[str, int], _Commits] = {}
        # (service, consumer index) -> (its assignment, a stable member with no rejoin due), after each poll
        self.membership: dict[tuple[str, int], tuple[frozenset, bool]] = {}
        self.commit_lag: dict[str, int] = {}  # per group, after the run: records beyond its committed offsets
        self.admin_lock = threading.Lock()  # the admin client serves the monitor and the run
        self.paused: dict[str, list[tuple[float, float]]] = {}
        self.errors: list[BaseException] = []
        self.t0 = 0.0
        self._setup_policies()
        self.job_pools = {
            n: ThreadPoolExecutor(max_workers=svc.job_concurrency or 64, thread_name_prefix=f"job-{n}")
            for n, svc in scenario.services.items() if svc.job is not None and n in self.stage_of
        }  # fmt: skip
        self.max_job_s = max((_dist_high_s(svc.job) for svc in scenario.services.values() if svc.job is not None), default=0.0)

    def _setup_policies(self) -> None:
        from ..faults import fault_calendar
        from ..policies import EventsConfig, build_policies

        sc = self.sc
        resilience = getattr(sc, "resilience", None)
        if resilience is not None and hasattr(resilience, "with_orchestration_defaults"):
            resilience = resilience.with_orchestration_defaults(sc.orchestration)
        self.events_cfg = getattr(resilience, "events", None) or EventsConfig()
        self.policies = build_policies(resilience, list(sc.services))
        faults = getattr(sc, "faults", None)
        self.cal = None
        if faults is not None and (faults.latency_spikes or faults.error_bursts):
            self.cal = fault_calendar(faults, list(sc.services), sc.duration_s, self.seed)
        streams = Streams(self.seed)
        retry_time = {n: Sampler(s.service_time, streams.get(f"svc-retry:{n}")) for n, s in sc.services.items()}
        retry_coin = {n: Uniforms(streams.get(f"fail-retry:{n}")) for n in sc.services}
        jitter = Uniforms(streams.get("retry-jitter"))
        # samplers are not thread-safe: consumers draw under the lock
        self.retry_time = {n: self._locked(f) for n, f in retry_time.items()}
        self.retry_coin = {n: self._locked(f) for n, f in retry_coin.items()}
        self.jitter = self._locked(jitter)

    def _locked(self, draw):
        def locked() -> float:
            with self.lock:
                return draw()

        return locked

    # -- names and clocks -----------------------------------------------------------
    def topic(self, event: str) -> str:
        return f"{self.prefix}.{event}"

    def group(self, service: str) -> str:
        return f"{self.prefix}.{service}"

    def in_topics(self, service: str) -> list[str]:
        k = self.stage_of[service]
        topics = [self.topic(self.first_event)] if k == 0 else [self.topic(f"{s}.done") for s in self.stages[k - 1]]
        if self.events_cfg.retry_topic:
            topics.append(self.topic(f"{service}.retry"))
        return topics

    def out_topic(self, service: str) -> str | None:
        k = self.stage_of[service]
        return None if k == len(self.stages) - 1 else self.topic(f"{service}.done")

    def now_s(self, wall: float | None = None) -> float:
        """Scenario seconds since the start of the run."""
        return ((time.time() if wall is None else wall) - self.t0) / self.scale

    def wall_of(self, t: float) -> float:
        return self.t0 + t * self.scale

    # -- set-up -----------------------------------------------------------------------
    def _common(self) -> dict[str, Any]:
        # metadata refreshed every few seconds: a consumer that joined before it saw its topics'
        # partitions (a slow or restarting broker) notices them and rejoins instead of idling
        return {"bootstrap_servers": self.bootstrap, "request_timeout_ms": 30000, "reconnect_backoff_max_ms": 1000,
                "metadata_max_age_ms": 3000}  # fmt: skip

    def _create_topics(self) -> list[str]:
        from kafka import KafkaAdminClient

        names = [self.topic(self.first_event), self.topic(DEAD_LETTER)]
        names += [t for n in self.steps if (t := self.out_topic(n)) is not None]
        if self.events_cfg.retry_topic:
            names += [self.topic(f"{n}.retry") for n in self.steps]
        self.admin = KafkaAdminClient(client_id=f"{self.prefix}.admin", **self._common())
        spec = {t: {"num_partitions": self.sc.broker.partitions, "replication_factor": 1} for t in names}
        self.admin.create_topics(spec, timeout_ms=30000, wait_for_metadata=True)
        return names

    def _producer(self):
        from kafka import KafkaProducer

        acks = self.opt.acks
        if isinstance(acks, str) and acks != "all":
            acks = int(acks)
        cfg: dict[str, Any] = {
            "acks": acks, "linger_ms": self.opt.linger_ms, "enable_idempotence": self.opt.idempotent_producer,
            "client_id": f"{self.prefix}.producer", "delivery_timeout_ms": 180000,
        }  # fmt: skip
        if not self.opt.idempotent_producer or acks not in ("all", -1):
            cfg["enable_idempotence"] = False
        return KafkaProducer(**cfg, **self._common())

    def _max_poll_interval_ms(self, service: str) -> int:
        """Long enough for a full poll of slow events, short enough that a rebalance waiting for
        a member that stopped polling does not stall the run for Kafka's default 5 minutes."""
        slow_s = _dist_high_s(self.sc.services[service].service_time) * self.scale
        return int(max(30.0, 3 * self.opt.max_poll_records * slow_s) * 1000)

    def _new_consumer(self, service: str, index: int):
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(
            group_id=self.group(service), client_id=f"{self.group(service)}.{index}",
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=self.opt.max_poll_records,
            session_timeout_ms=self.opt.session_timeout_ms, heartbeat_interval_ms=self.opt.heartbeat_interval_ms,
            fetch_max_wait_ms=50, max_poll_interval_ms=self._max_poll_interval_ms(service), **self._common(),
        )  # fmt: skip
        # see every topic's partitions before joining the group: a group leader that joins with
        # no metadata for a topic assigns nobody its partitions
        topics = self.in_topics(service)
        deadline = time.time() + 30
        while time.time() < deadline and not self.stop.is_set():
            if all(len(consumer.partitions_for_topic(t)) == self.sc.broker.partitions for t in topics):
                break
            time.sleep(0.2)
        consumer.subscribe(topics, listener=_rebalance_listener(self, service, index))
        return consumer

    # -- publishing ---------------------------------------------------------------------
    def publish(self, topic: str, wid: int, value: dict[str, Any]) -> None:
        fut = self.producer.send(topic, key=str(wid).encode(), value=json.dumps(value).encode())
        futs = getattr(self._tls, "futs", None)
        if futs is not None:  # a consumer's record: its offset is committed once this is acknowledged
            futs.append(fut)
        fut.add_callback(lambda md: self._acked(topic, wid, md.partition, md.offset))
        fut.add_errback(lambda exc: self._publish_failed(topic, wid, exc))

    def _acked(self, topic: str, wid: int, partition: int = -1, offset: int = -1) -> None:
        now = time.time()
        with self.lock:
            self.produced.setdefault(topic, set()).add(wid)
            self.where[(topic, wid)] = (partition, offset)
            if topic == self._requested_topic:  # events: the caller's answer is the broker's ack
                wf = self.workflows.get(wid)
                if wf is not None and wf.response_wall is None:
                    wf.response_wall = now

    def _publish_failed(self, topic: str, wid: int, exc: BaseException) -> None:
        log.warning("publish to %s of workflow %d failed: %s", topic, wid, exc)
        with self.lock:
            self.rec.count(self.style, "publish_failed")

    # -- consuming ----------------------------------------------------------------------
    def _start_consumer(self, service: str) -> _Consumer:
        c = _Consumer(service, len(self.consumers[service]))
        c.thread = threading.Thread(target=self._consume, args=(c,), name=f"kafka-{service}-{c.index}", daemon=True)
        self.consumers[service].append(c)
        c.thread.start()
        return c

    def _in_outage(self, service: str, now_s: float) -> bool:
        return any(s <= now_s < e for s, e in self.paused.get(service, ()))

    def _consume(self, c: _Consumer) -> None:
        from kafka.errors import KafkaError

        try:
            consumer = self._new_consumer(c.service, c.index)
        except Exception as exc:  # noqa: BLE001 - a consumer that cannot start fails the run
            self.errors.append(exc)
            return
        service = c.service
        paused = False
        st = _Commits()
        self.commit_state[(service, c.index)] = st
        had_partitions, since = False, time.time()
        try:
            while not self.stop.is_set():
                if self._in_outage(service, self.now_s()):
                    if not paused:
                        log.info("outage: pausing %s consumer %d", service, c.index)
                    parts = consumer.assignment()
                    if parts:
                        consumer.pause(*parts)
                    paused = True
                    got = consumer.poll(timeout_ms=100)
                    for tp, recs in got.items():  # partitions assigned after the pause: rewind them
                        consumer.seek(tp, recs[0].offset)
                        consumer.pause(tp)
                    self._repair_membership(consumer, st, service, c.index)
                    self._commit_acknowledged(consumer, st, service)
                    continue
                if paused:
                    consumer.resume(*consumer.paused())
                    paused = False
                    log.info("outage over: resuming %s consumer %d", service, c.index)
                try:
                    batch = consumer.poll(timeout_ms=100)
                except KafkaError as exc:  # e.g. the broker is restarting: try again shortly
                    log.info("%s consumer %d poll failed (%s); retrying", service, c.index, exc)
                    self.stop.wait(0.2)
                    continue
                self._repair_membership(consumer, st, service, c.index)
                self.membership[(service, c.index)] = (frozenset(consumer.assignment()), _member_stable(consumer))
                if consumer.assignment():
                    if not had_partitions:
                        had_partitions = True
                        with self.lock:
                            self.assigned[service].add(c.index)
                elif not had_partitions and c.index < self.sc.broker.partitions and time.time() - since > 15:
                    # joined but never given a partition (a rebalance that saw no topic metadata):
                    # leave and join again
                    log.warning("%s consumer %d has no partitions after 15 s; rejoining", service, c.index)
                    with contextlib.suppress(Exception):
                        consumer.close(autocommit=False, timeout_ms=5000)
                    consumer = self._new_consumer(service, c.index)
                    st.pending.clear()
                    st.acked.clear()
                    st.inflight_since = None
                    since = time.time()
                    continue
                done: dict[Any, int] = {}
                try:
                    for tp, recs in batch.items():
                        for r in recs:
                            self._tls.futs = []
                            self._handle(service, r)
                            st.pending.setdefault(tp, deque()).append((r.offset + 1, self._tls.futs))
                            done[tp] = r.offset + 1
                            if c.crash.is_set():
                                # dies after processing, before committing: the group rebalances
                                # and another consumer gets these events again
                                log.info("crash: %s consumer %d dies with uncommitted events", service, c.index)
                                c.crashed = True
                                self.rec.count(self.style, "consumer_crashes")
                                consumer.close(autocommit=False)
                                return
                except KafkaError as exc:
                    # could not hand an event on: rewind every partition of the batch to its
                    # first unfinished record, so those come again (at-least-once)
                    log.info("%s consumer %d: %s; rewinding the batch", service, c.index, exc)
                    for tp, recs in batch.items():
                        consumer.seek(tp, done.get(tp, recs[0].offset))
                finally:
                    self._tls.futs = None
                self._commit_acknowledged(consumer, st, service)
        except Exception as exc:  # noqa: BLE001
            if not self.stop.is_set():
                log.exception("consumer %s/%d failed", service, c.index)
                self.errors.append(exc)
        finally:
            if not c.crashed:
                with contextlib.suppress(Exception):  # closing after the broker went away
                    consumer.close(autocommit=False, timeout_ms=5000)

    def _repair_membership(self, consumer: Any, st: _Commits, service: str, index: int) -> None:
        """Work around a kafka-python 3 race that leaves a consumer out of its group for good.

        ``poll(timeout_ms=100)`` bounds how long it waits for a JoinGroup/SyncGroup round
        trip; when that wait times out, the join task stays in flight and the next ``poll``
        is meant to pick up its result.  But a group leader that rejoins because the topic
        metadata changed (every group's first rebalance: the leader assigned before it saw
        the topic's partitions) stops needing a rejoin as soon as it has computed the new
        assignment, so if the round trip finishes while nobody waits for it, the next
        ``poll`` skips the join altogether: the member stays ``rebalancing`` for ever, with
        heartbeats off (the broker drops it after the session timeout) and its previous
        assignment still fetchable.  It keeps processing events its group has handed to
        others (duplicates; the group waits for it, then rebalances without it) and every
        commit it sends is refused (``RebalanceInProgressError``), so its offsets never land.

        Such a member - rebalancing, no rejoin needed, no join in flight - is asked to
        rejoin once it has been so for a second (a join in progress passes through that state
        for microseconds at most); its next ``poll`` then runs a complete join.  A no-op on
        kafka-python 2, whose coordinator has no join task."""
        coord = getattr(consumer, "_coordinator", None)
        if coord is None or not hasattr(coord, "_join_task"):
            return
        try:
            task = coord._join_task
            stuck = (str(coord.state) == "<rebalancing>" and (task is None or task.is_done)
                     and not coord.need_rejoin())  # fmt: skip
        except Exception:  # noqa: BLE001 - internals of another kafka-python version
            return
        now = time.time()
        if not stuck:
            st.stuck_since = None
        elif st.stuck_since is None:
            st.stuck_since = now
        elif now - st.stuck_since > 1.0:
            log.warning("%s consumer %d is stuck rebalancing with no join in flight; rejoining its group", service, index)
            coord.request_rejoin()
            st.stuck_since = None
            with self.lock:
                self.rec.count(self.style, "forced_rejoins")

    def _commit_acknowledged(self, consumer: Any, st: _Commits, service: str) -> None:
        """Commit, without blocking, every record whose downstream events the broker has
        acknowledged (at-least-once without a flush per batch); a record whose publish failed
        for good is fetched and processed again.  Offsets stay due until a commit of them
        succeeds: one refused in a rebalance is sent again on a later pass."""
        from kafka.structs import OffsetAndMetadata

        assigned = consumer.assignment()
        for tp in list(st.pending):
            q = st.pending[tp]
            if tp not in assigned:  # revoked in a rebalance: the new owner processes it again
                del st.pending[tp]
                continue
            while q and all(f.is_done for f in q[0][1]):
                off, futs = q[0]
                if any(f.failed() for f in futs):
                    log.warning("%s: a downstream publish failed; processing offset %d of %s again", service, off - 1, tp)
                    consumer.seek(tp, off - 1)
                    q.clear()
                    break
                q.popleft()
                st.acked[tp] = off
            if not q:
                del st.pending[tp]
        for tp in list(st.acked):
            if tp not in assigned:  # no longer ours to commit: the new owner commits it
                del st.acked[tp]
        now = time.time()
        if not st.acked or now < st.retry_at:
            return
        if st.inflight_since is not None and now - st.inflight_since < 5.0:
            return  # one commit at a time (a lost callback frees the slot after 5 s)
        offsets = {tp: OffsetAndMetadata(off, "", -1) for tp, off in st.acked.items()}
        st.inflight_since = now
        try:
            consumer.commit_async(offsets, callback=lambda o, r: self._committed(st, o, r))
        except Exception as exc:  # noqa: BLE001 - e.g. no coordinator: try again shortly
            st.inflight_since = None
            self._committed(st, offsets, exc)

    def _committed(self, st: _Commits, offsets: Any, response: Any) -> None:
        st.inflight_since = None
        if isinstance(response, BaseException):  # a rebalance or the broker away: sent again later
            log.debug("commit failed (%s); will commit again", response)
            st.retry_at = time.time() + 0.2
            with self.lock:
                self.rec.count(self.style, "commit_failed")
            return
        for tp, om in offsets.items():
            if st.acked.get(tp) == om.offset:
                del st.acked[tp]

    def _handle(self, service: str, r: Any) -> None:
        ev = json.loads(r.value)
        wid = int(ev["wid"])
        topic_event = r.topic[len(self.prefix) + 1 :]
        eid = (topic_event, wid)
        start_wall = time.time()
        published_s = self.now_s(ev["pub"])
        events = self.rec.events
        with self.lock:
            duplicate = eid in self.seen[service]
            self.seen[service].add(eid)
            if duplicate:
                self.rec.count(self.style, "duplicates")
            wf = self.workflows.get(wid)
        if duplicate and self.opt.idempotent_consumer and eid in self.processed[service]:
            events.append(EventRecord(self.style, topic_event, service, r.partition, r.offset, wid, published_s, self.now_s(), True))
            with self.lock:
                self.rec.count(self.style, "duplicates_absorbed")
            return
        k = self.stage_of[service]
        prev = len(self.stages[k - 1]) if k > 0 else 1
        if wf is None or wf.failed:
            self._processed(service, eid)
            events.append(EventRecord(self.style, topic_event, service, r.partition, r.offset, wid, published_s, self.now_s(), duplicate))
            return
        if prev > 1 and not topic_event.endswith(".retry"):
            with self.lock:
                hits = self.join_hits.setdefault((service, wid), set())
                hits.add(topic_event)
                waiting = len(hits) < prev
            if waiting:  # a join: wait for every branch of the previous stage
                self._processed(service, eid)
                events.append(EventRecord(self.style, topic_event, service, r.partition, r.offset, wid, published_s, self.now_s(), duplicate))
                return
        retry = topic_event.endswith(".retry")
        attempt = int(ev.get("attempt", 0))
        if retry or attempt:
            service_s, u, job_s = self.retry_time[service](), self.retry_coin[service](), wf.draws[service][2]
        else:
            service_s, u, job_s = wf.draws[service]
        while True:
            attempt_wall = time.time()
            work_s = service_s * self._slowdown(service)
            if work_s > 0:
                time.sleep(work_s * self.scale)
            started, finished = self.now_s(attempt_wall), self.now_s()
            with self.lock:
                self.rec.count(self.style, f"busy_s:{service}", work_s)
            if not self._fails(service, u):
                break
            where = self._after_failure(wf, service, attempt + 1, started, finished, ev)
            if where != "redeliver":
                events.append(EventRecord(self.style, topic_event, service, r.partition, r.offset, wid, published_s, finished, duplicate))
                self._processed(service, eid)
                return
            attempt += 1  # in place: this partition waits for the retry
            service_s, u = self.retry_time[service](), self.retry_coin[service]()
        events.append(EventRecord(self.style, topic_event, service, r.partition, r.offset, wid, published_s, finished, duplicate))
        if job_s > 0:
            # an asynchronous job: the service accepted it; its workers run it and push the
            # completion event when done, while the consumer moves on
            self.job_pools[service].submit(self._job, wf, service, self.now_s(start_wall), job_s, ev["t0"], attempt + 1)
        else:
            # for change propagation: how stale the subscriber was (change made until applied)
            stale = finished - self.now_s(wf.start_wall) if self.propagation else NAN
            self.rec.steps.append(StepRecord(self.style, wid, service, self.now_s(start_wall), finished, COMPLETED, attempt + 1, stale))
            self._step_done(wf, service, ev["t0"])
        self._processed(service, eid)

    def _fails(self, service: str, u: float) -> bool:
        p = self.sc.services[service].failure_prob
        q = self.cal.extra_failure_prob(service, self.now_s() * self.compress) if self.cal is not None else 0.0
        if q > 0:
            p = 1.0 - (1.0 - p) * (1.0 - q)
        return u < p

    def _slowdown(self, service: str) -> float:
        return self.cal.latency_multiplier(service, self.now_s() * self.compress) if self.cal is not None else 1.0

    def _after_failure(self, wf: _Workflow, service: str, n: int, started: float, finished: float, ev: dict) -> str:
        """Where a failed event goes (``resilience.events``): again in place, via the retry
        topic after a backoff, to the dead-letter topic, or dropped (the workflow fails)."""
        where = self.events_cfg.after_failure(n)
        delay_s = self.policies[service].retry.delay_s(n, u=self.jitter())
        if where == "redeliver":
            with self.lock:
                self.rec.count(self.style, "retries")
            time.sleep(delay_s * self.scale)
            return where
        if where == "retry_topic":
            with self.lock:
                self.rec.count(self.style, "retries")
            value = {"wid": wf.wid, "t0": ev["t0"], "attempt": n}
            timer = threading.Timer(delay_s * self.scale, self._publish_retry, args=(service, wf.wid, value))
            timer.daemon = True
            timer.start()
            return where
        self.rec.steps.append(StepRecord(self.style, wf.wid, service, started, finished, FAILED, n, NAN))
        if where == "dlq":
            self.publish(self.topic(DEAD_LETTER), wf.wid, {"wid": wf.wid, "t0": ev["t0"], "pub": time.time(), "from": service})
            with self.lock:
                self.rec.count(self.style, "dlq")
            self._finish(wf, FAILED, f"dlq:{service}")
        else:
            self._finish(wf, FAILED, f"error:{service}")
        return where

    def _publish_retry(self, service: str, wid: int, value: dict) -> None:
        if not self.stop.is_set():
            self.publish(self.topic(f"{service}.retry"), wid, {**value, "pub": time.time()})

    def _job(self, wf: _Workflow, service: str, started: float, job_s: float, t0: float, attempts: int = 1) -> None:
        if self.stop.wait(job_s * self.scale):
            return
        try:
            self.rec.steps.append(StepRecord(self.style, wf.wid, service, started, self.now_s(), COMPLETED, attempts, NAN))
            if not wf.failed:
                self._step_done(wf, service, t0)
        except Exception as exc:  # noqa: BLE001 - a pool thread: hand the error to the run
            log.exception("job of %s for workflow %d failed", service, wf.wid)
            self.errors.append(exc)

    def _step_done(self, wf: _Workflow, service: str, t0: float) -> None:
        out = self.out_topic(service)
        if out is not None:
            self.publish(out, wf.wid, {"wid": wf.wid, "t0": t0, "pub": time.time()})
            return
        with self.lock:
            wf.last_hits.add(service)
            complete = len(wf.last_hits) == len(self.stages[-1])
        if complete:
            self._finish(wf, COMPLETED)

    def _processed(self, service: str, eid: tuple[str, int]) -> None:
        with self.lock:
            self.processed[service].add(eid)

    def _finish(self, wf: _Workflow, status: str, reason: str = "") -> None:
        now = time.time()
        with self.lock:
            if wf.done:
                return
            wf.done = True
            wf.failed = status == FAILED
            self.open -= 1
        t = self.now_s(now)
        start = self.now_s(wf.start_wall)
        if self.propagation:
            response = start
        elif wf.response_wall is not None:  # hybrid: the caller had its answer when the core did
            response = self.now_s(wf.response_wall)
        else:
            response = t if status == COMPLETED else NAN
        self.rec.workflows.append(
            WorkflowRecord(self.style, wf.wid, start, t if status == COMPLETED else NAN, status, reason, response)
        )

    # -- arrivals, monitor, faults --------------------------------------------------------
    def _start_clock(self, t0: float) -> None:
        self.t0 = t0
        self.clock.set()

    def _arrivals(self) -> None:
        try:
            if self.style == HYBRID:
                self._play_core()
            else:
                self._start_clock(time.time())
                self._play_arrivals()
        except Exception as exc:  # noqa: BLE001 - hand the error to the run
            log.exception("arrivals failed")
            self.errors.append(exc)
            self.arrivals_done = True

    def _play_core(self) -> None:
        """The hybrid's orchestrated core over real HTTP (the HTTP engine's fleet and
        orchestrator, core services only); each workflow whose core succeeds is handed to
        :meth:`_core_done`, which publishes its ``core.done`` event."""
        import numpy as np

        from ..http.engine import (
            drive_fleet,
            fault_windows,
            orchestrator_outages,
            service_configs,
            wall_workload,
        )

        sc = self.sc
        core = [n for st in sc.stages[: self.n_core] for n in st]
        windows = fault_windows(sc, self.seed)  # the calendar's windows, load shedding included
        down = orchestrator_outages(windows, self.compress)
        cfgs = service_configs(sc, HYBRID, self.seed, self.compress, windows)
        cfgs = {n: cfgs[n] for n in core}
        arrivals = list(arrival_times(wall_workload(sc.workload, self.compress), self.horizon, Streams(self.seed)))

        def on_start(orch: Any) -> None:  # on the event loop: align our clock with the orchestrator's
            self.orch = orch
            self._start_clock(time.time() + (orch.t0 - time.monotonic()))

        end, lateness, dead = drive_fleet(
            sc, HYBRID, cfgs, self.core_rec, arrivals, self.seed, compress=self.compress, transport=self.transport,
            drain_s=self.opt.drain_timeout_s, orchestrator_down=down, on_start=on_start, on_core_done=self._core_done,
        )  # fmt: skip
        lat = np.array(lateness, dtype=float)
        self.core_meta = {
            "arrivals": len(arrivals), "core": core, "core_end_s": end, "dead_services": dead,
            "start_lateness_p50_s": float(np.percentile(lat, 50)) if lat.size else 0.0,
            "start_lateness_p99_s": float(np.percentile(lat, 99)) if lat.size else 0.0,
            "start_lateness_max_s": float(lat.max()) if lat.size else 0.0,
        }  # fmt: skip
        if dead:
            log.warning("hybrid core: service(s) died during the run: %s", dead)
        self.arrivals_done = True
        log.info("hybrid core done: %d arrivals, %d handed over to Kafka", len(arrivals), len(self.workflows))

    def _core_done(self, wid: int, start_s: float, response_s: float, draws: dict | None) -> None:
        """The orchestrator's hand-over (on its event loop): the workflow's core succeeded at
        ``response_s`` (seconds on the shared clock); publish ``core.done``."""
        try:
            wf = _Workflow(wid, self.wall_of(start_s), draws or {})
            wf.response_wall = self.wall_of(response_s)
            with self.lock:
                self.workflows[wid] = wf
                self.open += 1
            self.publish(self.topic(CORE_DONE), wid, {"wid": wid, "t0": wf.start_wall, "pub": time.time()})
        except Exception as exc:  # noqa: BLE001 - hand the error to the run
            log.exception("hand-over of workflow %d failed", wid)
            self.errors.append(exc)

    def _play_arrivals(self) -> None:
        sc = self.sc
        streams = Streams(self.seed)
        order = self.steps
        samplers = {n: Sampler(sc.services[n].service_time, streams.get(f"svc:{n}")) for n in order}
        jobs = {n: Sampler(sc.services[n].job, streams.get(f"job:{n}")) for n in order if sc.services[n].job is not None}
        coins = {n: Uniforms(streams.get(f"fail:{n}")) for n in order}
        topic = self.topic(self.first_event)
        wid = 0
        for t in arrival_times(_wall_workload(sc.workload, self.compress), self.horizon, streams):
            if self.stop.is_set():
                break
            due = self.wall_of(t)
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            draws = {}
            for n in order:
                s = samplers[n]()
                draws[n] = (s, coins[n](), jobs[n]() if n in jobs else 0.0)
            wf = _Workflow(wid, due, draws)
            with self.lock:
                self.workflows[wid] = wf
                self.open += 1
            # the event carries the scheduled arrival (t0) and its publish time (pub)
            self.publish(topic, wid, {"wid": wid, "t0": due, "pub": time.time()})
            wid += 1
        self.producer.flush()
        self.arrivals_done = True
        log.info("arrivals done: %d workflows in %.1f s of scenario time", wid, self.now_s())

    def _monitor(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        interval = self.sc.series_interval_s / self.compress if self.sc.series_interval_s else max(0.5, self.horizon / 100.0)
        every = interval * self.scale
        probe = None
        groups = {self.group(n): n for n in self.steps}
        while not self.stop.wait(every):
            now = self.now_s()
            core = self.orch.in_flight if self.orch is not None else 0  # hybrid: workflows still in the core
            with self.lock:
                self.rec.series.append(SeriesPoint(self.style, now, "in_flight", "workflows", float(self.open + core)))
            try:
                if probe is None:
                    probe = KafkaConsumer(client_id=f"{self.prefix}.monitor", enable_auto_commit=False, **self._common())
                with self.admin_lock:
                    committed = self.admin.list_group_offsets(list(groups))
                tps = [TopicPartition(t, p) for n in self.steps for t in self.in_topics(n) for p in range(self.sc.broker.partitions)]
                ends = probe.end_offsets(list(set(tps)))
                for g, n in groups.items():
                    offs = committed.get(g, {})
                    lag = 0
                    for t in self.in_topics(n):
                        for p in range(self.sc.broker.partitions):
                            tp = TopicPartition(t, p)
                            c = offs.get(tp)
                            lag += ends.get(tp, 0) - (c.offset if c is not None and c.offset >= 0 else 0)
                    self.rec.series.append(SeriesPoint(self.style, now, "lag", n, float(lag)))
            except Exception as exc:  # noqa: BLE001 - e.g. the broker is restarting
                log.debug("lag probe failed: %s", exc)
        if probe is not None:
            probe.close()

    def _schedule_faults(self) -> list[threading.Thread]:
        threads = []
        for f in self.faults:
            if isinstance(f, ConsumerOutage):
                self.paused.setdefault(f.service, []).append((f.start_s, f.start_s + f.duration_s))
                continue
            th = threading.Thread(target=self._fault, args=(f,), name=f"fault-{type(f).__name__}", daemon=True)
            threads.append(th)
        return threads

    def _sleep_until(self, t: float) -> bool:
        delay = self.wall_of(t) - time.time()
        return not (delay > 0 and self.stop.wait(delay))

    def _fault(self, f: Fault) -> None:
        try:
            if isinstance(f, ConsumerCrash):
                if not self._sleep_until(f.at_s):
                    return
                alive = [c for c in self.consumers[f.service] if not c.crashed and not c.crash.is_set()]
                victims = alive if f.consumers is None else alive[: f.consumers]
                for c in victims:
                    c.crash.set()
                if f.restart_after_s is not None and self._sleep_until(f.at_s + f.restart_after_s):
                    for _ in victims:
                        self._start_consumer(f.service)
            elif isinstance(f, BrokerRestart):
                if not self._sleep_until(f.at_s):
                    return
                t_stop = self.now_s()
                log.info("fault: restarting the broker at t=%.1f s", t_stop)
                lab_broker.restart(down_s=f.down_s * self.scale)
                self.rec.count(self.style, "broker_restarts")
                self.rec.count(self.style, "broker_down_s", self.now_s() - t_stop)
        except Exception as exc:  # noqa: BLE001
            log.exception("fault %s failed", f)
            self.errors.append(exc)

    # -- the run ----------------------------------------------------------------------------
    def _settled(self) -> bool:
        with self.lock:
            if not self.arrivals_done or self.open > 0:
                return False
            for n in self.steps:
                want = {(t[len(self.prefix) + 1 :], w) for t in self.in_topics(n) for w in self.produced.get(t, ())}
                if not want <= self.processed[n]:
                    return False
            return True

    def run(self) -> tuple[Recorder, float, dict[str, Any]]:
        _kafka()
        topics = self._create_topics()
        self.producer = self._producer()
        fault_threads = self._schedule_faults()
        self.t0 = time.time() + 3600.0  # outages stay in the future until the clock starts
        try:
            for n in self.steps:
                for _ in range(self.sc.consumers_of(n)):
                    self._start_consumer(n)
            self._wait_joined()
            self._wait_settled_groups(time.time() + self.opt.join_timeout_s)
            if self.style == HYBRID:  # the hand-over must not wait for topic metadata
                self.producer.partitions_for(self.topic(CORE_DONE))
            arrivals = threading.Thread(target=self._arrivals, name="kafka-arrivals", daemon=True)
            monitor = threading.Thread(target=self._monitor, name="kafka-monitor", daemon=True)
            arrivals.start()  # starts the clock (hybrid: once the core's services are up)
            while not self.clock.wait(0.1) and arrivals.is_alive():
                pass
            if self.clock.is_set():
                monitor.start()
                for th in fault_threads:
                    th.start()
            arrivals.join()
            deadline = time.time() + self.opt.drain_timeout_s + self.max_job_s * self.scale
            while time.time() < deadline and not self._settled() and not self.errors:
                time.sleep(0.1)
            end_s = self.now_s()
            if not self.errors:
                self._wait_committed()
        finally:
            self.stop.set()
            for pool in self.job_pools.values():
                pool.shutdown(wait=False, cancel_futures=True)
            for cs in self.consumers.values():
                for c in cs:
                    if c.thread is not None:
                        c.thread.join(timeout=15)
            for th in fault_threads:
                if th.is_alive():
                    th.join(timeout=120)
            with contextlib.suppress(Exception):
                self.producer.close(timeout=10)
        if self.errors:
            raise EngineUnavailable(f"the Kafka run failed: {self.errors[0]!r}")
        meta = self._reconcile(end_s)
        if self.style == HYBRID:  # the core's steps, polls, failures and counters; our own in-flight series
            core = self.core_rec
            core.series = [p for p in core.series if p.metric != "in_flight" and (p.metric != "queue" or p.entity not in self.stage_of)]
            self.rec.extend(core)
            meta["core"] = self.core_meta
        if self.opt.delete_topics:
            try:
                self.admin.delete_topics(topics, timeout_ms=30000)
                self.admin.delete_groups([self.group(n) for n in self.steps])
            except Exception as exc:  # noqa: BLE001 - cleaning up is best effort
                log.debug("cleanup failed: %s", exc)
        self.admin.close()
        return self.rec, end_s, meta

    def _commit_lag(self, probe: Any) -> dict[str, int]:
        """Per group: records on the topics it reads beyond its committed offsets (the broker's
        end offsets minus the group's committed offsets, over every partition)."""
        from kafka import TopicPartition

        tps = {n: [TopicPartition(t, p) for t in self.in_topics(n) for p in range(self.sc.broker.partitions)] for n in self.steps}
        ends = probe.end_offsets(list({tp for v in tps.values() for tp in v}))
        with self.admin_lock:
            committed = self.admin.list_group_offsets([self.group(n) for n in self.steps])
        lag: dict[str, int] = {}
        for n in self.steps:
            offs = committed.get(self.group(n), {})
            lag[n] = 0
            for tp in tps[n]:
                c = offs.get(tp)
                lag[n] += max(0, ends.get(tp, 0) - (c.offset if c is not None and c.offset is not None and c.offset >= 0 else 0))
        return lag

    def _wait_committed(self) -> None:
        """Once every event is processed: wait (``commit_timeout_s`` at most) until every group
        with a live consumer has committed everything on the topics it reads, so that the
        consumers stop with their offsets on the broker (a later run of the group, or a member
        left after a rebalance, starts where this one ended, rereading nothing)."""
        from kafka import KafkaConsumer

        self.commit_lag = {}
        live = {n for n in self.steps if any(not c.crashed for c in self.consumers[n])}
        if not live:
            return
        probe = None
        deadline = time.time() + self.opt.commit_timeout_s
        try:
            probe = KafkaConsumer(client_id=f"{self.prefix}.probe", enable_auto_commit=False, **self._common())
            while True:
                try:
                    self.commit_lag = self._commit_lag(probe)
                except Exception as exc:  # noqa: BLE001 - e.g. the broker is restarting
                    log.debug("commit probe failed: %s", exc)
                else:
                    if not any(self.commit_lag[n] for n in live):
                        return
                if time.time() >= deadline or self.errors:
                    break
                time.sleep(0.2)
            log.warning("offsets not committed %.0f s after the last event was processed: %s", self.opt.commit_timeout_s,
                        {n: v for n, v in self.commit_lag.items() if v})  # fmt: skip
        except Exception as exc:  # noqa: BLE001
            log.warning("could not check the groups' committed offsets: %s", exc)
        finally:
            if probe is not None:
                with contextlib.suppress(Exception):
                    probe.close()

    def _wait_joined(self) -> None:
        deadline = time.time() + self.opt.join_timeout_s
        while time.time() < deadline and not self.errors:
            with self.lock:
                ok = all(len(self.assigned[n]) >= min(self.sc.consumers_of(n), self.sc.broker.partitions) for n in self.steps)
            if ok:
                return
            time.sleep(0.1)
        if self.errors:
            raise EngineUnavailable(f"Kafka consumers could not start: {self.errors[0]!r}")
        with self.lock:
            idle = [n for n in self.steps if len(self.assigned[n]) < min(self.sc.consumers_of(n), self.sc.broker.partitions)]
        raise EngineUnavailable(
            f"consumers of {', '.join(idle)} got no partitions within {self.opt.join_timeout_s:.0f} s "
            f"(is the broker at {self.bootstrap} overloaded?)"
        )

    def _wait_settled_groups(self, deadline: float) -> None:
        """Before the clock starts: wait until every group is a stable one - each member joined
        with no rejoin due, and their assignments split the topics' partitions exactly - for
        half a second.  A group's first join is usually followed by a second rebalance (its
        leader assigned before it saw the topics' partitions); one that ran into the first
        events would revoke partitions with processed, not yet committed events, which the new
        owner would process again.  Not fatal: past ``deadline`` the run starts anyway."""
        since = None
        while time.time() < deadline and not self.errors:
            if not self._groups_settled():
                since = None
            elif since is None:
                since = time.time()
            elif time.time() - since >= 0.5:
                return
            time.sleep(0.05)
        if not self.errors:
            log.warning("consumer groups still rebalancing after %.0f s; starting anyway", self.opt.join_timeout_s)

    def _groups_settled(self) -> bool:
        from kafka import TopicPartition

        members = dict(self.membership)
        for n in self.steps:
            want = {TopicPartition(t, p) for t in self.in_topics(n) for p in range(self.sc.broker.partitions)}
            states = [members.get((n, c.index)) for c in self.consumers[n] if not c.crashed]
            if not states or any(m is None or not m[1] for m in states):
                return False
            parts = [m[0] for m in states]
            if sum(len(a) for a in parts) != len(want) or set().union(*parts) != want:
                return False
        return True

    def _reconcile(self, end_s: float) -> dict[str, Any]:
        """Per group: events produced (acknowledged) on the topics it reads vs processed.

        ``lost``: never processed although the group's committed offset has passed them (the
        broker considers them consumed); ``unprocessed``: still before the committed offset
        when the run ended (a backlog the drain deadline cut off, not a loss)."""
        from kafka import TopicPartition

        committed: dict[str, dict[Any, Any]] | None = None
        try:
            with self.admin_lock:
                committed = self.admin.list_group_offsets([self.group(n) for n in self.steps])
        except Exception as exc:  # noqa: BLE001 - without offsets every missing event counts as lost
            log.warning("could not read committed offsets (%s); counting every unprocessed event as lost", exc)
        lost = unprocessed = 0
        per_group: dict[str, dict[str, int]] = {}
        for n in self.steps:
            want = {(t, w) for t in self.in_topics(n) for w in self.produced.get(t, ())}
            offs = committed.get(self.group(n), {}) if committed is not None else {}
            g_lost = g_left = 0
            for t, w in want:
                if (t[len(self.prefix) + 1 :], w) in self.processed[n]:
                    continue
                part, off = self.where.get((t, w), (-1, -1))
                c = offs.get(TopicPartition(t, part))
                if committed is None or (c is not None and c.offset is not None and 0 <= off < c.offset):
                    g_lost += 1
                else:
                    g_left += 1
            lost += g_lost
            unprocessed += g_left
            per_group[n] = {"produced": len(want), "processed": len(want) - g_lost - g_left, "lost": g_lost,
                            "unprocessed": g_left, "uncommitted": self.commit_lag.get(n, -1)}  # fmt: skip
        self.rec.count(self.style, "unprocessed", unprocessed)
        self.rec.count(self.style, "lost", lost)
        self.rec.count(self.style, "published", sum(len(v) for v in self.produced.values()))
        for wf in self.workflows.values():
            if not wf.done:
                response = self.now_s(wf.response_wall) if wf.response_wall is not None else NAN
                self.rec.workflows.append(WorkflowRecord(self.style, wf.wid, self.now_s(wf.start_wall), NAN, IN_FLIGHT, "", response))
        c = self.rec.counters
        return {
            "bootstrap": self.bootstrap, "topic_prefix": self.prefix, "time_scale": self.scale, "compress": self.compress, "groups": per_group,
            "lost": lost, "unprocessed": unprocessed, "duplicates": int(c.get((self.style, "duplicates"), 0)),
            "duplicates_absorbed": int(c.get((self.style, "duplicates_absorbed"), 0)),
            "dlq": int(c.get((self.style, "dlq"), 0)), "retries": int(c.get((self.style, "retries"), 0)), "end_s": end_s,
            "uncommitted": sum(v for v in self.commit_lag.values() if v > 0),
            "commit_failed": int(c.get((self.style, "commit_failed"), 0)),
            "forced_rejoins": int(c.get((self.style, "forced_rejoins"), 0)),
        }  # fmt: skip


def _dist_high_s(d: Any) -> float:
    """A generous upper bound of a distribution, in seconds (for drain deadlines)."""
    if d.dist == "uniform":
        return d.high_ms / 1000.0
    if d.dist == "deterministic":
        return d.mean_ms / 1000.0
    if d.dist == "lognormal" and d.p99_ms is not None:
        return 2 * d.p99_ms / 1000.0
    return 7 * d.mean_ms / 1000.0


def _compressed(f: Fault, compress: float) -> Fault:
    """A fault with its times in engine seconds (scenario seconds / ``compress``)."""
    if compress == 1.0:
        return f
    if isinstance(f, ConsumerOutage):
        return ConsumerOutage(f.service, f.start_s / compress, f.duration_s / compress)
    if isinstance(f, ConsumerCrash):
        after = None if f.restart_after_s is None else f.restart_after_s / compress
        return ConsumerCrash(f.service, f.at_s / compress, f.consumers, after)
    return BrokerRestart(f.at_s / compress, f.down_s / compress)


def _wall_workload(w: Any, compress: float) -> Any:
    """The workload on the engine's clock: same rate per second, calendar shape compressed
    (as the HTTP engine does, so the two real engines compare)."""
    if compress == 1.0:
        return w
    from ..http.engine import wall_workload

    return wall_workload(w, compress)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)[:40] or "scenario"


def run_kafka(
    scenario: Scenario,
    *,
    seed: int | None = None,
    bootstrap: str | None = None,
    time_scale: float = 1.0,
    compress: float = 1.0,
    options: KafkaOptions | None = None,
    faults: list[Fault] | None = None,
    start_broker: bool = False,
    styles: list[str] | None = None,
    transport: str = "aiohttp",
    **option_overrides: Any,
):
    """Run ``scenario``'s event-driven and hybrid styles on a real Kafka broker; a
    :class:`~lab.result.RunResult` (engine ``kafka``) with one summary row per style.

    ``styles`` defaults to the scenario's styles this engine runs (``events``, ``hybrid``;
    for change propagation ``events``); a scenario with neither runs as ``events``.  A hybrid
    runs its orchestrated core over real HTTP (the HTTP engine's services and orchestrator,
    ``transport`` as there) and the rest on Kafka; see the module's notes.
    ``bootstrap``: ``HOST:PORT`` of a cluster; default ``$KAFKA_BOOTSTRAP_SERVERS`` or the
    lab's running broker (``lab kafka up``), which ``start_broker=True`` starts if needed.
    ``compress`` / ``time_scale``: see the module's notes on clocks.
    ``faults`` add to the scenario's own ``faults:`` section.  ``option_overrides`` set
    :class:`KafkaOptions` fields (``acks="1"``, ``idempotent_consumer=False``...).
    ``meta`` holds the reconciliation (``lost``, ``groups``, ...) per style under
    ``meta["styles"]``, and at the top level for a single style (summed over styles otherwise).
    """
    from ..result import RunResult

    seed = scenario.seed if seed is None else int(seed)
    allowed = (STYLE,) if scenario.propagation is not None else KAFKA_STYLES
    asked = list(styles or scenario.styles)
    chosen = [s for s in asked if s in allowed]
    if styles is not None and len(chosen) < len(asked):
        raise LabError(f"the Kafka engine runs {', '.join(allowed)} here", source="styles",
                       field=",".join(s for s in asked if s not in allowed))  # fmt: skip
    if not chosen:
        log.info("scenario %s lists styles %s; the Kafka engine runs its events style", scenario.name, scenario.styles)
        chosen = [STYLE]
    elif len(chosen) < len(asked):
        log.info("the Kafka engine runs %s of %s (orchestration: --engine http)", chosen, scenario.name)
    addr = lab_broker.resolve_bootstrap(bootstrap)
    if addr is None:
        if not start_broker:
            raise EngineUnavailable("no Kafka broker: run `lab kafka up`, or pass --bootstrap HOST:PORT "
                                    f"(or set {lab_broker.ENV_BOOTSTRAP})")  # fmt: skip
        addr = lab_broker.start().bootstrap
    opt = options or options_from_scenario(scenario)
    for k, v in option_overrides.items():
        if not hasattr(opt, k):
            raise LabError(f"unknown Kafka option {k!r}", source="run_kafka", field=k)
        setattr(opt, k, v)
    all_faults = faults_from_scenario(scenario, seed) + list(faults or [])
    rec = Recorder()
    end_s: dict[str, float] = {}
    extra: dict[str, dict[str, float]] = {}
    metas: dict[str, dict[str, Any]] = {}
    for style in chosen:
        run = KafkaRun(scenario, seed=seed, bootstrap=addr, time_scale=time_scale, compress=compress, options=opt,
                       faults=all_faults, style=style, transport=transport)  # fmt: skip
        style_rec, end_s[style], metas[style] = run.run()
        rec.extend(style_rec)
        if style == HYBRID:
            extra[style] = {"start_lateness_p99_s": metas[style]["core"]["start_lateness_p99_s"]}
    # summaries on the engine's clock: duration and warm-up divided by ``compress``
    clock = scenario if compress == 1.0 else scenario.replace(duration_s=scenario.duration_s / compress, warmup_s=scenario.warmup_s / compress)
    result = RunResult.from_recorder(clock, rec, engine="kafka", seed=seed, styles=chosen, end_s=end_s, extra=extra)
    result.scenario = scenario
    if len(chosen) == 1:
        result.meta.update(metas[chosen[0]])
    else:
        for k in ("lost", "unprocessed", "duplicates", "duplicates_absorbed", "dlq", "retries", "uncommitted"):
            result.meta[k] = sum(m[k] for m in metas.values())
        result.meta.update({k: metas[chosen[0]][k] for k in ("bootstrap", "time_scale")})
    result.meta["styles"] = metas
    result.meta["compress"] = compress
    return result
