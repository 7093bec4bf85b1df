"""The scenario description, its validation, and the CLI's promises (exit 2, one line)."""

import json
import subprocess
import sys

import pytest

import lab
from lab.scenario import Dist

ISSUE_YAML = """\
name: mm1-teaching
duration_s: 2000
warmup_s: 200
workload: {arrivals: poisson, rate_per_s: 8}
network: {latency_ms: 0}
services:
  worker: {service_time: {dist: exponential, mean_ms: 100}, concurrency: 1}
flow: [worker]
style: orchestration
"""


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_the_issue_yaml_validates_and_runs(tmp_path):
    f = tmp_path / "mm1.yaml"
    f.write_text(ISSUE_YAML)
    sc = lab.load_scenario(f)
    assert sc.styles == ["orchestration"] and sc.steps == ["worker"]
    r = cli("run", str(f), "--seed", "3", "--set", "duration_s=300", "--set", "warmup_s=30", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) == 1
    assert set(lab.SUMMARY_COLUMNS) <= set(rows[0])
    assert rows[0]["engine"] == "sim" and rows[0]["seed"] == 3


def test_every_preset_validates_and_lists():
    r = cli("scenarios")
    assert r.returncode == 0
    for name in ("retail-inventory", "crm-sync", "supply-chain", "fintech-hybrid", "mm1-teaching"):
        assert name in r.stdout
        lab.load_scenario(name)
    # one line each, with what it teaches
    assert len(r.stdout.strip().splitlines()) == len(lab.preset_names())


def test_style_list_gives_one_row_each_on_common_random_numbers():
    # a tandem of FIFO single servers, no latencies: both styles are the same queueing
    # network, so on common random numbers every workflow has the same latency
    sc = lab.load_scenario(
        {"name": "tandem", "duration_s": 300, "network": {"latency_ms": 0}, "broker": {"latency_ms": 0, "partitions": 1},
         "workload": {"rate_per_s": 5},
         "services": {n: {"service_time": {"dist": "exponential", "mean_ms": 60}} for n in ("a", "b", "c")},
         "flow": ["a", "b", "c"], "style": ["orchestration", "events"]}
    )  # fmt: skip
    res = lab.simulate(sc, seed=4)
    assert list(res.summary["style"]) == ["orchestration", "events"]
    rec = res.records.assign(latency=res.records.finished_s - res.records.started_s)
    o = rec[rec["style"] == "orchestration"].set_index("workflow_id")["latency"]
    e = rec[rec["style"] == "events"].set_index("workflow_id")["latency"]
    assert len(o) == len(e) > 1000
    assert (o - e).abs().max() < 1e-9


def test_exact_trace_of_a_poll_loop():
    # job of 2.5 s, polled every 1 s: polls at 1, 2, 3 s after the 202; the third finds it done
    sc = lab.load_scenario(
        {"name": "trace", "duration_s": 1, "workload": {"arrivals": "constant", "rate_per_s": 1}, "network": {"latency_ms": 0},
         "services": {"s": {"service_time": 100, "job": 2500, "poll_interval_ms": 1000, "poll_time_ms": 10}},
         "flow": ["s"]}
    )  # fmt: skip
    res = lab.simulate(sc, seed=1)
    polls = res.polls
    assert list(polls["time_s"].round(6)) == [1.11, 2.12, 3.13]
    assert list(polls["useful"]) == [False, False, True]
    row = res.summary.iloc[0]
    assert row["latency_mean_s"] == pytest.approx(3.13)
    assert row["staleness_mean_s"] == pytest.approx(3.13 - 2.6)
    assert row["wasted_polls"] == 2


