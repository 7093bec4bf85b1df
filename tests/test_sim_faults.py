"""Faults and resilience in the simulator: directions and sizes of effects, counts reconciled."""

import math

import pytest

import lab


def chain(**kw):
    base = {
        "name": "chain3",
        "duration_s": 600,
        "warmup_s": 60,
        "workload": {"rate_per_s": 10},
        "network": {"latency_ms": 1},
        "series_interval_s": 0.25,
        "services": {
            "a": {"service_time": {"dist": "exponential", "mean_ms": 20}, "concurrency": 2},
            "b": {"service_time": {"dist": "exponential", "mean_ms": 20}, "concurrency": 2},
            "c": {"service_time": {"dist": "exponential", "mean_ms": 10}, "concurrency": 4},
        },
        "flow": ["a", "b", "c"],
        "style": ["orchestration", "events"],
    }
    return lab.load_scenario(base, **kw)


OUTAGE = {"outages": [{"service": "b", "start_s": 200, "duration_s": 60}]}


def test_outage_orchestration_loses_window_share_events_lose_nothing():
    sc = chain(faults=OUTAGE)
    res = lab.simulate(sc, seed=1)
    rows = res.summary.set_index("style")
    share = 60 / (600 - 60)
    orch, ev = rows.loc["orchestration"], rows.loc["events"]
    # orchestration: availability falls by about the window's share of the measured run
    assert 1 - orch["availability"] == pytest.approx(share, rel=0.12)
    # events: nothing lost, everything completes, later
    assert ev["lost"] == 0 and ev["availability"] == 1.0
    assert ev["completed"] == ev["started"]
    assert ev["latency_p99_s"] > 10 * orch["latency_p99_s"]
    # the backlog is the window's arrivals; it drains at (capacity - arrival rate)
    backlog = 10 * 60
    drain = backlog / (2 / 0.020 - 10)
    assert ev["max_backlog"] == pytest.approx(backlog, rel=0.1)
    assert ev["drain_s"] == pytest.approx(drain, rel=0.25)
    # failed workflows all name the dead service
    failed = res.records[(res.records["style"] == "orchestration") & (res.records["status"] == "failed")]
    assert set(failed["reason"]) == {"refused:b"}
    # every workflow is accounted for: completed + failed + in flight = started
    for style, g in res.records.groupby("style"):
        assert len(g) == g["workflow_id"].nunique()
        measured = g[g.started_s >= sc.warmup_s]
        row = rows.loc[style]
        counts = measured["status"].value_counts()
        assert counts.get("completed", 0) == row["completed"]
        assert counts.get("failed", 0) == row["failed"]
        assert counts.sum() == row["started"]


def test_timeline_shows_the_outage():
    res = lab.simulate(chain(faults=OUTAGE, style="events"), seed=1)
    tl = res.timeline
    b = tl[tl["service"] == "b"]
    down = b[b["state"] == "down"]["time_s"]
    assert down.min() == pytest.approx(200, abs=0.5) and down.max() == pytest.approx(260, abs=0.5)
    assert b[(b.time_s > 250) & (b.time_s < 260)]["lag"].max() > 400
    assert set(tl["state"]) <= {"up", "down", "degraded"}


def test_circuit_breaker_caps_calls_to_a_dead_service():
    faults = {"outages": [{"service": "b", "start_s": 200, "duration_s": 60, "mode": "hang"}]}
    plain = lab.simulate(chain(faults=faults, style="orchestration", resilience={"timeout_ms": 500}), seed=2)
    guarded = lab.simulate(
        chain(faults=faults, style="orchestration",
              resilience={"timeout_ms": 500, "circuit_breaker": {"enabled": True, "failure_threshold": 5, "open_ms": 5000}}),
        seed=2,
    )  # fmt: skip

    def calls_to_b_in_outage(res):
        s = res.series
        return s[(s.metric == "requests") & (s.entity == "b") & (s.time_s > 201) & (s.time_s <= 260)]["value"].sum()

    assert calls_to_b_in_outage(plain) > 500  # every arrival tries, waits 0.5 s, fails
    # open for 5 s, then one trial call: about 60 / 5 trial calls (plus the calls that tripped it)
    assert calls_to_b_in_outage(guarded) < 40
    g = guarded.summary.iloc[0]
    p = plain.summary.iloc[0]
    # fast failure instead of a 0.5 s hang: the same availability, no threads held
    assert g["availability"] == pytest.approx(p["availability"], abs=0.02)


