"""Resilience policies: values against their definitions, statistics against theory."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from lab.errors import LabError
from lab.policies import (
    Backpressure,
    Bulkhead,
    CircuitBreaker,
    Fallback,
    IdempotencyStore,
    Resilience,
    RetryBudget,
    RetryPolicy,
    Timeout,
    build_policies,
    parse_resilience,
)

N_DRAWS = 20_000


# -- retry / backoff / jitter -------------------------------------------------------------------


def test_backoff_sequence_is_exponential_and_capped():
    p = RetryPolicy(retries=6, base_ms=100, multiplier=2, cap_ms=1000)
    assert [p.backoff_s(a) for a in range(1, 7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert [p.delay_s(a) for a in range(1, 7)] == [p.backoff_s(a) for a in range(1, 7)]  # no jitter
    assert p.should_retry(6) and not p.should_retry(7) and not p.should_retry(0)
    assert RetryPolicy(base_ms=50, multiplier=3).backoff_s(3) == pytest.approx(0.45)
    assert RetryPolicy(base_ms=50, multiplier=1).backoff_s(10) == pytest.approx(0.05)
    assert math.isfinite(RetryPolicy(base_ms=1, multiplier=2, cap_ms=10).backoff_s(10_000))


@pytest.mark.parametrize("attempt", [2, 12])  # 12: the cap applies (b = cap)
def test_full_jitter_is_uniform_on_zero_to_backoff(attempt):
    p = RetryPolicy(retries=20, base_ms=100, multiplier=2, cap_ms=2000, jitter="full")
    b = p.backoff_s(attempt)
    rng = np.random.default_rng(7)
    d = np.array([p.delay_s(attempt, rng) for _ in range(N_DRAWS)])
    assert d.min() >= 0 and d.max() <= b
    se = b / math.sqrt(12 * N_DRAWS)  # standard error of the mean of uniform(0, b)
    assert abs(d.mean() - b / 2) < 5 * se
    assert d.min() < 0.01 * b and d.max() > 0.99 * b  # it spreads over the whole range


def test_equal_jitter_stays_within_half_to_full_backoff():
    p = RetryPolicy(retries=5, base_ms=100, multiplier=2, cap_ms=1000, jitter="equal")
    b = p.backoff_s(3)
    rng = np.random.default_rng(8)
    d = np.array([p.delay_s(3, rng) for _ in range(N_DRAWS)])
    assert d.min() >= b / 2 and d.max() <= b
    se = (b / 2) / math.sqrt(12 * N_DRAWS)
    assert abs(d.mean() - 0.75 * b) < 5 * se


def test_jitter_is_reproducible_and_needs_a_generator():
    p = RetryPolicy(retries=3, jitter="full")
    a = [p.delay_s(2, np.random.default_rng(3)) for _ in range(3)]
    assert len(set(a)) == 1
    with pytest.raises(ValueError):
        p.delay_s(1)
    u = np.random.default_rng(3).random()  # a pre-drawn uniform gives the same delay
    assert p.delay_s(2, u=u) == a[0] == pytest.approx(u * p.backoff_s(2))
    assert RetryPolicy(retries=3, jitter="equal").delay_s(2, u=0.5) == pytest.approx(0.75 * 0.2)
    with pytest.raises(ValueError):
        RetryPolicy(jitter="half")


def test_jitter_breaks_up_synchronised_retries():
    """500 callers fail at the same instant and retry after backoff 1 s: without jitter
    every retry lands in the same 10 ms bucket; with full jitter the busiest bucket holds
    about 500 / 100 (uniform over 100 buckets) - far below 500."""
    rng = np.random.default_rng(5)
    bins = np.arange(0, 1.01, 0.01)
    peaks = {}
    for jitter in ("none", "full", "equal"):
        p = RetryPolicy(retries=1, base_ms=1000, jitter=jitter)
        times = [p.delay_s(1, rng) for _ in range(500)]
        peaks[jitter] = np.histogram(np.minimum(times, 0.9999), bins)[0].max()
    assert peaks["none"] == 500
    assert peaks["full"] < 20  # mean 5 per bucket
    assert peaks["equal"] < 35  # half the spread: mean 10 per bucket


def test_retry_budget_caps_retries_to_the_ratio():
    """10 requests/s, every request fails and would retry 3 times; a 10 % budget lets
    through about 10 % extra, never more within any window."""
    budget = RetryBudget(ratio=0.1, window_s=10.0)
    retry_times, request_times = [], []
    for k in range(1000):
        now = k * 0.1
        budget.record_request(now)
        request_times.append(now)
        for _ in range(3):
            if budget.can_retry(now):
                budget.record_retry(now)
                retry_times.append(now)
    ratio = budget.retries / budget.requests
    assert 0.09 <= ratio <= 0.1
    assert budget.denied > 0
    req, ret = np.array(request_times), np.array(retry_times)
    for t in np.arange(0, 100, 2.5):  # the cap holds within every window
        in_win_req = np.sum((req > t - 10) & (req <= t))
        in_win_ret = np.sum((ret > t - 10) & (ret <= t))
        assert in_win_ret <= 0.1 * in_win_req + 1e-9
    # every wished-for retry was either made or denied (without a budget: 3 per request)
    assert budget.retries + budget.denied == 3 * budget.requests


def test_retry_budget_min_retries_allows_a_few_without_traffic():
    budget = RetryBudget(ratio=0.0, window_s=1.0, min_retries=2)
    assert budget.can_retry(0.0)
    budget.record_retry(0.0)
    budget.record_retry(0.1)
    assert not budget.can_retry(0.2)
    assert budget.can_retry(1.5)  # the window moved on


# -- circuit breaker ------------------------------------------------------------------------------


def test_breaker_opens_after_threshold_rejects_then_half_opens_and_closes(caplog):
    cb = CircuitBreaker(failure_threshold=3, open_ms=1000, half_open_max_calls=1, name="pay")
    with caplog.at_level(logging.DEBUG, logger="lab.policies"):
        for t in (0.0, 0.1):
            assert cb.allow(t)
            cb.record_failure(t)
        assert cb.state(0.15) == "closed"
        assert cb.allow(0.2)
        cb.record_failure(0.2)
        assert cb.state(0.2) == "open"
        assert [cb.allow(t) for t in (0.3, 0.7, 1.19)] == [False, False, False]
        assert cb.rejected == 3
        assert cb.reopens_at() == pytest.approx(1.2)
        assert cb.state(1.2) == "half_open"
        assert cb.allow(1.25)  # one trial call
        assert not cb.allow(1.26)  # only one at a time
        cb.record_success(1.3)
        assert cb.state(1.3) == "closed"
    assert [(f, t) for _, f, t in cb.transitions] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert "breaker pay: closed -> open" in caplog.text


def test_breaker_reopens_on_half_open_failure_and_success_resets_count():
    cb = CircuitBreaker(failure_threshold=2, open_ms=500)
    cb.record_failure(0.0)
    cb.record_success(0.1)  # resets the consecutive count
    cb.record_failure(0.2)
    assert cb.state(0.2) == "closed"
    cb.record_failure(0.3)
    assert cb.state(0.3) == "open"
    assert cb.allow(0.8)  # half-open trial
    cb.record_failure(0.85)
    assert cb.state(0.85) == "open" and cb.opened == 2
    assert not cb.allow(1.3)
    assert cb.allow(1.35)


def test_breaker_failure_rate_over_window_of_calls():
    cb = CircuitBreaker(failure_rate=0.5, window_calls=10, open_ms=1000)
    for k in range(4):  # 4 failures out of 4, but fewer than window_calls calls
        cb.record_failure(k * 0.01)
    assert cb.state(0.1) == "closed"
    for k in range(5):
        cb.record_success(0.1 + k * 0.01)
    assert cb.state(0.2) == "closed"  # 4/9
    cb.record_failure(0.3)  # 5/10 = 0.5
    assert cb.state(0.3) == "open"


def test_breaker_caps_calls_to_a_dead_service():
    """A caller tries every 0.1 s for 100 s; the service always fails.  Without a breaker
    1000 calls reach it; with threshold 5 and open 5 s, 5 plus one trial per 5 s."""
    cb = CircuitBreaker(failure_threshold=5, open_ms=5000)
    reached = 0
    for k in range(1000):
        now = k * 0.1
        if cb.allow(now):
            reached += 1
            cb.record_failure(now)
    expected = 5 + 100 / 5
    assert abs(reached - expected) <= 2
    assert reached + cb.rejected == 1000


# -- bulkhead, timeout, idempotency, fallback, backpressure ------------------------------------------


def test_bulkhead_rejects_beyond_limit():
    bh = Bulkhead(max_concurrent=2)
    assert [bh.try_acquire() for _ in range(3)] == [True, True, False]
    assert bh.rejected == 1 and bh.in_use == 2
    assert bh.release() is None
    assert bh.try_acquire()
    assert bh.peak_in_use == 2


def test_bulkhead_queue_hands_slot_to_oldest_waiter():
    bh = Bulkhead(max_concurrent=1, max_queue=2)
    assert [bh.enter(w) for w in ("a", "b", "c", "d")] == ["acquired", "queued", "queued", "rejected"]
    assert bh.cancel("c") and not bh.cancel("c")
    assert bh.release() == "b"  # slot passes straight to b
    assert bh.in_use == 1 and bh.waiting == 0
    assert bh.release() is None and bh.in_use == 0
    with pytest.raises(RuntimeError):
        bh.release()
    assert bh.rejected == 1 and bh.acquired == 2


def test_timeout_caps_calls_by_the_overall_deadline():
    d = Timeout(per_call_ms=1000, overall_ms=2500).start(10.0)
    assert d.call_timeout_s(10.0) == pytest.approx(1.0)
    assert d.call_timeout_s(12.0) == pytest.approx(0.5)
    assert not d.expired(12.4) and d.expired(12.5)
    assert d.allows_retry(11.0, 1.0) and not d.allows_retry(12.0, 0.5)
    assert Timeout().start(0).call_timeout_s(5.0) is None
    assert Timeout(overall_ms=1000).start(0).call_timeout_s(0.25) == pytest.approx(0.75)


def test_idempotency_store_absorbs_every_redelivery():
    """At-least-once delivery: each of 1000 messages arrives 1 + Poisson(0.3) times, in a
    shuffled order; the store lets each through once and counts the rest."""
    rng = np.random.default_rng(11)
    deliveries = np.repeat(np.arange(1000), 1 + rng.poisson(0.3, 1000))
    rng.shuffle(deliveries)
    store = IdempotencyStore()
    processed = [m for k, m in enumerate(deliveries) if not store.is_duplicate(int(m), k * 0.001)]
    assert sorted(processed) == list(range(1000))
    assert store.duplicates == len(deliveries) - 1000 > 0


def test_idempotency_ttl_and_stored_result():
    store = IdempotencyStore(ttl_s=10)
    assert not store.is_duplicate("k", 0.0, result="receipt-1")
    assert store.is_duplicate("k", 5.0)
    assert store.result("k", 6.0) == "receipt-1"
    assert not store.is_duplicate("k", 10.0)  # forgotten after the TTL
    store.set_result("k", 11.0, "receipt-2")
    assert store.result("k", 11.0) == "receipt-2" and len(store) == 1


def test_fallback_is_degraded_static_or_fresh_cache():
    fb = Fallback(value="default", mode="cache", max_age_s=60)
    assert fb.respond(0).value == "default" and fb.respond(0).source == "static"
    fb.remember("last-good", 10)
    r = fb.respond(30)
    assert (r.value, r.source, r.degraded, r.age_s) == ("last-good", "cache", True, 20)
    assert fb.respond(71).value == "default"
    assert fb.served == 4


def test_backpressure_pauses_and_resumes_with_hysteresis():
    bp = Backpressure(pause_at_lag=100)
    lags = [10, 99, 100, 80, 51, 50, 70, 100]
    assert [bp.update(x) for x in lags] == [False, False, True, True, True, False, False, True]
    assert bp.pauses == 2


def test_events_route_failed_events_and_build_backpressure():
    ev = parse_resilience({"events": {"max_redeliveries": 2, "retry_topic": True, "dlq": True}}).events
    assert [ev.after_failure(k) for k in (1, 2, 3, 4)] == ["retry_topic", "retry_topic", "dlq", "dlq"]
    ev = parse_resilience({"events": {"max_redeliveries": 1}}).events
    assert [ev.after_failure(k) for k in (1, 2)] == ["redeliver", "drop"]
    assert ev.backpressure() is None
    bp = parse_resilience({"events": {"pause_at_lag": 10, "resume_at_lag": 2}}).events.backpressure()
    assert [bp.update(x) for x in (10, 3, 2)] == [True, True, False]


# -- the scenario section --------------------------------------------------------------------------------


def test_resilience_defaults_are_off():
    pol = build_policies(Resilience(), ["a"])["a"]
    assert pol.retry.retries == 0 and pol.breaker is None and pol.bulkhead is None
    assert pol.budget is None and pol.fallback is None and pol.timeout.per_call_ms is None


def test_per_service_override_merges_and_policies_are_independent():
    r = parse_resilience(
        {
            "timeout_ms": 800,
            "retry": {"retries": 2, "backoff_ms": 50, "jitter": "equal", "budget_ratio": 0.2},
            "circuit_breaker": {"enabled": True, "failure_threshold": 2},
            "per_service": {"pay": {"retry": {"retries": 5}, "bulkhead": {"max_concurrent": 3}}},
        }
    )
    pols = build_policies(r, ["pay", "ship"])
    pay, ship = pols["pay"], pols["ship"]
    assert (pay.retry.retries, pay.retry.base_ms, pay.retry.jitter) == (5, 50, "equal")  # merged
    assert ship.retry.retries == 2 and ship.bulkhead is None and pay.bulkhead.max_concurrent == 3
    assert pay.timeout.per_call_ms == 800 and pay.budget.ratio == 0.2
    pay.breaker.record_failure(0)
    pay.breaker.record_failure(0)
    assert pay.breaker.state(0) == "open" and ship.breaker.state(0) == "closed"


def test_overrides_survive_a_dump_and_validate_round_trip():
    r = parse_resilience({"retry": {"retries": 2, "backoff_ms": 30}, "per_service": {"pay": {"timeout_ms": 100}}})
    for mode in ("python", "json"):
        again = Resilience.model_validate(r.model_dump(mode=mode))
        assert again.for_service("pay") == r.for_service("pay")
        assert again.for_service("pay").retry.retries == 2  # not reset to the default by the dump
    assert r.model_dump()["per_service"] == {"pay": {"timeout_ms": 100}}


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"retry": {"retries": -1}}, "resilience.retry.retries", "greater than or equal to 0"),
        ({"retry": {"jitter": "half"}}, "resilience.retry.jitter", "'full'"),
        ({"circuit_breaker": {"failure_rate": 1.5}}, "resilience.circuit_breaker.failure_rate", "1"),
        ({"bulkhead": {"max_queue": 3}}, "resilience.bulkhead.max_concurrent", "required"),
        ({"events": {"acks": 2}}, "resilience.events.acks", "'all'"),
        ({"events": {"acks": 1, "idempotent_producer": True}}, "resilience.events", "acks: all"),
        ({"events": {"retry_topic": True, "max_redeliveries": 0}}, "resilience.events", "max_redeliveries"),
        ({"events": {"poison_rate": 1.2}}, "resilience.events.poison_rate", "1"),
        ({"events": {"resume_at_lag": 5}}, "resilience.events", "pause_at_lag"),
        ({"events": {"outbox": {"relay_delay": 5}}}, "resilience.events.outbox.relay_delay", "unknown field"),
        ({"per_service": {"pay": {"timeout_ms": -5}}}, "resilience.per_service.pay.timeout_ms", "greater than 0"),
        ({"retries": 3}, "resilience.retries", "unknown field"),
    ],
)
def test_resilience_errors_name_the_field(data, field, words):
    with pytest.raises(LabError) as info:
        parse_resilience(data, source="s.yaml")
    assert info.value.field == field
    assert words in info.value.message
    assert info.value.source == "s.yaml"


def test_orchestration_knobs_fill_resilience_defaults():
    from lab.scenario import Orchestration

    orch = Orchestration(timeout_ms=300, retries=2, backoff_ms=50, backoff_multiplier=3, jitter="full")
    r = parse_resilience({"retry": {"retries": 4}}).with_orchestration_defaults(orch)
    assert r.timeout_ms == 300
    assert (r.retry.retries, r.retry.backoff_ms, r.retry.multiplier, r.retry.jitter) == (4, 50, 3, "full")
    pol = build_policies(r, ["a"])["a"]
    assert pol.retry.backoff_s(2) == pytest.approx(0.15) and pol.timeout.per_call_ms == 300
    explicit = parse_resilience({"timeout_ms": 900}).with_orchestration_defaults(orch)
    assert explicit.timeout_ms == 900


def test_per_service_names_are_checked_against_the_scenario():
    r = parse_resilience({"per_service": {"pay": {"timeout_ms": 100}}})
    r.validate_against({"pay", "ship"})
    with pytest.raises(LabError) as info:
        r.validate_against({"ship"})
    assert info.value.field == "resilience.per_service.pay"
