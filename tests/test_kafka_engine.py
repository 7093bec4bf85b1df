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
    # the caller's answer is the broker's acknowledgement of the request: after the arrival,
    # well before the end (the ack may reach the producer after a consumer already has the event)
    assert (wf.response_s >= wf.started_s).all()
    assert 0 < row["response_mean_s"] < row["latency_mean_s"] / 2
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


def test_load_shedding_window_pauses_consumers_lag_builds_then_drains(bootstrap):
    # stage 1 from 2023-06-08 00:00 SAST, 2-hour slots played 2400x faster (3 scenario seconds):
    # area 14 has no power from t = 3 s to 6 s; invoice is in it, without backup
    from lab.faults import fault_calendar

    shed = {"stage": 1, "start_at": "2023-06-08T00:00", "compress": 2400, "switching_buffer": False, "areas": {"invoice": 14}}
    sc = _scenario(duration_s=8.0, series_interval_s=0.25, faults={"load_shedding": shed})
    dark = fault_calendar(sc.faults, list(sc.services), sc.duration_s, 3).down_intervals("invoice")
    assert dark == [(3.0, 6.0)]
    res = run_kafka(sc, seed=3, bootstrap=bootstrap, time_scale=SCALE)
    row = res.summary.iloc[0]
    assert row["lost"] == 0 and row["completed"] == row["started"] == _n_arrivals(sc, 3)
    assert all(g["processed"] == g["produced"] for g in res.meta["groups"].values())
    lag = res.series[(res.series.metric == "lag") & (res.series.entity == "invoice")]
    before = lag[lag.time_s < 2.5].value.max()
    during = lag[(lag.time_s > 4.5) & (lag.time_s < 6.0)].value.max()
    after = lag[lag.time_s > 6.5].value.min()
    # about rate x 1.5 s = 15 events are waiting by t = 4.5; none are left at the end
    assert during >= 8 and during > 3 * max(before, 1)
    assert after <= 1
    ev = res.events[res.events.group == "invoice"]
    assert not ((ev.processed_s > 3.0 + 0.3) & (ev.processed_s < 6.0 - 0.05)).any()  # nothing processed in the dark
    stock = res.events[res.events.group == "stock"]
    assert ((stock.processed_s > 3.5) & (stock.processed_s < 5.5)).any()  # the other branch kept going
    wf = res.records
    held = wf[(wf.started_s > 3.3) & (wf.started_s < 5.5)]
    assert len(held) > 0 and (held.finished_s >= 6.0 - 0.05).all()


def _hybrid_scenario(**over):
    data = {
        "name": "kafka-hybrid", "duration_s": 5.0, "style": "hybrid", "seed": 7,
        "workload": {"arrivals": "poisson", "rate_per_s": 10.0},
        "network": {"latency_ms": 0},
        "services": {
            "auth": {"service_time": 10, "concurrency": 4},
            "pay": {"service_time": {"dist": "exponential", "mean_ms": 20}, "concurrency": 4, "failure_prob": 0.2},
            "audit": {"service_time": 10},
            "alerts": {"service_time": 5},
        },
        "flow": ["auth", "pay", ["audit", "alerts"]],
        "hybrid": {"core_steps": 2},
        "orchestration": {"retries": 0},
        "broker": {"partitions": 4},
    }  # fmt: skip
    data.update(over)
    return load_scenario(data)


def test_hybrid_core_over_http_then_events_on_kafka_reconcile(bootstrap):
    import lab

    sc = _hybrid_scenario()
    res = lab.run(sc, engine="kafka", bootstrap=bootstrap)
    n = _n_arrivals(sc, 7)
    row = res.summary.set_index("style").loc["hybrid"]
    assert len(res.summary) == 1 and row["engine"] == "kafka"
    # every arrival started its core over HTTP; the failed ones (pay, no retries) were never handed over
    assert row["started"] == n and row["completed"] + row["failed"] == n
    assert row["lost"] == 0 and row["duplicates"] == 0 and res.meta["lost"] == 0
    wf = res.records.set_index("workflow_id")
    failed = wf[wf.status == "failed"]
    assert set(failed.reason) <= {"error:pay"} and failed.finished_s.isna().all()
    steps = res.steps
    by = steps.groupby(["service", "status"]).size()
    assert by[("auth", "completed")] == n  # the core ran over HTTP for every workflow
    assert by[("pay", "completed")] == row["completed"] and by.get(("pay", "failed"), 0) == row["failed"]
    # the downstream part ran on Kafka: one core.done event per completed core, to both groups
    groups = res.meta["groups"]
    assert set(groups) == {"audit", "alerts"}
    assert groups["audit"]["produced"] == groups["alerts"]["produced"] == row["completed"]
    assert all(g["processed"] == g["produced"] for g in groups.values())
    ev = res.events
    assert set(ev.topic) == {"core.done"}
    assert (ev.groupby("group").key.nunique() == row["completed"]).all()
    assert by[("audit", "completed")] == by[("alerts", "completed")] == row["completed"]
    # order on one clock: a downstream step starts after pay (the end of the core) finished;
    # the caller's answer (response_s) is the end of the core, the latency runs to the last step
    st = steps[steps.status == "completed"].pivot_table(index="workflow_id", columns="service", values=["started_s", "finished_s"])
    st = st.dropna()
    assert len(st) == row["completed"]
    assert (st["started_s"]["audit"] >= st["finished_s"]["pay"] - 1e-9).all()
    assert (st["started_s"]["alerts"] >= st["finished_s"]["pay"] - 1e-9).all()
    done = wf[wf.status == "completed"]
    assert (done.response_s >= st["finished_s"]["pay"].reindex(done.index) - 1e-9).all()
    assert (done.finished_s >= st["finished_s"][["audit", "alerts"]].max(axis=1).reindex(done.index) - 1e-9).all()
    assert (done.response_s < done.finished_s).all()
    assert row["response_mean_s"] < row["latency_mean_s"]
    # the core's service times are real: 10 ms + pay's draw at least; audit adds its 10 ms
    assert ((done.response_s - done.started_s) >= 0.010).all()
    assert ((done.finished_s - done.response_s) >= 0.010 - 1e-9).all()
    assert res.meta["core"]["dead_services"] == {}