def _peak_requests_after(res, t0, t1, entity="b"):
    s = res.series
    return s[(s.metric == "requests") & (s.entity == entity) & (s.time_s > t0) & (s.time_s <= t1)]["value"].max()


def test_retries_without_jitter_synchronise_with_jitter_they_do_not():
    # a burst overflows b's queue; refused calls retry after 1 s, 2 s, 4 s
    def run(jitter):
        sc = chain(
            style="orchestration",
            duration_s=200,
            series_interval_s=0.05,
            workload={"rate_per_s": 10, "bursts": [{"start_s": 100, "duration_s": 0.2, "multiplier": 200}]},
            services={"a": {"concurrency": 500}, "b": {"queue_limit": 10}, "c": {"concurrency": 500}},
            resilience={"retry": {"retries": 3, "backoff_ms": 1000, "jitter": jitter}},
        )
        return lab.simulate(sc, seed=3)

    sync, spread = run("none"), run("full")
    peak_sync = _peak_requests_after(sync, 100.5, 110)
    peak_spread = _peak_requests_after(spread, 100.5, 110)
    assert peak_sync > 3 * peak_spread, (peak_sync, peak_spread)
    # jitter also spreads the retries enough that more of them get through
    assert spread.summary.iloc[0]["availability"] >= sync.summary.iloc[0]["availability"]


def test_retry_storm_makes_things_worse_and_a_budget_stops_it():
    def run(resilience):
        sc = chain(
            style="orchestration",
            duration_s=400,
            workload={"rate_per_s": 60},
            services={"a": {"concurrency": 4}, "b": {"service_time": {"dist": "exponential", "mean_ms": 10}, "concurrency": 1},
                      "c": {"concurrency": 4}},
            faults={"latency_spikes": [{"service": "b", "start_s": 100, "duration_s": 20, "multiplier": 3}]},
            resilience={"timeout_ms": 200, **resilience},
        )  # fmt: skip
        return lab.simulate(sc, seed=4).summary.iloc[0]

    none = run({})
    storm = run({"retry": {"retries": 3, "backoff_ms": 20}})
    budget = run({"retry": {"retries": 3, "backoff_ms": 20, "budget_ratio": 0.1}})
    assert storm["availability"] < none["availability"] - 0.2  # metastable overload after the spike
    assert budget["availability"] > storm["availability"] + 0.2
    assert budget["retries_denied_by_budget"] > 0 if "retries_denied_by_budget" in budget else True


def test_consumer_crash_gives_duplicates_idempotent_consumer_absorbs_them():
    crash = {"crashes": [{"service": "b", "mtbf_s": 100, "mttr_s": 10}]}
    plain = lab.simulate(chain(faults=crash, style="events"), seed=5).summary.iloc[0]
    idem = lab.simulate(chain(faults=crash, style="events", resilience={"events": {"idempotent_consumer": True}}), seed=5).summary.iloc[0]
    assert plain["redelivered"] > 0
    assert plain["duplicates"] == plain["redelivered"]  # every redelivered event was processed again
    assert idem["duplicates"] == 0
    assert idem["duplicates_absorbed"] == idem["redelivered"]
    assert plain["lost"] == idem["lost"] == 0
    assert plain["availability"] == idem["availability"] == 1.0


def test_dead_letter_queue_takes_poison_messages():
    sc = chain(style="events", resilience={"events": {"poison_rate": 0.02, "max_redeliveries": 2, "dlq": True}})
    row = lab.simulate(sc, seed=6).summary.iloc[0]
    # each of the 3 services sees poison at 2%: about 1 - 0.98^3 of workflows end in the DLQ
    expected = 1 - 0.98**3
    assert row["failed"] / row["started"] == pytest.approx(expected, rel=0.2)
    assert row["dlq"] >= row["failed"] * 0.95
    assert row["retries"] == pytest.approx(2 * row["dlq"], rel=0.05)


def test_retention_expires_events_during_a_long_outage():
    sc = chain(style="events", faults=OUTAGE, broker={"retention_s": 30})
    row = lab.simulate(sc, seed=7).summary.iloc[0]
    assert row["lost"] > 100  # events older than 30 s when b came back
    assert row["failed"] == row["lost"]


