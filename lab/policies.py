"""Resilience policies: plain, clock-agnostic objects shared by every engine.

Nothing here sleeps, schedules or imports SimPy/asyncio.  Methods that depend on time take
``now`` (float seconds on any monotonic clock: simulated seconds in the SimPy engine,
``time.monotonic()`` in the real engines; successive calls must not go backwards).  Methods
that need randomness take a :class:`numpy.random.Generator`, so the caller decides the
stream (one per source of randomness, spawned from the scenario's seed).

The objects keep state (breaker, budget, bulkhead, stores) and are not locked: use them from
one thread or event loop (SimPy, asyncio), or guard them with a lock in threaded code.

Public API
----------
- :class:`RetryPolicy` - how many retries and the backoff before each (none/full/equal jitter).
- :class:`RetryBudget` - caps retries to a share of requests over a sliding window.
- :class:`CircuitBreaker` - closed / open / half-open, by consecutive failures or failure rate.
- :class:`Bulkhead` - per-dependency concurrency limit with an optional bounded FIFO queue.
- :class:`Timeout` and :class:`Deadline` - per-call timeout capped by an overall deadline.
- :class:`IdempotencyStore` - seen keys (optional TTL) for idempotent consumers / idempotency keys.
- :class:`Fallback` and :class:`FallbackResponse` - a static or cached response flagged degraded.
- :class:`Backpressure` - pause/resume a consumer by lag, with hysteresis.
- :class:`Resilience` - the scenario's ``resilience:`` section (pydantic), :func:`parse_resilience`.
- :func:`build_policies` - one :class:`DependencyPolicies` per called service.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict, deque
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_serializer, model_validator

from . import _validation
from .errors import LabError

log = logging.getLogger(__name__)

Jitter = Literal["none", "full", "equal"]

__all__ = [
    "Backpressure",
    "Bulkhead",
    "CircuitBreaker",
    "Deadline",
    "DependencyPolicies",
    "Fallback",
    "FallbackResponse",
    "IdempotencyStore",
    "Resilience",
    "RetryBudget",
    "RetryPolicy",
    "Timeout",
    "build_policies",
    "parse_resilience",
]


# -- retries --------------------------------------------------------------------------------


class RetryPolicy:
    """Up to ``retries`` retries after the first attempt, with exponential backoff.

    The un-jittered backoff before retry number ``attempt`` (1 = first retry) is
    ``b = min(cap_ms, base_ms * multiplier ** (attempt - 1))`` milliseconds.  Jitter, as in
    the AWS Architecture Blog's "Exponential Backoff and Jitter":

    - ``none``: ``b``
    - ``full``: ``uniform(0, b)``            (mean ``b/2``)
    - ``equal``: ``b/2 + uniform(0, b/2)``   (within ``[b/2, b]``, mean ``3b/4``)
    """

    def __init__(
        self,
        retries: int = 0,
        base_ms: float = 100.0,
        multiplier: float = 2.0,
        cap_ms: float | None = None,
        jitter: Jitter = "none",
    ):
        if retries < 0:
            raise ValueError("retries must be >= 0")
        if base_ms < 0 or multiplier < 1:
            raise ValueError("base_ms must be >= 0 and multiplier >= 1")
        if cap_ms is not None and cap_ms < 0:
            raise ValueError("cap_ms must be >= 0")
        if jitter not in ("none", "full", "equal"):
            raise ValueError(f"jitter must be none, full or equal, not {jitter!r}")
        self.retries = int(retries)
        self.base_ms = float(base_ms)
        self.multiplier = float(multiplier)
        self.cap_ms = None if cap_ms is None else float(cap_ms)
        self.jitter = jitter

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(retries={self.retries}, base_ms={self.base_ms}, multiplier={self.multiplier}, "
            f"cap_ms={self.cap_ms}, jitter={self.jitter!r})"
        )

    def should_retry(self, attempt: int) -> bool:
        """May retry number ``attempt`` (1 = first retry) happen?"""
        return 1 <= attempt <= self.retries

    def backoff_s(self, attempt: int) -> float:
        """The un-jittered, cap-limited backoff before retry ``attempt``, in seconds."""
        if attempt < 1:
            raise ValueError("attempt counts retries from 1")
        # guard against overflow for huge attempt numbers
        exp = min(attempt - 1, 1000)
        b = self.base_ms * self.multiplier**exp if self.multiplier > 1 else self.base_ms
        if self.cap_ms is not None:
            b = min(b, self.cap_ms)
        return b / 1000.0

    def delay_s(self, attempt: int, rng: np.random.Generator | None = None, *, u: float | None = None) -> float:
        """The backoff before retry ``attempt`` with jitter, in seconds.

        The jitter uses one uniform(0, 1) draw: ``rng.random()``, or ``u`` when the caller
        draws its uniforms itself (e.g. in blocks); both give the same delays.
        """
        b = self.backoff_s(attempt)
        if self.jitter == "none":
            return b
        if u is None:
            if rng is None:
                raise ValueError(f"{self.jitter} jitter needs a numpy Generator or a uniform u")
            u = float(rng.random())
        if self.jitter == "full":
            return u * b
        return b / 2.0 + u * b / 2.0


class RetryBudget:
    """Retries may be at most ``ratio`` of the requests seen in the last ``window_s``
    (plus ``min_retries`` always allowed per window), like Finagle's retry budget.

    Record every first attempt with :meth:`record_request`; before a retry ask
    :meth:`can_retry` and, if it says yes and you do retry, :meth:`record_retry`.
    ``denied`` counts the refusals.
    """

    def __init__(self, ratio: float = 0.1, window_s: float = 10.0, min_retries: int = 0):
        if ratio < 0:
            raise ValueError("ratio must be >= 0")
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        self.ratio = float(ratio)
        self.window_s = float(window_s)
        self.min_retries = int(min_retries)
        self._requests: deque[float] = deque()
        self._retries: deque[float] = deque()
        self.requests = 0
        self.retries = 0
        self.denied = 0

    def _prune(self, now: float) -> None:
        edge = now - self.window_s
        for q in (self._requests, self._retries):
            while q and q[0] <= edge:
                q.popleft()

    def record_request(self, now: float) -> None:
        self._prune(now)
        self._requests.append(now)
        self.requests += 1

    def record_retry(self, now: float) -> None:
        self._prune(now)
        self._retries.append(now)
        self.retries += 1

    def can_retry(self, now: float) -> bool:
        """Would one more retry stay within the budget?  Counts a denial when not."""
        self._prune(now)
        ok = len(self._retries) + 1 <= self.ratio * len(self._requests) + self.min_retries
        if not ok:
            self.denied += 1
        return ok


# -- circuit breaker --------------------------------------------------------------------------

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    """A circuit breaker in front of one dependency.

    Trips from ``closed`` to ``open`` after ``failure_threshold`` consecutive failures, or -
    when ``failure_rate`` is given - when at least ``window_calls`` calls have been recorded
    and the share of failures among the last ``window_calls`` reaches ``failure_rate``.
    While open, :meth:`allow` says no (counted in ``rejected``).  After ``open_ms`` the
    breaker is ``half_open``: up to ``half_open_max_calls`` trial calls are let through;
    any trial failure reopens it, ``half_open_max_calls`` trial successes close it.

    Results of calls admitted before the breaker opened that arrive while it is open are
    counted but do not change the state.
    """

    def __init__(
        self,
        failure_threshold: int | None = 5,
        open_ms: float = 5000.0,
        half_open_max_calls: int = 1,
        *,
        failure_rate: float | None = None,
        window_calls: int = 20,
        name: str = "",
    ):
        if failure_rate is None and (failure_threshold is None or failure_threshold < 1):
            raise ValueError("failure_threshold must be >= 1 (or give failure_rate)")
        if failure_rate is not None and not 0 < failure_rate <= 1:
            raise ValueError("failure_rate must be in (0, 1]")
        if window_calls < 1 or half_open_max_calls < 1 or open_ms < 0:
            raise ValueError("window_calls and half_open_max_calls must be >= 1, open_ms >= 0")
        self.failure_threshold = failure_threshold
        self.failure_rate = failure_rate
        self.window_calls = int(window_calls)
        self.open_s = open_ms / 1000.0
        self.half_open_max_calls = int(half_open_max_calls)
        self.name = name
        self._state = CLOSED
        self._opened_at = -math.inf
        self._consecutive = 0
        self._window: deque[bool] = deque(maxlen=self.window_calls)  # True = failure
        self._window_failures = 0
        self._trials = 0  # half-open calls let through
        self._trial_successes = 0
        #: counters
        self.allowed = 0
        self.rejected = 0
        self.successes = 0
        self.failures = 0
        self.opened = 0
        #: (time_s, from_state, to_state), in order
        self.transitions: list[tuple[float, str, str]] = []

    def __repr__(self) -> str:
        return f"CircuitBreaker(name={self.name!r}, state={self._state!r}, rejected={self.rejected})"

    def _move(self, now: float, to: str) -> None:
        old = self._state
        self._state = to
        self.transitions.append((now, old, to))
        log.debug("breaker %s: %s -> %s at %.3f s", self.name or "?", old, to, now)
        if to == OPEN:
            self.opened += 1
            self._opened_at = now
        elif to == HALF_OPEN:
            self._trials = 0
            self._trial_successes = 0
        elif to == CLOSED:
            self._consecutive = 0
            self._window.clear()
            self._window_failures = 0

    def state(self, now: float) -> str:
        """``closed``, ``open`` or ``half_open`` at ``now`` (moves open -> half_open when due)."""
        if self._state == OPEN and now >= self._opened_at + self.open_s:
            self._move(self._opened_at + self.open_s, HALF_OPEN)
        return self._state

    def reopens_at(self) -> float:
        """When an open breaker will become half-open (``inf`` unless open)."""
        return self._opened_at + self.open_s if self._state == OPEN else math.inf

    def allow(self, now: float) -> bool:
        """May a call go through now?  A ``True`` must be followed by a record_* call."""
        s = self.state(now)
        if s == CLOSED:
            self.allowed += 1
            return True
        if s == HALF_OPEN and self._trials < self.half_open_max_calls:
            self._trials += 1
            self.allowed += 1
            return True
        self.rejected += 1
        return False

    def _push(self, failed: bool) -> None:
        if len(self._window) == self._window.maxlen and self._window[0]:
            self._window_failures -= 1
        self._window.append(failed)
        self._window_failures += failed

    def record_success(self, now: float) -> None:
        self.successes += 1
        s = self.state(now)
        if s == CLOSED:
            self._consecutive = 0
            self._push(False)
        elif s == HALF_OPEN:
            self._trial_successes += 1
            if self._trial_successes >= self.half_open_max_calls:
                self._move(now, CLOSED)

    def record_failure(self, now: float) -> None:
        self.failures += 1
        s = self.state(now)
        if s == CLOSED:
            self._consecutive += 1
            self._push(True)
            if self.failure_rate is not None:
                trip = (
                    len(self._window) >= self.window_calls
                    and self._window_failures / len(self._window) >= self.failure_rate
                )
            else:
                trip = self._consecutive >= self.failure_threshold
            if trip:
                self._move(now, OPEN)
        elif s == HALF_OPEN:
            self._move(now, OPEN)


# -- bulkhead -----------------------------------------------------------------------------------


class Bulkhead:
    """At most ``max_concurrent`` calls in flight to one dependency.

    Without a queue, :meth:`try_acquire` takes a slot or refuses (counted in ``rejected``).
    With ``max_queue`` (0 = no waiting), :meth:`enter` also lets up to ``max_queue`` callers
    wait in FIFO order: the caller passes an opaque ``waiter`` (a SimPy event, an asyncio
    future...) and :meth:`release` hands the freed slot to the oldest waiter and returns it
    so the engine can wake it.  A waiter that gives up (timeout) calls :meth:`cancel`.
    """

    def __init__(self, max_concurrent: int, max_queue: int | None = None, *, name: str = ""):
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be >= 1")
        if max_queue is not None and max_queue < 0:
            raise ValueError("max_queue must be >= 0")
        self.max_concurrent = int(max_concurrent)
        self.max_queue = max_queue
        self.name = name
        self.in_use = 0
        self._waiters: deque[Any] = deque()
        self.acquired = 0
        self.rejected = 0
        self.queued = 0
        self.peak_in_use = 0

    def __repr__(self) -> str:
        return f"Bulkhead(name={self.name!r}, in_use={self.in_use}/{self.max_concurrent}, waiting={self.waiting})"

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _take(self) -> None:
        self.in_use += 1
        self.acquired += 1
        self.peak_in_use = max(self.peak_in_use, self.in_use)

    def try_acquire(self) -> bool:
        """Take a slot now, or refuse (no waiting)."""
        if self.in_use < self.max_concurrent and not self._waiters:
            self._take()
            return True
        self.rejected += 1
        return False

    def enter(self, waiter: Any) -> Literal["acquired", "queued", "rejected"]:
        """Take a slot now, else queue ``waiter`` if the queue has room, else refuse."""
        if self.in_use < self.max_concurrent and not self._waiters:
            self._take()
            return "acquired"
        if self.max_queue is not None and len(self._waiters) < self.max_queue:
            self._waiters.append(waiter)
            self.queued += 1
            return "queued"
        self.rejected += 1
        return "rejected"

    def release(self) -> Any | None:
        """Give the slot back; returns the waiter that now holds it, if any."""
        if self.in_use <= 0:
            raise RuntimeError(f"bulkhead {self.name!r}: release without acquire")
        if self._waiters:
            self.acquired += 1  # the slot passes straight to the oldest waiter
            return self._waiters.popleft()
        self.in_use -= 1
        return None

    def cancel(self, waiter: Any) -> bool:
        """Remove a waiter that gave up; False if it was not waiting (already woken)."""
        try:
            self._waiters.remove(waiter)
        except ValueError:
            return False
        return True


# -- timeouts -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deadline:
    """The time budget of one logical call (all its attempts) started at ``start_s``."""

    start_s: float
    per_call_s: float | None
    overall_s: float | None

    @property
    def end_s(self) -> float:
        return math.inf if self.overall_s is None else self.start_s + self.overall_s

    def remaining_s(self, now: float) -> float:
        return max(0.0, self.end_s - now)

    def expired(self, now: float) -> bool:
        return now >= self.end_s

    def call_timeout_s(self, now: float) -> float | None:
        """Timeout for an attempt starting at ``now``: the per-call timeout capped by what is
        left of the overall deadline; ``None`` means wait forever."""
        if self.overall_s is None:
            return self.per_call_s
        left = self.remaining_s(now)
        return left if self.per_call_s is None else min(self.per_call_s, left)

    def allows_retry(self, now: float, delay_s: float) -> bool:
        """Is there any time left for an attempt after waiting ``delay_s``?"""
        return now + delay_s < self.end_s


@dataclass(frozen=True)
class Timeout:
    """Per-attempt timeout ``per_call_ms`` and optional overall deadline ``overall_ms``
    (across retries and backoff).  ``None`` means no limit."""

    per_call_ms: float | None = None
    overall_ms: float | None = None

    def start(self, now: float) -> Deadline:
        return Deadline(
            start_s=now,
            per_call_s=None if self.per_call_ms is None else self.per_call_ms / 1000.0,
            overall_s=None if self.overall_ms is None else self.overall_ms / 1000.0,
        )


# -- idempotency -----------------------------------------------------------------------------------


class IdempotencyStore:
    """Keys already seen (message ids, idempotency keys), forgotten after ``ttl_s`` if given.

    :meth:`is_duplicate` records a new key and says whether it had been seen (and not
    expired); ``duplicates`` counts the duplicates absorbed.  An optional result can be
    stored with a key so a repeated call gets the first call's answer.
    """

    def __init__(self, ttl_s: float | None = None):
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError("ttl_s must be > 0")
        self.ttl_s = ttl_s
        self._seen: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()  # key -> (first seen, result)
        self.duplicates = 0

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now: float) -> None:
        if self.ttl_s is None:
            return
        edge = now - self.ttl_s
        while self._seen:
            key, (t, _) = next(iter(self._seen.items()))
            if t > edge:
                break
            self._seen.popitem(last=False)

    def is_duplicate(self, key: Hashable, now: float, result: Any = None) -> bool:
        self._expire(now)
        if key in self._seen:
            self.duplicates += 1
            return True
        self._seen[key] = (now, result)
        return False

    def result(self, key: Hashable, now: float) -> Any:
        """The result stored with ``key`` (``None`` if unknown or expired)."""
        self._expire(now)
        entry = self._seen.get(key)
        return None if entry is None else entry[1]

    def set_result(self, key: Hashable, now: float, result: Any) -> None:
        """Attach the outcome of the first call to an already recorded key."""
        self._expire(now)
        first = self._seen[key][0] if key in self._seen else now
        self._seen[key] = (first, result)


# -- fallback ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FallbackResponse:
    """What a caller gets instead of the real answer: always ``degraded``."""

    value: Any
    source: Literal["static", "cache"]
    age_s: float = 0.0
    degraded: bool = True


class Fallback:
    """A degraded answer when a call fails or is refused (breaker open, bulkhead full).

    ``mode="static"`` always answers ``value``; ``mode="cache"`` answers the last good
    response remembered with :meth:`remember` if it is at most ``max_age_s`` old, else the
    static ``value``.  ``served`` counts fallback answers.
    """

    def __init__(self, value: Any = None, mode: Literal["static", "cache"] = "static", max_age_s: float | None = None):
        self.value = value
        self.mode = mode
        self.max_age_s = max_age_s
        self._cached: tuple[float, Any] | None = None
        self.served = 0

    def remember(self, value: Any, now: float) -> None:
        self._cached = (now, value)

    def respond(self, now: float) -> FallbackResponse:
        self.served += 1
        if self.mode == "cache" and self._cached is not None:
            t, v = self._cached
            age = now - t
            if self.max_age_s is None or age <= self.max_age_s:
                return FallbackResponse(v, "cache", age)
        return FallbackResponse(self.value, "static")


# -- backpressure ----------------------------------------------------------------------------------------


class Backpressure:
    """Pause a consumer when its lag reaches ``pause_at_lag``; resume at ``resume_at_lag``
    (default half of it).  :meth:`update` returns whether the consumer should be paused."""

    def __init__(self, pause_at_lag: int, resume_at_lag: int | None = None):
        if pause_at_lag < 1:
            raise ValueError("pause_at_lag must be >= 1")
        self.pause_at_lag = int(pause_at_lag)
        self.resume_at_lag = pause_at_lag // 2 if resume_at_lag is None else int(resume_at_lag)
        if not 0 <= self.resume_at_lag < self.pause_at_lag:
            raise ValueError("resume_at_lag must be >= 0 and below pause_at_lag")
        self.paused = False
        self.pauses = 0

    def update(self, lag: int) -> bool:
        if not self.paused and lag >= self.pause_at_lag:
            self.paused = True
            self.pauses += 1
        elif self.paused and lag <= self.resume_at_lag:
            self.paused = False
        return self.paused


# -- the scenario section -----------------------------------------------------------------------------------

PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PosInt = Annotated[int, Field(ge=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # an infinite time never ends a run


class RetryConfig(_Model):
    """Retries after the first attempt, exponential backoff, jitter and a retry budget
    (``budget_ratio``: retries at most this share of requests per ``budget_window_s``)."""

    retries: NonNegInt = 0
    backoff_ms: NonNegFloat = 100.0
    multiplier: Annotated[float, Field(ge=1)] = 2.0
    cap_ms: NonNegFloat | None = None
    jitter: Jitter = "none"
    budget_ratio: NonNegFloat | None = None
    budget_window_s: PosFloat = 10.0


class BreakerConfig(_Model):
    """Circuit breaker: trip after ``failure_threshold`` consecutive failures, or, with
    ``failure_rate``, when that share of the last ``window_calls`` calls failed; stay open
    ``open_ms``; then let ``half_open_calls`` trial calls through."""

    enabled: bool = False
    failure_threshold: PosInt = 5
    failure_rate: Annotated[float, Field(gt=0, le=1)] | None = None
    window_calls: PosInt = 20
    open_ms: NonNegFloat = 5000.0
    half_open_calls: PosInt = 1


class BulkheadConfig(_Model):
    """At most ``max_concurrent`` calls in flight per dependency, ``max_queue`` waiting
    (``None``: no waiting, refuse at once)."""

    max_concurrent: PosInt
    max_queue: NonNegInt | None = None


class FallbackConfig(_Model):
    """Answer a degraded response instead of failing (``cache``: last good response
    no older than ``max_age_s``, else ``value``)."""

    enabled: bool = False
    mode: Literal["static", "cache"] = "static"
    value: Any = None
    max_age_s: PosFloat | None = None


class OutboxConfig(_Model):
    """Transactional outbox: events are written with the state change and published by a
    relay ``relay_delay_ms`` later (no loss if the broker is down, extra latency)."""

    enabled: bool = False
    relay_delay_ms: NonNegFloat = 100.0


class EventsConfig(_Model):
    """Resilience knobs of event-driven integration.

    - ``acks``: producer acknowledgement (0: fire and forget, may lose; 1: leader; all: replicas).
    - ``idempotent_producer``: broker drops the producer's retried duplicates (needs acks=all).
    - ``idempotent_consumer``: consumer keeps seen event ids and skips redeliveries.
    - ``producer_buffer``: events a producer buffers while the broker is unreachable (0: fail).
    - ``retry_topic`` / ``max_redeliveries``: failed events go to a retry topic, up to N times.
    - ``dlq``: events that exhaust redeliveries (or are poison) go to a dead-letter queue.
    - ``poison_rate``: share of events that always fail processing.
    - ``outbox``: transactional outbox with relay delay.
    - ``max_poll_records``: batch size of a poll.
    - ``pause_at_lag`` / ``resume_at_lag``: backpressure (pause fetching at that lag).
    """

    acks: Literal[0, 1, "all"] = "all"
    idempotent_producer: bool = False
    idempotent_consumer: bool = False
    producer_buffer: NonNegInt = 10000
    retry_topic: bool = False
    max_redeliveries: NonNegInt = 0
    dlq: bool = False
    poison_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    max_poll_records: PosInt = 500
    pause_at_lag: PosInt | None = None
    resume_at_lag: NonNegInt | None = None

    @model_validator(mode="after")
    def _check(self) -> EventsConfig:
        if self.idempotent_producer and self.acks != "all":
            raise ValueError(f"idempotent_producer needs acks: all (got acks: {self.acks})")
        if self.retry_topic and self.max_redeliveries < 1:
            raise ValueError("retry_topic needs max_redeliveries >= 1")
        if self.resume_at_lag is not None:
            if self.pause_at_lag is None:
                raise ValueError("resume_at_lag needs pause_at_lag")
            if self.resume_at_lag >= self.pause_at_lag:
                raise ValueError(
                    f"resume_at_lag ({self.resume_at_lag}) must be below pause_at_lag ({self.pause_at_lag})"
                )
        return self

    def after_failure(self, failures: int) -> Literal["redeliver", "retry_topic", "dlq", "drop"]:
        """Where an event goes after its processing failed for the ``failures``-th time:
        again (in place, blocking its partition, or via the retry topic) while
        ``failures <= max_redeliveries``, then to the DLQ, or dropped (lost) without one."""
        if failures < 1:
            raise ValueError("failures counts from 1")
        if failures <= self.max_redeliveries:
            return "retry_topic" if self.retry_topic else "redeliver"
        return "dlq" if self.dlq else "drop"

    def backpressure(self) -> Backpressure | None:
        """A fresh :class:`Backpressure` for one consumer, or ``None`` when not configured."""
        return None if self.pause_at_lag is None else Backpressure(self.pause_at_lag, self.resume_at_lag)


class CallResilience(_Model):
    """The per-call patterns; also the shape of one ``per_service`` override (only the
    fields given override the defaults; nested sections merge)."""

    timeout_ms: PosFloat | None = None
    deadline_ms: PosFloat | None = None
    retry: RetryConfig = Field(default_factory=RetryConfig)
    circuit_breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    bulkhead: BulkheadConfig | None = None
    fallback: FallbackConfig = Field(default_factory=FallbackConfig)
    idempotency_keys: bool = False


class Resilience(CallResilience):
    """The scenario's ``resilience:`` section.

    Call patterns (``timeout_ms`` per attempt, ``deadline_ms`` over all attempts, ``retry``,
    ``circuit_breaker``, ``bulkhead``, ``fallback``, ``idempotency_keys``) apply to every
    called service unless ``per_service.<name>`` overrides some of them; ``events`` holds the
    event-driven knobs.  Everything is off by default.
    """

    events: EventsConfig = Field(default_factory=EventsConfig)
    per_service: dict[str, CallResilience] = Field(default_factory=dict)

    @field_serializer("per_service")
    def _dump_overrides(self, value: dict[str, CallResilience], info: Any) -> dict[str, Any]:
        # an override is partial: dump only what it sets, so a dump/validate round trip
        # (Scenario.replace) does not turn the defaults into overrides
        return {k: v.model_dump(mode=info.mode, exclude_unset=True) for k, v in value.items()}

    def for_service(self, name: str) -> CallResilience:
        """The call patterns that apply to calls to ``name`` (defaults merged with its override)."""
        override = self.per_service.get(name)
        if override is None:
            return CallResilience.model_validate(self.model_dump(include=set(CallResilience.model_fields)))
        base = self.model_dump(include=set(CallResilience.model_fields))
        return CallResilience.model_validate(_merge(base, override.model_dump(exclude_unset=True)))

    def with_orchestration_defaults(self, orchestration: Any) -> Resilience:
        """A copy in which the scenario's older ``orchestration:`` knobs (``timeout_ms``,
        ``retries``, ``backoff_ms``, ``backoff_multiplier``, ``jitter``) fill the call fields
        that ``resilience`` leaves at their defaults; a non-default ``resilience`` value wins.
        (Compares with defaults rather than "was it set", so it survives dump/validate.)"""
        retry_fields = {"retries": "retries", "backoff_ms": "backoff_ms", "multiplier": "backoff_multiplier",
                        "jitter": "jitter"}
        default_retry = RetryConfig()
        retry = {
            mine: getattr(orchestration, theirs)
            for mine, theirs in retry_fields.items()
            if getattr(self.retry, mine) == getattr(default_retry, mine) and hasattr(orchestration, theirs)
        }
        update: dict[str, Any] = {"retry": self.retry.model_copy(update=retry)}
        if self.timeout_ms is None and getattr(orchestration, "timeout_ms", None) is not None:
            update["timeout_ms"] = orchestration.timeout_ms
        return self.model_copy(update=update)

    def validate_against(self, services: Iterable[str], *, source: str = "<scenario>") -> None:
        """Raise :class:`LabError` if ``per_service`` names a service the scenario lacks."""
        known = set(services)
        for name in self.per_service:
            if name not in known:
                raise LabError(
                    f"unknown service {name!r} (known: {', '.join(sorted(known))})",
                    source=source,
                    field=f"resilience.per_service.{name}",
                )


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_resilience(data: Mapping[str, Any] | Resilience | None, *, source: str = "<keywords>") -> Resilience:
    """Validate a ``resilience:`` mapping, or raise :class:`LabError` naming ``resilience.<field>``."""
    return _validation.parse(Resilience, data, prefix="resilience", source=source)


# -- factory ----------------------------------------------------------------------------------------------


@dataclass
class DependencyPolicies:
    """The live policy objects guarding calls to one dependency (one set per caller)."""

    service: str
    retry: RetryPolicy
    timeout: Timeout
    budget: RetryBudget | None = None
    breaker: CircuitBreaker | None = None
    bulkhead: Bulkhead | None = None
    fallback: Fallback | None = None
    idempotency_keys: bool = False


def build_policies(resilience: Resilience | Mapping[str, Any] | None, services: Iterable[str]) -> dict[str, DependencyPolicies]:
    """Fresh policy objects (own breaker state, own counters) for each service in ``services``."""
    res = parse_resilience(resilience)
    out: dict[str, DependencyPolicies] = {}
    for name in services:
        c = res.for_service(name)
        r = c.retry
        cb = c.circuit_breaker
        out[name] = DependencyPolicies(
            service=name,
            retry=RetryPolicy(r.retries, r.backoff_ms, r.multiplier, r.cap_ms, r.jitter),
            timeout=Timeout(c.timeout_ms, c.deadline_ms),
            budget=None if r.budget_ratio is None else RetryBudget(r.budget_ratio, r.budget_window_s),
            breaker=(
                CircuitBreaker(
                    cb.failure_threshold,
                    cb.open_ms,
                    cb.half_open_calls,
                    failure_rate=cb.failure_rate,
                    window_calls=cb.window_calls,
                    name=name,
                )
                if cb.enabled
                else None
            ),
            bulkhead=None if c.bulkhead is None else Bulkhead(c.bulkhead.max_concurrent, c.bulkhead.max_queue, name=name),
            fallback=(
                Fallback(c.fallback.value, c.fallback.mode, c.fallback.max_age_s) if c.fallback.enabled else None
            ),
            idempotency_keys=c.idempotency_keys,
        )
    return out
