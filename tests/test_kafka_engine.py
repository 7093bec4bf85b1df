"""The Kafka engine on a real Apache Kafka broker.

The broker: ``$KAFKA_BOOTSTRAP_SERVERS``, else the lab's running broker (``lab kafka up``,
as CI does), else one started here for this module.  Without Java these tests skip with a
reason; with ``LAB_REQUIRE_KAFKA=1`` (CI) that skip is a failure instead.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from lab.kafka import broker
from lab.kafka.engine import BrokerRestart, ConsumerCrash, ConsumerOutage, run_kafka
from lab.rng import Streams
from lab.scenario import load_scenario
from lab.workload import arrival_times

pytestmark = pytest.mark.kafka

REQUIRE = os.environ.get("LAB_REQUIRE_KAFKA") == "1"
SCALE = 0.5  # wall seconds per scenario second: a 10 s scenario plays in 5 s


def _unavailable(reason: str):
    if REQUIRE:
        pytest.fail(f"LAB_REQUIRE_KAFKA=1 but the Kafka tests cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def bootstrap():
    try:
        addr = broker.resolve_bootstrap(None)
    except Exception as exc:  # noqa: BLE001 - a bad KAFKA_BOOTSTRAP_SERVERS
        _unavailable(f"cannot use KAFKA_BOOTSTRAP_SERVERS: {exc}")
    started = False
    if addr is None:
        if not broker.java_available():
            _unavailable("no Java on PATH: the lab's Kafka broker needs a JDK 17+ (and Maven for its jars)")
        try:
            addr = broker.start().bootstrap
        except Exception as exc:  # noqa: BLE001
            _unavailable(f"could not start the lab's Kafka broker: {exc}")
        started = True
    yield addr
    if started:
        broker.stop()


def _scenario(**over):
    data = {
        "name": "kafka-test",
        "duration_s": 8.0,
        "style": "events",
        "seed": 7,
        "workload": {"arrivals": "poisson", "rate_per_s": 10.0},
        "network": {"latency_ms": 0},
        "services": {
            "order": {"service_time": {"dist": "exponential", "mean_ms": 20}, "concurrency": 2},
            "stock": {"service_time": 10},
            "invoice": {"service_time": 15},
            "notify": {"service_time": 5},
        },
        "flow": ["order", ["stock", "invoice"], "notify"],
        "broker": {"partitions": 4},
    }
    data.update(over)
    return load_scenario(data)


def _n_arrivals(sc, seed):
    return sum(1 for _ in arrival_times(sc.workload, sc.duration_s, Streams(seed)))


def test_events_flow_end_to_end_nothing_lost(bootstrap):
    sc = _scenario()
    res = run_kafka(sc, seed=7, bootstrap=bootstrap, time_scale=SCALE)
    n = _n_arrivals(sc, 7)
    row = res.summary.iloc[0]
    assert row["engine"] == "kafka" and row["style"] == "events"
    # reconciliation: every arrival of the workload started, completed, nothing lost or doubled
    assert row["started"] == n and row["completed"] == n and row["failed"] == 0
    assert row["lost"] == 0 and row["duplicates"] == 0
    groups = res.meta["groups"]
    assert groups["order"]["produced"] == n and groups["notify"]["produced"] == 2 * n  # the join reads both branches
    assert all(g["processed"] == g["produced"] for g in groups.values())
    ev = res.events
    assert len(ev[ev.group == "stock"]) == n and len(ev[ev.group == "invoice"]) == n  # fan-out: both groups get every event
    assert len(ev[ev.group == "notify"]) == 2 * n
    # per-entity order: one key, one partition number on every topic
    assert (ev.groupby("key").partition.nunique() == 1).all()
    # a workflow's steps follow the flow: notify starts after both branches finished
    st = res.steps.pivot_table(index="workflow_id", columns="service", values=["started_s", "finished_s"])
    assert (st["started_s"]["notify"] >= st["finished_s"][["stock", "invoice"]].max(axis=1) - 1e-9).all()
    assert (st["started_s"]["stock"] >= st["finished_s"]["order"] - 1e-9).all()
    # latency can never beat the work on the critical path (20 ms mean + 15 ms + 5 ms)
    wf = res.records
    lat = wf.finished_s - wf.started_s
    assert (lat >= 0.015 + 0.005).all()
    assert np.isfinite(res.summary.latency_p99_s.iloc[0])
    # consumer lag was sampled from the broker for every group
    lag = res.series[res.series.metric == "lag"]
    assert set(lag.entity) == {"order", "stock", "invoice", "notify"}


def test_broker_restart_mid_run_loses_nothing(bootstrap):
    if not broker.owns(bootstrap):
        _unavailable("the broker-restart test needs the lab's own broker, not an external cluster")
    sc = _scenario(duration_s=6.0)
    res = run_kafka(sc, seed=11, bootstrap=bootstrap, time_scale=SCALE, faults=[BrokerRestart(at_s=2.0, down_s=1.0)])
    n = _n_arrivals(sc, 11)
    row = res.summary.iloc[0]
    assert res.meta["lost"] == 0 and row["lost"] == 0  # at-least-once: acks=all, commit after downstream ack
    assert row["started"] == n and row["completed"] == n
    assert all(g["processed"] == g["produced"] for g in res.meta["groups"].values())
    assert broker.status().accepting


def test_consumer_crash_duplicates_absorbed_by_idempotent_consumer(bootstrap):
    sc = _scenario(duration_s=6.0)
    crash = [ConsumerCrash("order", at_s=2.0, consumers=1, restart_after_s=None)]
    n = _n_arrivals(sc, 5)

    idem = run_kafka(sc, seed=5, bootstrap=bootstrap, time_scale=SCALE, faults=crash, idempotent_consumer=True)
    row = idem.summary.iloc[0]
    assert row["lost"] == 0 and row["completed"] == n
    # the crashed consumer processed an event it never committed: the rebalanced group saw it again
    assert row["duplicates"] >= 1
    assert idem.meta["duplicates_absorbed"] == row["duplicates"]
    steps = idem.steps
    assert len(steps[steps.service == "order"]) == n  # absorbed: no event's work was done twice
    assert not idem.records.workflow_id.duplicated().any()

    plain = run_kafka(sc, seed=5, bootstrap=bootstrap, time_scale=SCALE, faults=crash, idempotent_consumer=False)
    prow = plain.summary.iloc[0]
    assert prow["lost"] == 0 and prow["completed"] == n and prow["duplicates"] >= 1
    assert plain.meta["duplicates_absorbed"] == 0
    # without the idempotency store the redelivered events are processed again
    assert len(plain.steps[plain.steps.service == "order"]) > n


def test_consumer_outage_builds_lag_then_drains(bootstrap):
    sc = _scenario(duration_s=8.0, series_interval_s=0.25)
    res = run_kafka(sc, seed=3, bootstrap=bootstrap, time_scale=SCALE, faults=[ConsumerOutage("invoice", 2.0, 3.0)])
    row = res.summary.iloc[0]
    assert row["lost"] == 0 and row["completed"] == row["started"] == _n_arrivals(sc, 3)
    lag = res.series[(res.series.metric == "lag") & (res.series.entity == "invoice")]
    during = lag[(lag.time_s > 3.5) & (lag.time_s < 5.0)].value.max()
    before = lag[lag.time_s < 1.5].value.max()
    # about rate x outage = 30 events pile up while invoice is paused; far more than before it
    assert during >= 10 and during > 3 * max(before, 1)
    inv = res.records.set_index("workflow_id")
    late = inv[(inv.started_s > 2.2) & (inv.started_s < 4.5)]
    assert (late.finished_s >= 5.0 - 0.05).all()  # nothing got through invoice while it was paused


def test_failed_events_retry_topic_then_dead_letter_match_theory(bootstrap):
    # each attempt fails with p = 0.5; one redelivery via the retry topic, then the DLQ:
    # a workflow fails with probability p^2 = 0.25, and about n * p events are retried
    sc = _scenario(
        duration_s=8.0,
        services={
            "order": {"service_time": 10, "concurrency": 2},
            "stock": {"service_time": 10, "failure_prob": 0.5},
            "invoice": {"service_time": 5},
            "notify": {"service_time": 5},
        },
        resilience={"events": {"retry_topic": True, "max_redeliveries": 1, "dlq": True}, "retry": {"backoff_ms": 50}},
    )
    res = run_kafka(sc, seed=9, bootstrap=bootstrap, time_scale=SCALE)
    n = _n_arrivals(sc, 9)
    row = res.summary.iloc[0]
    assert row["lost"] == 0 and row["started"] == n
    assert row["completed"] + row["failed"] == n
    sd = (n * 0.25 * 0.75) ** 0.5
    assert abs(row["failed"] - 0.25 * n) < 4 * sd
    assert res.meta["dlq"] == row["failed"]
    assert set(res.records.reason[res.records.status == "failed"]) == {"dlq:stock"}
    assert abs(res.meta["retries"] - 0.5 * n) < 4 * (n * 0.25) ** 0.5
    # the retry topic is read by the failing service's group only
    assert res.meta["groups"]["stock"]["produced"] == n + res.meta["retries"]
    assert res.meta["groups"]["invoice"]["produced"] == n  # the parallel branch never saw the retries
    assert res.meta["groups"]["notify"]["produced"] == (n - row["failed"]) + n  # the join: stock's successes + invoice


def test_change_propagation_pushes_every_change_to_every_subscriber(bootstrap):
    sc = load_scenario({
        "name": "kafka-push", "duration_s": 6.0, "style": "events", "seed": 4,
        "workload": {"rate_per_s": 8.0},
        "services": {"crm": {"service_time": 20}, "a": {"service_time": 10}, "b": {"service_time": 10, "concurrency": 2}},
        "propagation": {"source": "crm", "subscribers": ["a", "b"]},
        "broker": {"partitions": 2},
    })  # fmt: skip
    res = run_kafka(sc, seed=4, bootstrap=bootstrap, time_scale=SCALE)
    n = _n_arrivals(sc, 4)
    row = res.summary.iloc[0]
    assert row["lost"] == 0 and row["completed"] == n
    st = res.steps
    assert (st.groupby("service").size() == n).all()
    # pushed: a subscriber knows a change after its own work (10 ms), never before
    assert (st.staleness_s >= 0.010 - 1e-9).all()
    assert row["polls"] == 0