def test_broker_outage_producers_buffer_or_lose():
    faults = {"outages": [{"service": "broker", "start_s": 200, "duration_s": 30}]}
    buffered = lab.simulate(chain(style="events", faults=faults), seed=8).summary.iloc[0]
    fire_forget = lab.simulate(chain(style="events", faults=faults, resilience={"events": {"acks": 0}}), seed=8).summary.iloc[0]
    outbox = lab.simulate(chain(style="events", faults=faults, resilience={"events": {"acks": 0, "outbox": {"enabled": True}}}), seed=8).summary.iloc[0]
    assert buffered["lost"] == 0 and buffered["availability"] == 1.0
    assert fire_forget["lost"] == pytest.approx(10 * 30, rel=0.25)
    assert outbox["lost"] == 0 and outbox["availability"] == 1.0
    assert outbox["latency_p50_s"] > buffered["latency_p50_s"]  # the relay adds its delay


def test_chain_mode_propagates_failure_to_every_caller():
    faults = {"error_bursts": [{"service": "c", "start_s": 200, "duration_s": 100, "failure_prob": 0.5}]}
    central = lab.simulate(chain(style="orchestration", faults=faults), seed=9).summary.iloc[0]
    nested = lab.simulate(chain(style="orchestration", faults=faults, orchestration={"mode": "chain"}), seed=9).summary.iloc[0]
    assert central["cascade_depth"] == 1.0
    assert nested["cascade_depth"] == pytest.approx(3.0)  # c fails, so b's and a's calls fail too
    assert nested["downstream_failure_share"] == pytest.approx(2 / 3, abs=0.01)
    assert nested["availability"] == pytest.approx(central["availability"], abs=0.02)


def test_load_shedding_stage4_takes_a_quarter_plus_buffers():
    # 4 days compressed 1440x into 240 s; b's site in area 7, no backup
    ls = {"stage": 4, "compress": 1440, "areas": {"b": 7}}
    sc = chain(style=["orchestration", "events"], duration_s=240, warmup_s=0, workload={"rate_per_s": 20},
               faults={"load_shedding": ls}, resilience={"timeout_ms": 300})  # fmt: skip
    res = lab.simulate(sc, seed=10)
    rows = res.summary.set_index("style")
    off = 30 / 96  # 12 slots x 2 h 30 of 96 h
    assert 1 - rows.loc["orchestration", "availability"] == pytest.approx(off, abs=0.04)
    assert rows.loc["events", "lost"] == 0
    assert rows.loc["events", "availability"] == 1.0


def test_battery_backup_rides_through_short_slots():
    ls = {"stage": 2, "compress": 1440, "areas": {"b": {"area": 3, "backup": {"kind": "battery", "runtime_h": 4, "recharge_h": 8}}}}
    sc = chain(style="orchestration", duration_s=240, warmup_s=0, workload={"rate_per_s": 20},
               faults={"load_shedding": ls}, resilience={"timeout_ms": 300})  # fmt: skip
    row = lab.simulate(sc, seed=10).summary.iloc[0]
    assert row["availability"] > 0.99


def test_same_seed_same_outage_calendar_and_results():
    sc = chain(faults={"crashes": [{"service": "b", "mtbf_s": 60, "mttr_s": 5}]})
    a = lab.simulate(sc, seed=11)
    b = lab.simulate(sc, seed=11)
    c = lab.simulate(sc, seed=12)
    assert a.summary.equals(b.summary)
    assert a.records.equals(b.records)
    assert not a.summary["availability"].equals(c.summary["availability"])


@pytest.mark.parametrize(
    "faults, field",
    [
        ({"load_shedding": {"stage": 9}}, "faults.load_shedding.stage"),
        ({"outages": [{"service": "b", "start_s": 10, "duration_s": -5}]}, "faults.outages[0].duration_s"),
        ({"outages": [{"service": "zz", "start_s": 10, "duration_s": 5}]}, "faults.outages[0].service"),
        ({"load_shedding": {"stage": 4, "areas": {"b": 99}}}, "faults.load_shedding.areas"),
    ],
)
def test_impossible_faults_name_the_field(faults, field):
    with pytest.raises(lab.LabError) as err:
        chain(faults=faults)
    assert field in str(err.value)
    assert "\n" not in str(err.value)


