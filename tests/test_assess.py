"""``lab assess``: a scenario through its four questions, each figure against the arithmetic
of its experiment, verdicts that follow from the figures, and the command."""

from __future__ import annotations

import json

import pytest

import lab
from lab.assess import COLUMNS, OUTAGE_SHARE, assess, verdicts
from lab.cli import main

SCENARIO = {
    "name": "assess-chain", "duration_s": 600, "warmup_s": 60, "seed": 5,
    "workload": {"rate_per_s": 10},
    "network": {"latency_ms": 1},
    "services": {
        "a": {"service_time": {"dist": "exponential", "mean_ms": 20}, "concurrency": 1},
        "b": {"service_time": {"dist": "exponential", "mean_ms": 20}, "concurrency": 1},
    },
    "flow": ["a", "b"],
    "style": ["orchestration", "events"],
    "broker": {"retention_s": 86400},
    "orchestration": {"timeout_ms": 1000},
}  # fmt: skip


@pytest.fixture(scope="module")
def table():
    return assess(lab.load_scenario(SCENARIO))


def _value(table, question, case, style, metric):
    t = table[(table.question == question) & (table.case == case) & (table["style"] == style) & (table.metric == metric)]
    assert len(t) == 1, (question, case, style, metric)
    return float(t.value.iloc[0])


def test_every_question_every_style_every_case(table):
    assert list(table.columns) == COLUMNS
    assert list(dict.fromkeys(table.question)) == ["everyday", "headroom", "one service down", "load-shedding"]
    assert set(table["style"]) == {"orchestration", "events"}
    assert set(table[table.question == "one service down"].case) == {"a down", "b down"}
    assert set(table[table.question == "headroom"].case) == {"rate x1.5", "rate x2"}


def test_an_outage_of_a_tenth_costs_orchestration_a_tenth_and_events_nothing(table):
    for case in ("a down", "b down"):
        assert 1 - _value(table, "one service down", case, "orchestration", "availability") == pytest.approx(OUTAGE_SHARE, abs=0.03)
        assert _value(table, "one service down", case, "events", "availability") == 1.0
        assert _value(table, "one service down", case, "events", "lost") == 0
        # events pay in time: the backlog of the outage (54 s of arrivals) drains after it
        assert _value(table, "one service down", case, "events", "latency_p99_s") > 10


def test_headroom_carries_everything_at_low_utilisation(table):
    # utilisation 0.2 per service: 2x is still 0.4, both styles carry the whole load
    for case in ("rate x1.5", "rate x2"):
        for style in ("orchestration", "events"):
            assert _value(table, "headroom", case, style, "carried") == pytest.approx(1.0, abs=0.03)


def test_load_shedding_on_one_site_costs_the_dark_share(table):
    from lab.faults import fault_calendar

    case = "stage 4 day, one site (area 1)"
    sc = lab.load_scenario(SCENARIO)
    ls = {"stage": 4, "compress": 86400 / sc.duration_s, "areas": {"a": 1, "b": 1}}
    cal = fault_calendar({"load_shedding": ls}, ["a", "b"], sc.horizon_s, sc.seed)
    dark = cal.down_fraction("a", sc.warmup_s, sc.duration_s)
    assert 0.15 < dark < 0.45  # stage 4 averages 31% of a day (12 slots of 2 h 30 in 4 days)
    # calls into the dark hang until their 1 s timeout: orchestration loses the dark share
    assert 1 - _value(table, "load-shedding", case, "orchestration", "availability") == pytest.approx(dark, abs=0.04)
    assert _value(table, "load-shedding", case, "events", "lost") == 0
    assert _value(table, "load-shedding", case, "events", "availability") > 0.99


def test_verdicts_follow_the_figures(table):
    v = verdicts(table).set_index("question")
    assert v.loc["one service down", "best"] == "events" and not v.loc["one service down", "tie"]
    assert v.loc["headroom", "tie"]  # both carry it all
    assert v.loc["everyday", "best"] == "orchestration"  # no broker hops on the way


def test_same_seed_same_table(table):
    again = assess(lab.load_scenario(SCENARIO), questions=["one service down"])
    mine = table[table.question == "one service down"].reset_index(drop=True)
    assert again.equals(mine)


def test_lab_assess_json_and_a_bad_question(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(lab.load_scenario(SCENARIO).to_yaml())
    assert main(["assess", str(path), "--question", "one service down", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["question"] for r in rows} == {"one service down"}
    with pytest.raises(SystemExit) as exc:
        main(["assess", str(path), "--question", "vibes"])
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_change_propagation_is_judged_on_staleness():
    t = assess(lab.load_scenario("crm-sync", duration_s=900), questions=["everyday"])
    v = verdicts(t).set_index("question").loc["everyday"]
    assert v["measure"].startswith("staleness_mean_s") and v["best"] == "events"
    assert v["runner_up_value"] == pytest.approx(15.0, rel=0.15)  # polling every 30 s: T/2
