"""The real HTTP engine against real uvicorn processes on 127.0.0.1 (no mocks).

Checks compare with the scenario's configuration (sums of service times, outage windows,
poll intervals) and reconcile counts; none asserts on speed.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from lab.http import ServiceFleet, run_http
from lab.scenario import load_scenario

pytestmark = [pytest.mark.http, pytest.mark.timeout(120)]


def chain(rate=5.0, duration=3.0, **over):
    data = {
        "name": "chain3",
        "duration_s": duration,
        "workload": {"rate_per_s": rate},
        "network": {"latency_ms": 0},
        "services": {
            "a": {"service_time": 30, "concurrency": 8},
            "b": {"service_time": 60, "concurrency": 8},
            "c": {"service_time": 30, "concurrency": 8},
        },
        "flow": ["a", "b", "c"],
    }
    return load_scenario(data, **over)


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        try:
            s.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
    return False


def test_chain_latency_at_least_sum_of_service_times_and_close_at_low_load():
    sc = chain()
    res = run_http(sc, seed=3)
    wf = res.records
    assert len(wf) > 5 and (wf.status == "completed").all()
    lat = wf.finished_s - wf.started_s
    total = 0.030 + 0.060 + 0.030
    assert lat.min() >= total  # never faster than the work the services do
    assert lat.median() <= 1.5 * total  # close to it when nothing queues
    steps = res.steps
    assert len(steps) == 3 * len(wf)
    for name, s in (("a", 0.03), ("b", 0.06), ("c", 0.03)):
        d = steps[steps.service == name]
        assert ((d.finished_s - d.started_s) >= s).all()
    row = res.summary.iloc[0]
    assert row.engine == "http" and row.started == len(wf) and row.completed == len(wf)


def test_chain_mode_holds_each_caller_and_reports_where_it_broke():
    sc = chain(rate=10.0, duration=2.5, orchestration={"mode": "chain", "timeout_ms": 2000})
    res = run_http(sc, seed=11, faults={"c": [{"kind": "outage", "start_s": 1.0, "end_s": 1.5, "mode": "refuse"}]})
    wf, steps = res.records, res.steps
    failed = wf[wf.status == "failed"]
    assert len(failed) > 0 and set(failed.reason) == {"downstream:c"}
    assert (wf[wf.started_s > 1.7].status == "completed").all()  # recovery
    ok = wf[wf.status == "completed"].workflow_id
    d = steps[steps.workflow_id.isin(ok)].assign(took=lambda x: x.finished_s - x.started_s)
    took = d.pivot_table(index="workflow_id", columns="service", values="took")
    # each service holds its slot while the rest of the chain works: a >= 30 ms + b >= 30 + 60 ms + c
    assert (took["c"] >= 0.030).all()
    assert (took["b"] >= 0.060 + took["c"]).all()
    assert (took["a"] >= 0.030 + took["b"]).all()


def test_outage_window_fails_calls_inside_and_recovers_after_compressed_clock():
    # 150 scenario seconds played 50x faster: b refuses connections in scenario [50, 100) s
    sc = chain(rate=20.0, duration=150.0)
    compress = 50.0
    window = {"kind": "outage", "start_s": 50.0, "end_s": 100.0, "mode": "refuse"}
    res = run_http(sc, seed=4, compress=compress, faults={"b": [window]})
    wf = res.records
    a, b = 50.0 / compress, 100.0 / compress  # the window on the wall clock
    failed = wf[wf.status == "failed"]
    assert len(failed) > 5
    assert set(failed.reason) <= {"refused:b", "error:b"}
    # a failure belongs to a workflow that reached b (about 30 ms after its start) inside the window
    assert failed.started_s.min() >= a - 0.2 and failed.started_s.max() <= b + 0.05
    before = wf[wf.started_s < a - 0.2]
    after = wf[wf.started_s > b + 0.2]
    assert len(before) > 5 and (before.status == "completed").all()
    assert len(after) > 5 and (after.status == "completed").all()  # recovery
    assert len(wf) == (wf.status == "completed").sum() + len(failed)  # nothing left hanging


def test_outage_with_503_and_retries_recovers_every_workflow():
    sc = chain(rate=10.0, duration=3.0, orchestration={"retries": 6, "backoff_ms": 100, "backoff_multiplier": 1.5})
    window = {"kind": "outage", "start_s": 1.0, "end_s": 1.6, "mode": "503"}
    res = run_http(sc, seed=5, faults={"b": [window]})
    wf = res.records
    assert (wf.status == "completed").all()
    b_steps = res.steps[res.steps.service == "b"]
    retried = b_steps[b_steps.attempts > 1]
    assert len(retried) > 0
    # retried calls are the ones that reached b in the window
    assert retried.started_s.min() >= 1.0 - 0.1 and retried.started_s.max() < 1.6
    assert res.summary.iloc[0].availability == 1.0


def test_scenario_faults_section_hang_outage_ends_in_caller_timeouts():
    faults = {"outages": [{"service": "b", "start_s": 1.0, "duration_s": 0.5, "mode": "hang"}]}
    # a timeout well above the slowest normal call on a loaded 2-core box
    sc = chain(rate=10.0, duration=3.0, orchestration={"timeout_ms": 1000}, faults=faults)
    res = run_http(sc, seed=12)
    wf = res.records
    failed = wf[wf.status == "failed"]
    assert len(failed) > 0 and set(failed.reason) == {"timeout:b"}
    assert failed.started_s.min() >= 1.0 - 0.2 and failed.started_s.max() <= 1.5
    assert (wf[wf.started_s > 1.7].status == "completed").all()
    assert (wf.status != "in_flight").all()
    took = res.steps[res.steps.service == "b"].pipe(lambda d: d[d.status == "failed"])
    assert ((took.finished_s - took.started_s) >= 0.99).all()  # each waited out its timeout (loop clock: ms)


def test_circuit_breaker_stops_calls_to_a_dead_service():
    sc = chain(rate=20.0, duration=2.0)
    dead = {"kind": "outage", "start_s": 0.0, "end_s": 1e9, "mode": "refuse"}
    resilience = {"circuit_breaker": {"enabled": True, "failure_threshold": 3, "open_ms": 60000}}
    res = run_http(sc, seed=6, faults={"b": [dead]}, resilience=resilience)
    wf = res.records
    assert (wf.status == "failed").all()
    reasons = wf.reason.value_counts()
    assert reasons.get("open:b", 0) >= len(wf) - 5  # the breaker answered almost every call
    assert reasons.get("refused:b", 0) <= 5  # only the calls before it opened reached b
    assert reasons.get("refused:b", 0) >= 3
    counters = res.meta  # breaker counters are in the recorder's counters, surfaced in steps
    assert counters["styles"]["orchestration"]["arrivals"] == len(wf)


def test_killed_service_is_detected_and_reported_not_hung_on():
    sc = chain(rate=20.0, duration=3.0, orchestration={"timeout_ms": 2000})
    killed_at = {}

    def kill_b(fleet, style):
        time.sleep(1.0)
        killed_at["t"] = time.monotonic()
        fleet.kill("b")

    t_start = time.monotonic()
    res = run_http(sc, seed=7, on_running=kill_b, drain_s=10.0)
    assert time.monotonic() - t_start < 60  # it returned (the pytest timeout is the real guard)
    meta = res.meta["styles"]["orchestration"]
    assert "b" in meta["dead_services"]
    wf = res.records
    assert (wf.status != "in_flight").all()  # every workflow resolved
    failed = wf[wf.status == "failed"]
    assert len(failed) > 10
    assert set(failed.reason) <= {"refused:b", "error:b"}
    late = wf[wf.started_s > 1.6]
    assert (late.status == "failed").all()


def test_polling_an_async_job_returns_after_job_plus_at_most_one_poll_interval():
    sc = load_scenario(
        {
            "name": "job",
            "duration_s": 3.0,
            "workload": {"rate_per_s": 3.0, "arrivals": "constant"},
            "network": {"latency_ms": 0},
            "services": {"j": {"service_time": 10, "concurrency": 4, "job": 250, "poll_interval_ms": 100, "poll_time_ms": 2}},
            "flow": ["j"],
        }
    )
    res = run_http(sc, seed=8)
    wf = res.records
    assert len(wf) >= 8 and (wf.status == "completed").all()
    lat = (wf.finished_s - wf.started_s).to_numpy()
    work = 0.010 + 0.250
    assert (lat >= work).all()
    slack = 0.10  # the poll's own cost (2 ms), timer granularity and loopback on a busy 2-core CI box
    assert (lat <= work + 0.100 + slack).all()
    st = res.steps.staleness_s.to_numpy()
    assert np.isfinite(st).all() and (st >= 0).all() and (st <= 0.100 + slack).all()
    polls = res.polls
    assert len(polls) >= 2 * len(wf)  # 250 ms job, 100 ms interval: at least 2 polls each
    assert polls.useful.sum() == len(wf)  # exactly one useful poll per job
    assert res.summary.iloc[0].wasted_polls == len(polls) - len(wf)


def test_change_propagation_poll_vs_push():
    sc = load_scenario(
        {
            "name": "prop",
            "duration_s": 4.0,
            "workload": {"rate_per_s": 3.0},  # P(a poll finds nothing new) = exp(-3 x 0.3) = 0.41
            "network": {"latency_ms": 0},
            "services": {"src": {"service_time": 2, "concurrency": 4}, "s1": {"service_time": 5, "concurrency": 2},
                         "s2": {"service_time": 5, "concurrency": 2}},
            "propagation": {"source": "src", "subscribers": ["s1", "s2"], "poll_interval_ms": 300},
            "style": ["orchestration", "events"],
        }
    )  # fmt: skip
    res = run_http(sc, seed=9)
    s = res.summary.set_index("style")
    for style in ("orchestration", "events"):
        wf = res.records[res.records["style"] == style]
        assert (wf.status == "completed").all()
        steps = res.steps[res.steps["style"] == style]
        assert len(steps) == 2 * len(wf)  # every change reached both subscribers once
    poll_stale = s.loc["orchestration", "staleness_mean_s"]
    push_stale = s.loc["events", "staleness_mean_s"]
    assert push_stale < poll_stale
    # polling every T: mean staleness about T/2 plus the work (well under T + work)
    assert 0.3 / 4 < poll_stale < 0.3 + 0.05
    assert s.loc["orchestration", "polls"] > 0 and s.loc["orchestration", "wasted_polls"] > 0
    assert s.loc["events", "polls"] == 0
    assert math.isclose(s.loc["orchestration", "availability"], 1.0)


def test_no_process_or_port_left_after_a_run_and_after_an_exception():
    seen = {}

    def grab(fleet, style):
        seen["pids"] = list(fleet.pids().values())
        seen["ports"] = list(fleet.ports().values())

    run_http(chain(duration=1.0), seed=10, on_running=grab)
    assert seen["pids"] and not any(alive(p) for p in seen["pids"])
    assert all(refused(p) for p in seen["ports"])

    cfg = {"service": {"service_time": 1}}
    with pytest.raises(RuntimeError), ServiceFleet({"x": cfg, "y": cfg}) as fleet:
        pids, ports = list(fleet.pids().values()), list(fleet.ports().values())
        raise RuntimeError("boom")
    assert not any(alive(p) for p in pids)
    assert all(refused(p) for p in ports)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_parent_stopped_by_signal_leaves_no_service_behind(sig):
    script = textwrap.dedent(
        """
        import sys, time
        from lab.http import ServiceFleet
        cfg = {"service": {"service_time": 1}}
        with ServiceFleet({"x": cfg, "y": cfg}) as fleet:
            print(" ".join(str(p) for p in fleet.pids().values()), flush=True)
            print(" ".join(str(p) for p in fleet.ports().values()), flush=True)
            time.sleep(60)
        """
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=root, text=True)
    pids = [int(p) for p in proc.stdout.readline().split()]
    ports = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2 and all(alive(p) for p in pids)
    proc.send_signal(sig)
    proc.wait(timeout=15)
    deadline = time.monotonic() + 10  # SIGKILL: the children notice their stdin closing
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    assert not any(alive(p) for p in pids)
    assert all(refused(p) for p in ports)


def test_common_random_numbers_with_the_simulation_workflow_by_workflow():
    from lab.run import simulate

    sc = load_scenario(
        "mm1-teaching", duration_s=6.0, warmup_s=0.5, seed=13, **{"workload.rate_per_s": 4.0}
    )  # M/M/1, exponential 100 ms service, no network latency
    sim = simulate(sc).records.sort_values("workflow_id")
    real = run_http(sc).records.sort_values("workflow_id")
    # the same arrivals (same streams) ...
    assert len(sim) == len(real) and np.allclose(sim.started_s, real.started_s)
    assert (real.status == "completed").all()
    # ... and the same dice: real latency = simulated latency + the real machinery's cost
    diff = (real.finished_s - real.started_s).to_numpy() - (sim.finished_s - sim.started_s).to_numpy()
    assert diff.min() >= -0.002  # never faster than the model (event-loop clock: ms)
    assert np.median(diff) < 0.05  # and close to it at this load