def _committed_vs_end(bootstrap, sc, prefix):
    """Per (group, topic, partition) of the topics each group reads: (committed, end offset)."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    probe = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        topics = {t for t in admin.list_topics() if t.startswith(prefix + ".")}
        out = {}
        for k, stage in enumerate(sc.stages):
            for n in stage:
                reads = [f"{prefix}.workflow.requested"] if k == 0 else [f"{prefix}.{s}.done" for s in sc.stages[k - 1]]
                reads += [t for t in (f"{prefix}.{n}.retry",) if t in topics]
                assert set(reads) <= topics
                tps = [TopicPartition(t, p) for t in reads for p in range(sc.broker.partitions)]
                ends = probe.end_offsets(tps)
                group = f"{prefix}.{n}"
                if hasattr(admin, "list_group_offsets"):  # kafka-python 3
                    offs = admin.list_group_offsets([group]).get(group, {})
                else:  # kafka-python 2
                    offs = admin.list_consumer_group_offsets(group)
                for tp in tps:
                    c = offs.get(tp)
                    out[(n, tp.topic[len(prefix) + 1 :], tp.partition)] = (c.offset if c is not None else None, ends[tp])
        return out
    finally:
        probe.close()
        admin.close()


def _delete_run(bootstrap, sc, prefix):
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics([t for t in admin.list_topics() if t.startswith(prefix + ".")])
        admin.delete_groups([f"{prefix}.{n}" for st in sc.stages for n in st])
    except Exception:  # noqa: BLE001 - cleaning up is best effort
        pass
    finally:
        admin.close()


def test_every_group_commits_every_event_it_processed(bootstrap):
    # Regression: with kafka-python 3 a group leader whose rejoin (its group's second
    # rebalance, right after the first join) outlived a 100 ms poll stayed "rebalancing" for
    # good: it went on processing its old partitions while every commit it sent was refused.
    # Its group's offsets never landed (or a rebalance re-read from stale offsets: duplicates).
    # Seven groups, most with one consumer, make that race likely in each run.  After a run
    # without faults every group has committed the end offset of every partition it reads,
    # and nothing was processed twice.
    services = {"order": {"service_time": 10, "concurrency": 2}, "notify": {"service_time": 5}}
    branches = ["stock", "invoice", "ship", "audit", "mail"]
    services.update({b: {"service_time": 5} for b in branches})
    sc = _scenario(duration_s=6.0, services=services, flow=["order", branches, "notify"], broker={"partitions": 6})
    for seed in (21, 22):
        res = run_kafka(sc, seed=seed, bootstrap=bootstrap, time_scale=SCALE, delete_topics=False)
        prefix = res.meta["topic_prefix"]
        try:
            n = _n_arrivals(sc, seed)
            row = res.summary.iloc[0]
            assert row["completed"] == row["started"] == n and row["lost"] == 0
            assert res.meta["duplicates"] == 0 and row["duplicates"] == 0
            assert all(g["processed"] == g["produced"] and g.get("uncommitted", 0) == 0 for g in res.meta["groups"].values())
            offsets = _committed_vs_end(bootstrap, sc, prefix)
            assert len(offsets) == (1 + 5 * 1 + 1 * 5) * 6  # order reads 1 topic, each branch 1, notify 5
            behind = {k: v for k, v in offsets.items() if v[1] > 0 and v[0] != v[1]}
            assert behind == {}, f"seed {seed}: (group, topic, partition): (committed, end offset) {behind}"
            assert sum(end for _, end in offsets.values()) == n + 5 * n + 5 * n
        finally:
            _delete_run(bootstrap, sc, prefix)