def test_exact_trace_of_a_broker_handoff():
    # publish at t=0; 1 ms hop to the broker, 5 ms broker, 1 ms hop to the consumer; 100 ms work
    sc = lab.load_scenario(
        {"name": "handoff", "duration_s": 1, "workload": {"arrivals": "constant", "rate_per_s": 1}, "network": {"latency_ms": 1},
         "broker": {"latency_ms": 5}, "services": {"s": {"service_time": 100}, "t": {"service_time": 50}},
         "flow": ["s", "t"], "style": "events"}
    )  # fmt: skip
    res = lab.simulate(sc, seed=1)
    ev = res.events.sort_values("processed_s")
    assert list(ev["group"]) == ["s", "t"]
    assert list(ev["processed_s"].round(6)) == [0.107, 0.164]
    assert list(ev["published_s"].round(6)) == [0.0, 0.107]
    assert res.summary.iloc[0]["latency_mean_s"] == pytest.approx(0.164)


def test_parallel_branch_is_scatter_gather():
    sc = lab.load_scenario(
        {"name": "fan", "duration_s": 1, "workload": {"arrivals": "constant", "rate_per_s": 1}, "network": {"latency_ms": 0},
         "broker": {"latency_ms": 0}, "services": {"a": {"service_time": 10}, "b": {"service_time": 30}, "c": {"service_time": 70}},
         "flow": ["a", ["b", "c"]], "style": ["orchestration", "events"]}
    )  # fmt: skip
    res = lab.simulate(sc, seed=1)
    assert list(res.summary["latency_mean_s"].round(6)) == [0.08, 0.08]  # 10 + max(30, 70)


def test_lognormal_by_p99_and_sigma():
    d = Dist(dist="lognormal", mean_ms=100, p99_ms=400)
    mu, s = d.lognormal_params()
    import math

    assert math.exp(mu + s * s / 2) == pytest.approx(100)
    assert math.exp(mu + 2.3263478740408408 * s) == pytest.approx(400)
    with pytest.raises(ValueError):
        Dist(dist="lognormal", mean_ms=100, p99_ms=5000)  # impossible: p99/mean at most ~15


def test_time_varying_rate_follows_bursts():
    sc = lab.load_scenario("mm1-teaching", duration_s=1500, warmup_s=0, workload={"rate_per_s": 2, "bursts": [{"start_s": 500, "duration_s": 500, "multiplier": 3}]})
    rec = lab.simulate(sc, seed=2).records
    inside = ((rec.started_s >= 500) & (rec.started_s < 1000)).sum()
    outside = ((rec.started_s < 500) | (rec.started_s >= 1000)).sum()
    assert inside == pytest.approx(3000, rel=0.08)  # Poisson: sd about 1.8%
    assert outside == pytest.approx(2000, rel=0.08)


def test_overrides_dotted_and_nested_and_seed_reproducible():
    a = lab.load_scenario("mm1-teaching", **{"workload.rate_per_s": 4}, duration_s=300)
    b = lab.load_scenario("mm1-teaching", workload={"rate_per_s": 4}, duration_s=300)
    assert a == b
    assert lab.simulate(a, seed=9).summary.equals(lab.simulate(b, seed=9).summary)
    assert not lab.simulate(a, seed=9).summary.equals(lab.simulate(a, seed=10).summary)


BAD = [
    ("unknown preset", ["run", "no-such-preset"], "no-such-preset"),
    ("missing file", ["run", "missing.yaml"], "missing.yaml"),
    ("syntax", ["validate", "{bad}"], "line"),
    ("unknown field", ["validate", "{extra}"], "colour"),
    ("wrong type", ["validate", "{type}"], "workload.rate_per_s"),
    ("negative rate", ["run", "mm1-teaching", "--set", "workload.rate_per_s=-3"], "workload.rate_per_s"),
    ("empty flow", ["run", "mm1-teaching", "--set", "flow=[]"], "flow"),
    ("unknown service in flow", ["run", "mm1-teaching", "--set", "flow=[ghost]"], "flow"),
    ("silly utilisation", ["run", "mm1-teaching", "--set", "services.worker.service_time.mean_ms=100000"], "services.worker"),
    ("bad set", ["run", "mm1-teaching", "--set", "nonsense"], "--set"),
    ("bad engine", ["run", "mm1-teaching", "--engine", "carrier-pigeon"], "engine"),
    ("stage 9", ["run", "mm1-teaching", "--set", "faults.load_shedding.stage=9"], "faults.load_shedding.stage"),
]


