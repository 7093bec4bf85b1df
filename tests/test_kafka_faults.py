"""How the Kafka engine reads a scenario's fault calendar (no broker needed): load-shedding
and outages pause consumers, the broker's dark windows restart it, ``compress`` shortens them,
and a hybrid leaves its core's faults to the HTTP processes."""

from __future__ import annotations

import pytest

from lab.errors import LabError
from lab.faults import fault_calendar
from lab.kafka import engine
from lab.kafka.engine import BrokerRestart, ConsumerCrash, ConsumerOutage, KafkaRun, faults_from_scenario
from lab.scenario import load_scenario

SERVICES = {"order": {"service_time": 10}, "stock": {"service_time": 10}, "invoice": {"service_time": 10}}
#: stage 2 from 2023-06-08 00:00 SAST, a 2 h slot in 6 scenario seconds; area 7 is dark from
#: 12 s to 19.5 s (with the switching buffer); the broker's generator starts after 30 min
SHED = {
    "stage": 2, "start_at": "2023-06-08T00:00", "compress": 1200,
    "areas": {"broker": {"area": 7, "backup": {"kind": "generator", "start_delay_min": 30}}, "stock": 7},
}  # fmt: skip


def _scenario(**over):
    data = {
        "name": "kafka-faults", "duration_s": 40.0, "style": "events", "seed": 3,
        "services": SERVICES, "flow": ["order", "stock", "invoice"],
        "faults": {
            "load_shedding": SHED,
            "outages": [{"service": "stock", "start_s": 1, "duration_s": 2}],
            "crashes": [{"service": "invoice", "mtbf_s": 10, "mttr_s": 1}],
        },
    }  # fmt: skip
    data.update(over)
    return load_scenario(data)


def test_load_shedding_and_outages_become_pauses_and_broker_restarts():
    sc = _scenario()
    cal = fault_calendar(sc.faults, list(sc.services), sc.duration_s + 60.0, 3)
    fs = faults_from_scenario(sc, 3)
    # the calendar's horizon (as the simulation's) runs past the duration: the drain has faults too
    restarts = [(f.at_s, f.at_s + f.down_s) for f in fs if isinstance(f, BrokerRestart)]
    assert restarts == cal.down_intervals("broker")
    assert [w for w in restarts if w[0] < 40] == [(12.0, 13.5)]  # after the generator's start delay
    pauses = sorted((f.service, f.start_s, f.start_s + f.duration_s) for f in fs if isinstance(f, ConsumerOutage))
    assert pauses == [("stock", s, e) for s, e in cal.down_intervals("stock")]
    assert [p for p in pauses if p[1] < 40] == [("stock", 1.0, 3.0), ("stock", 12.0, 19.5)]  # outage, dark slot
    crashes = [f for f in fs if isinstance(f, ConsumerCrash)]
    assert crashes and {f.service for f in crashes} == {"invoice"}  # crashes stay crashes, not pauses
    assert not any(getattr(f, "service", "") == "invoice" for f in fs if isinstance(f, ConsumerOutage))


def test_no_faults_section_no_faults():
    assert faults_from_scenario(_scenario(faults={}), 3) == []


def test_compress_shortens_load_shedding_windows(monkeypatch):
    monkeypatch.setattr(engine.lab_broker, "owns", lambda bootstrap: True)
    sc = _scenario()
    run = KafkaRun(sc, seed=3, bootstrap="127.0.0.1:1", compress=4.0, faults=faults_from_scenario(sc, 3))
    assert [(f.at_s, f.down_s) for f in run.faults if isinstance(f, BrokerRestart)][0] == (3.0, 1.5 / 4)
    assert (3.0, 7.5 / 4) in [(f.start_s, f.duration_s) for f in run.faults if isinstance(f, ConsumerOutage)]


def test_a_broker_window_needs_the_labs_own_broker(monkeypatch):
    monkeypatch.setattr(engine.lab_broker, "owns", lambda bootstrap: False)
    sc = _scenario()
    with pytest.raises(LabError, match="lab's own broker"):
        KafkaRun(sc, seed=3, bootstrap="127.0.0.1:1", faults=faults_from_scenario(sc, 3))


def test_hybrid_keeps_the_downstream_faults_and_leaves_the_core_to_http(monkeypatch):
    monkeypatch.setattr(engine.lab_broker, "owns", lambda bootstrap: True)
    sc = _scenario(style="hybrid", hybrid={"core_steps": 2})
    run = KafkaRun(sc, seed=3, bootstrap="127.0.0.1:1", faults=faults_from_scenario(sc, 3), style="hybrid")
    assert run.steps == ["invoice"] and run.in_topics("invoice") == [run.topic("core.done")]
    assert {getattr(f, "service", "broker") for f in run.faults} == {"invoice", "broker"}  # stock's are over HTTP
    with pytest.raises(LabError, match="--compress"):
        KafkaRun(sc, seed=3, bootstrap="127.0.0.1:1", style="hybrid", time_scale=0.5)


def test_a_dark_network_link_pauses_the_service_consumers():
    shed = {**SHED, "areas": {"link:invoice": 7}}  # the invoice service's own link, same area as above
    sc = _scenario(faults={"load_shedding": shed})
    pauses = sorted((f.service, f.start_s, f.start_s + f.duration_s) for f in faults_from_scenario(sc, 3)
                    if isinstance(f, ConsumerOutage))
    assert [p for p in pauses if p[1] < 40] == [("invoice", 12.0, 19.5)]  # the slot, buffer included
    assert not any(isinstance(f, BrokerRestart) for f in faults_from_scenario(sc, 3))  # the broker keeps power