def test_availability_with_fallback_is_degraded_not_failed():
    sc = chain(style="orchestration", faults=OUTAGE, resilience={"per_service": {"b": {"fallback": {"enabled": True}}}})
    res = lab.simulate(sc, seed=12)
    row = res.summary.iloc[0]
    assert row["availability"] == 1.0
    assert row["fallbacks"] == pytest.approx(60 * 10, rel=0.15)
    assert (res.steps["status"] == "degraded").sum() == row["fallbacks"]
    assert not math.isnan(row["latency_p50_s"])


def test_backpressure_keeps_the_backlog_upstream():
    # c is slowed 20x for a minute (5/s against 10/s arriving); with pause/resume, b stops feeding c at a lag of 50
    faults = {"latency_spikes": [{"service": "c", "start_s": 200, "duration_s": 60, "multiplier": 20}]}
    sc = chain(style="events", faults=faults, services={"c": {"concurrency": 1}})
    free = lab.simulate(sc, seed=13)
    held = lab.simulate(sc, seed=13, resilience={"events": {"pause_at_lag": 50, "resume_at_lag": 25}})

    def peak_lag(res, group):
        s = res.series
        return s[(s.metric == "lag") & (s.entity == group)]["value"].max()

    assert peak_lag(free, "c") > 200
    # each of b's 2 consumers may have one event in hand and one in transit when it pauses
    assert peak_lag(held, "c") <= 50 + 2 * 2
    assert peak_lag(held, "b") <= 50 + 2 * 2  # b is held back by c, a by b:
    assert peak_lag(held, "a") > 150  # the backlog waits at the front door instead
    assert held.summary.iloc[0]["lost"] == 0 and held.summary.iloc[0]["availability"] == 1.0


def test_recovery_needs_latency_and_throughput_back():
    rows = lab.simulate(chain(faults=OUTAGE), seed=1).summary.set_index("style")
    drain = 10 * 60 / (2 / 0.020 - 10)  # the window's arrivals at (capacity - rate)
    # events: throughput stays above normal while the backlog is worked off, so recovery
    # comes with the drain (within the throughput window's 2 s step)
    assert rows.loc["events", "recovery_s"] == pytest.approx(drain, abs=0.25 * drain + 2.0)
    assert rows.loc["events", "recovery_s"] >= rows.loc["events", "drain_s"] - 2.0
    # orchestration failed fast: nothing queued, so it is back at once
    assert rows.loc["orchestration", "recovery_s"] < 0.1 * 60


def test_a_dark_network_link_is_a_partition_not_an_outage():
    from lab.faults import fault_calendar

    base = chain(duration_s=1440, warmup_s=0, orchestration={"timeout_ms": 500}, broker={"retention_s": 86400})
    results = {}
    for site in ("b", "link:b", "network"):
        sc = base.replace(faults={"load_shedding": {"stage": 4, "compress": 60, "areas": {site: 5}}})
        cal = fault_calendar(sc.faults, list(sc.services), sc.horizon_s, 1)
        results[site] = (cal, lab.simulate(sc, seed=1).summary.set_index("style"))
    cal_b, rows_b = results["b"]
    cal_link, rows_link = results["link:b"]
    dark = cal_b.down_fraction("b", 0, 1440)
    assert 0.25 < dark < 0.35  # stage 4: 12 slots of 2 h 30 in 4 days, a day of them here
    # the link: b keeps its power, but neither the orchestrator nor the broker reaches it
    assert cal_link.down_fraction("b", 0, 1440) == 0
    assert cal_link.partitioned("b", "orchestrator", cal_b.down_intervals("b")[0][0] + 1)
    assert cal_link.partitioned("b", "broker", cal_b.down_intervals("b")[0][0] + 1)
    for rows in (rows_b, rows_link):
        assert 1 - rows.loc["orchestration", "availability"] == pytest.approx(dark, abs=0.05)
        assert rows.loc["events", "lost"] == 0 and rows.loc["events", "availability"] > 0.99
    # the shared link cuts every service off at once
    cal_net, _rows = results["network"]
    t = cal_b.down_intervals("b")[0][0] + 1
    assert all(cal_net.partitioned(s, "orchestrator", t) for s in ("a", "b", "c"))
