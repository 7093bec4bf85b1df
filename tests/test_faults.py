"""Fault calendar: crash availability against renewal theory, determinism per seed,
interval queries, and errors that name the field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab import faults as faults_module
from lab.errors import LabError
from lab.faults import FaultCalendar, Faults, fault_calendar, parse_faults

SERVICES = ["order", "payment", "shipping"]
ROOT = Path(__file__).resolve().parents[1]


def crash(service="payment", mtbf_s=100.0, mttr_s=10.0, **kw):
    return {"service": service, "mtbf_s": mtbf_s, "mttr_s": mttr_s, **kw}


@pytest.mark.parametrize(
    ("mtbf_s", "mttr_s", "tol"),
    # tolerance ~4.5 standard errors of the renewal-reward estimate over the horizon:
    # sd = sqrt(Var(D - a C) / n) / E[C], n = horizon / (mtbf + mttr) cycles
    [(100.0, 10.0, 0.006), (20.0, 20.0, 0.01)],
)
def test_crash_availability_matches_mtbf_over_mtbf_plus_mttr(mtbf_s, mttr_s, tol):
    horizon = 1_000_000.0
    cal = fault_calendar({"crashes": [crash(mtbf_s=mtbf_s, mttr_s=mttr_s)]}, SERVICES, horizon, seed=3)
    availability = 1 - cal.down_fraction("payment")
    assert availability == pytest.approx(mtbf_s / (mtbf_s + mttr_s), abs=tol)
    intervals = cal.down_intervals("payment")
    n_expected = horizon / (mtbf_s + mttr_s)
    assert abs(len(intervals) - n_expected) < 5 * n_expected**0.5 + 0.05 * n_expected  # merges are rare
    mean_down = sum(e - s for s, e in intervals) / len(intervals)
    assert mean_down == pytest.approx(mttr_s, rel=0.05)
    assert cal.down_fraction("order") == 0.0


def test_calendar_intervals_are_sorted_merged_and_within_horizon():
    cal = fault_calendar({"crashes": [crash(mtbf_s=5, mttr_s=5)]}, SERVICES, 5000.0, seed=1)
    iv = cal.down_intervals("payment")
    assert all(0 <= s < e <= 5000.0 for s, e in iv)
    assert all(e1 < s2 for (_, e1), (s2, _) in zip(iv, iv[1:], strict=False))  # disjoint, not touching


def test_crash_start_delays_the_first_crash():
    cal = fault_calendar({"crashes": [crash(mtbf_s=1, mttr_s=1, start_s=300)]}, SERVICES, 1000.0, seed=2)
    assert cal.down_intervals("payment")[0][0] >= 300
    assert cal.down_fraction("payment", 0, 300) == 0.0
    assert cal.down_fraction("payment", 300, 1000) == pytest.approx(0.5, abs=0.1)


def test_same_seed_same_calendar_different_seed_different():
    spec = {"crashes": [crash(), crash("order", 50, 5)]}
    a = fault_calendar(spec, SERVICES, 20_000.0, seed=42)
    b = fault_calendar(spec, SERVICES, 20_000.0, seed=42)
    c = fault_calendar(spec, SERVICES, 20_000.0, seed=43)
    assert a.down_intervals("payment") == b.down_intervals("payment")
    assert a.to_frame().equals(b.to_frame())
    assert a.down_intervals("payment") != c.down_intervals("payment")


def test_services_draw_from_independent_streams():
    """A service's crashes do not depend on other services' faults or on list order."""
    alone = fault_calendar({"crashes": [crash()]}, SERVICES, 20_000.0, seed=5)
    both = fault_calendar({"crashes": [crash("order", 30, 3), crash()]}, SERVICES, 20_000.0, seed=5)
    assert alone.down_intervals("payment") == both.down_intervals("payment")
    same_params = fault_calendar({"crashes": [crash("order"), crash()]}, SERVICES, 20_000.0, seed=5)
    assert same_params.down_intervals("order") != same_params.down_intervals("payment")


def test_calendar_is_stable_across_processes():
    """Stream keys come from zlib.crc32, not the per-process salted hash()."""
    code = (
        "import json; from lab.faults import fault_calendar;"
        "c = fault_calendar({'crashes': [{'service': 'payment', 'mtbf_s': 100, 'mttr_s': 10}]},"
        " ['payment'], 2000.0, seed=9);"
        "print(json.dumps(c.down_intervals('payment')))"
    )
    hashseed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"  # a salt unlike this process's
    env = {**os.environ, "PYTHONHASHSEED": hashseed, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    here = fault_calendar({"crashes": [crash(mtbf_s=100, mttr_s=10)]}, ["payment"], 2000.0, seed=9)
    there = [tuple(iv) for iv in json.loads(out.stdout)]
    assert there == here.down_intervals("payment") and there


def test_queries_on_explicit_faults():
    spec = {
        "outages": [
            {"service": "payment", "start_s": 100, "duration_s": 50},
            {"service": "payment", "start_s": 140, "duration_s": 20, "mode": "hang"},
            {"service": "broker", "start_s": 500, "duration_s": 60, "mode": "hang"},
        ],
        "latency_spikes": [
            {"service": "shipping", "start_s": 10, "duration_s": 20, "multiplier": 3},
            {"service": "shipping", "start_s": 20, "duration_s": 20, "multiplier": 2},
        ],
        "error_bursts": [
            {"service": "order", "start_s": 0, "duration_s": 10, "failure_prob": 0.5},
            {"service": "order", "start_s": 5, "duration_s": 10, "failure_prob": 0.2},
        ],
        "partitions": [{"service": "order", "peer": "orchestrator", "start_s": 30, "duration_s": 5}],
    }
    cal = fault_calendar(spec, SERVICES, 1000.0, seed=1)
    assert isinstance(cal, FaultCalendar)
    # overlapping outages merge; the merged interval hangs because part of it does
    assert cal.down_intervals("payment") == [(100.0, 160.0)]
    assert [cal.is_down("payment", t) for t in (99.9, 100.0, 159.9, 160.0)] == [False, True, True, False]
    assert cal.down_mode("payment", 120) == "hang" and cal.down_mode("payment", 99) is None
    assert cal.next_change("payment", 0) == 100 and cal.next_change("payment", 120) == 160
    assert cal.next_change("payment", 200) == float("inf")
    assert cal.is_down("broker", 530) and cal.down_mode("broker", 530) == "hang"
    assert cal.down_fraction("broker") == pytest.approx(0.06)
    # spikes multiply where they overlap
    assert [cal.latency_multiplier("shipping", t) for t in (5, 10, 20, 29.9, 30, 40)] == [1, 3, 6, 6, 2, 1]
    assert cal.next_change("shipping", 12, kind="latency") == 20
    # error bursts combine as independent chances: 1 - 0.5 * 0.8
    assert [cal.extra_failure_prob("order", t) for t in (1, 7, 12, 15)] == pytest.approx([0.5, 0.6, 0.2, 0])
    assert cal.extra_failure_prob("payment", 1) == 0.0
    # partitions are symmetric and only between the named ends
    assert cal.partitioned("order", "orchestrator", 31) and cal.partitioned("orchestrator", "order", 34.9)
    assert not cal.partitioned("order", "broker", 31) and not cal.partitioned("order", "orchestrator", 35)
    assert not cal.is_down("order", 31)
    assert cal.next_change("order", 0, kind="any") == 5  # the second burst starts
    assert cal.next_change("order", 16, kind="any") == 30  # the partition starts
    frame = cal.to_frame()
    assert set(frame["kind"]) == {"down", "latency", "errors", "partition"}


def test_timeline_states_per_bucket():
    spec = {
        "outages": [{"service": "payment", "start_s": 10, "duration_s": 14}],
        "latency_spikes": [{"service": "order", "start_s": 30, "duration_s": 10, "multiplier": 4}],
        "partitions": [{"service": "shipping", "peer": "broker", "start_s": 0, "duration_s": 10}],
    }
    cal = fault_calendar(spec, SERVICES, 50.0, seed=1)
    tl = cal.timeline(SERVICES, bucket_s=10)
    assert len(tl) == 3 * 5
    pay = tl[tl["name"] == "payment"]
    assert pay["state"].tolist() == ["up", "down", "degraded", "up", "up"]
    assert pay["down_share"].tolist() == pytest.approx([0, 1, 0.4, 0, 0])
    assert tl[tl["name"] == "order"]["state"].tolist() == ["up", "up", "up", "degraded", "up"]
    assert tl[tl["name"] == "shipping"]["state"].tolist()[:2] == ["degraded", "up"]
    # the buckets' down time adds up to the calendar's
    assert (pay["down_share"] * 10).sum() == pytest.approx(14)


def test_absurd_crash_rates_are_a_units_error():
    with pytest.raises(LabError) as info:
        fault_calendar({"crashes": [crash(), crash("order", mtbf_s=0.001, mttr_s=0.001)]}, SERVICES, 1e6, seed=1)
    assert info.value.field == "faults.crashes[1]" and "units" in info.value.message


def test_extra_down_intervals_are_merged_in():
    cal = fault_calendar(
        {"outages": [{"service": "order", "start_s": 0, "duration_s": 10}]},
        SERVICES,
        100.0,
        seed=1,
        extra_down={"order": [(5.0, 20.0)], "broker": [(50.0, 60.0)]},
    )
    assert cal.down_intervals("order") == [(0.0, 20.0)]
    assert cal.down_mode("order", 15) == "refuse" and cal.is_down("broker", 55)


def test_empty_faults():
    f = parse_faults(None)
    assert f.empty
    cal = fault_calendar(f, SERVICES, 10.0, seed=1)
    assert not cal.is_down("order", 5) and cal.latency_multiplier("order", 5) == 1.0
    assert cal.next_change("order", 0, kind="any") == float("inf")


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"crashes": [crash(mttr_s=-5)]}, "faults.crashes[0].mttr_s", "greater than 0"),
        ({"crashes": [crash(), crash(mtbf_s=0)]}, "faults.crashes[1].mtbf_s", "greater than 0"),
        (
            {"outages": [{"service": "order", "start_s": 0, "duration_s": -3}]},
            "faults.outages[0].duration_s",
            "greater than 0",
        ),
        (
            {"latency_spikes": [{"service": "order", "start_s": -1, "duration_s": 3, "multiplier": 2}]},
            "faults.latency_spikes[0].start_s",
            "greater than or equal to 0",
        ),
        (
            {"error_bursts": [{"service": "order", "start_s": 0, "duration_s": 3, "failure_prob": 1.5}]},
            "faults.error_bursts[0].failure_prob",
            "less than or equal to 1",
        ),
        (
            {"partitions": [{"service": "order", "peer": "database", "start_s": 0, "duration_s": 3}]},
            "faults.partitions[0].peer",
            "'orchestrator'",
        ),
        ({"outages": [{"service": "order", "start_s": 0, "duration_s": 3, "mode": "slow"}]}, "faults.outages[0].mode", "'hang'"),
        ({"crashes": [{"service": "order", "mtbf_s": 1}]}, "faults.crashes[0].mttr_s", "required"),
        ({"earthquakes": []}, "faults.earthquakes", "unknown field"),
    ],
)
def test_errors_name_the_field(data, field, words):
    with pytest.raises(LabError) as info:
        parse_faults(data, source="my.yaml")
    assert info.value.field == field
    assert words in info.value.message
    assert info.value.one_line().startswith(f"my.yaml: {field}: ")


def test_unknown_services_are_named_with_their_position():
    f = parse_faults(
        {
            "crashes": [crash("order"), crash("paymnet")],
            "outages": [{"service": "broker", "start_s": 0, "duration_s": 1}],
        }
    )
    with pytest.raises(LabError) as info:
        f.validate_against(SERVICES)
    assert info.value.field == "faults.crashes[1].service"
    assert "'paymnet'" in info.value.message
    with pytest.raises(LabError) as info:
        fault_calendar(f, SERVICES, 100.0, seed=1)  # the calendar checks too
    assert info.value.field == "faults.crashes[1].service"
    # the broker and the orchestrator may crash or have an outage, but not a latency spike
    with pytest.raises(LabError) as info:
        parse_faults(
            {"latency_spikes": [{"service": "broker", "start_s": 0, "duration_s": 1, "multiplier": 2}]}
        ).validate_against(SERVICES)
    assert info.value.field == "faults.latency_spikes[0].service"
    parse_faults(
        {"crashes": [crash("orchestrator")], "outages": [{"service": "broker", "start_s": 0, "duration_s": 1}]}
    ).validate_against(SERVICES)


def test_load_shedding_slot():
    if faults_module._LoadShedding is None:
        f = Faults(load_shedding={"stage": 4})
        assert f.load_shedding == {"stage": 4} and not f.empty
    else:  # lab.loadshedding has landed: its model validates the slot
        f = Faults(load_shedding={"stage": 4})
        assert isinstance(f.load_shedding, faults_module._LoadShedding) and not f.empty
        with pytest.raises(LabError) as info:
            parse_faults({"load_shedding": {"stage": 9}})
        assert info.value.field == "faults.load_shedding.stage"


@pytest.mark.skipif(faults_module._LoadShedding is None, reason="lab.loadshedding not there")
def test_load_shedding_down_time_joins_the_calendar():
    """Stage 4 for 4 days: an area is off 12 x 2 h, each with a 30 min buffer (30 h of 96 h,
    fewer if slots touch); the calendar holds exactly lab.loadshedding's intervals, merged
    with the other faults, in hang mode (a site without power does not answer)."""
    from lab.loadshedding import outage_calendar

    horizon = 4 * 86400.0
    spec = {
        "load_shedding": {"stage": 4, "areas": {"payment": 3, "orchestrator": 3}},
        "outages": [{"service": "order", "start_s": 0, "duration_s": 60}],
    }
    cal = fault_calendar(spec, SERVICES, horizon, seed=1)
    shed = outage_calendar(parse_faults(spec).load_shedding, SERVICES + ["broker", "orchestrator"], horizon, 1)
    assert cal.down_intervals("payment") == shed["payment"]
    assert cal.down_intervals("orchestrator") == shed["orchestrator"]
    assert 24 / 96 <= cal.down_fraction("payment") <= 30 / 96 + 1e-9
    start = cal.down_intervals("payment")[0][0]
    assert cal.down_mode("payment", start) == "hang"
    assert cal.down_intervals("order") == [(0.0, 60.0)] and cal.down_fraction("shipping") == 0.0
    with pytest.raises(LabError) as info:
        fault_calendar({"load_shedding": {"stage": 2, "areas": {"paymnt": 3}}}, SERVICES, horizon, seed=1)
    assert info.value.field == "faults.load_shedding.areas.paymnt"