@pytest.mark.parametrize("what, args, needle", BAD, ids=[b[0] for b in BAD])
def test_bad_input_exits_2_with_one_line(tmp_path, what, args, needle):
    files = {
        "{bad}": "name: x\nflow: [a\nservices: {}\n",
        "{extra}": ISSUE_YAML + "colour: blue\n",
        "{type}": ISSUE_YAML.replace("rate_per_s: 8", "rate_per_s: fast"),
    }
    real = []
    for a in args:
        if a in files:
            p = tmp_path / "scenario.yaml"
            p.write_text(files[a])
            real.append(str(p))
        else:
            real.append(a)
    r = cli(*real, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert needle in lines[0]
    assert "Traceback" not in r.stderr


def test_out_writes_tables_that_read_back(tmp_path):
    r = cli("run", "crm-sync", "--set", "duration_s=600", "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    back = lab.RunResult.load(tmp_path / "run")
    assert list(back.summary["style"]) == ["orchestration", "events"]
    assert len(back.records) == back.summary["started"].sum() + (back.records.started_s < back.scenario.warmup_s).sum()
    assert back.scenario.name == "crm-sync"


def test_out_that_cannot_be_made_fails_before_the_run(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    r = cli("run", "mm1-teaching", "--out", str(blocker / "run"))
    assert r.returncode == 2 and r.stdout == ""  # refused before simulating, not after
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--out" in lines[0] and str(blocker / "run") in lines[0]


MISTAKES = [
    ("negative seed flag", ["run", "mm1-teaching", "--seed", "-1"], "--seed"),
    ("negative seed field", ["run", "mm1-teaching", "--set", "seed=-1"], "seed"),
    ("infinite duration", ["validate", "mm1-teaching", "--set", "duration_s=.inf"], "duration_s"),
    ("overflowing duration", ["run", "mm1-teaching", "--set", "duration_s=1e400"], "duration_s"),
    ("nan rate", ["run", "mm1-teaching", "--set", "workload.rate_per_s=nan"], "workload.rate_per_s"),
    ("absurd crash rate", ["validate", "mm1-teaching", "--set", "faults={crashes: [{service: worker, mtbf_s: 0.001, mttr_s: 0.001}]}"],
     "preset mm1-teaching: faults.crashes[0]"),
    ("branch in a branch", ["validate", "mm1-teaching", "--set", "flow=[worker, [worker, [worker]]]"], "flow: item 1"),
    ("short run keeps the long warm-up", ["run", "mm1-teaching", "--set", "duration_s=10"], "--set warmup_s="),
]


@pytest.mark.parametrize("what, args, needle", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_more_mistakes_exit_2_with_one_line_naming_the_field(what, args, needle):
    r = cli(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_workflows_hung_on_a_dead_service_are_counted_in_flight():
    # a 30 s hang outage with no timeout: the calls in it never return, and say so
    sc = lab.load_scenario(
        "mm1-teaching", duration_s=300, warmup_s=10,
        faults={"outages": [{"service": "worker", "start_s": 100, "duration_s": 30, "mode": "hang"}]},
    )  # fmt: skip
    row = lab.simulate(sc, seed=3).summary.iloc[0]
    assert row.in_flight > 0 and row.failed <= 5  # only calls caught queued when it died are reset
    assert row.started == row.completed + row.failed + row.in_flight
    # roughly the arrivals of the outage, plus the one caught in service (rate 8/s for 30 s)
    assert row.in_flight == pytest.approx(8 * 30, rel=0.25)
