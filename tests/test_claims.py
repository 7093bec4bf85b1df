"""The claims table: each figure against theory or capacity arithmetic, verdicts that follow
from the figures, and the ``lab claims`` command."""

from __future__ import annotations

import json
import math

import pytest

from lab.claims import COLUMNS, DEPENDS, NOT_SUPPORTED, SUPPORTED, check_claims
from lab.cli import main


@pytest.fixture(scope="module")
def table():
    return check_claims(seed=11, quick=True)


def _one(table, aspect, measure_starts):
    rows = table[(table.aspect == aspect) & table.measure.str.startswith(measure_starts)]
    assert len(rows) == 1, (aspect, measure_starts, table[["aspect", "measure"]])
    return rows.iloc[0]


def test_every_aspect_has_a_row_and_a_known_verdict(table):
    assert list(table.columns) == COLUMNS
    assert set(table.aspect) == {"real time", "resources", "coupling", "scalability", "load-shedding", "hybrid", "complexity"}
    assert set(table.verdict) <= {SUPPORTED, NOT_SUPPORTED, DEPENDS}


def test_polling_staleness_is_half_the_interval_and_push_is_fresh(table):
    r = _one(table, "real time", "mean staleness")
    assert r.orchestration == pytest.approx(15.0, rel=0.15)  # T/2 with T = 30 s
    assert r.events < 0.1
    assert r.verdict == SUPPORTED


def test_wasted_share_follows_exp_minus_rate_times_interval(table):
    slow = _one(table, "resources", "share of wasted polls, 0.005")
    fast = _one(table, "resources", "share of wasted polls, 0.2")
    assert slow.orchestration == pytest.approx(math.exp(-0.005 * 30), abs=0.08)
    assert fast.orchestration == pytest.approx(math.exp(-0.2 * 30), abs=0.02)
    assert slow.verdict == DEPENDS  # wasted at a slow change rate, useful at a fast one
    load = _one(table, "resources", "requests/s on the CRM")
    assert load.orchestration == pytest.approx(4 / 30, rel=0.1)  # four branches, one poll each per 30 s


def test_an_outage_costs_orchestration_its_share_and_events_only_time(table):
    avail = _one(table, "coupling", "availability")
    assert avail.orchestration == pytest.approx(1 - 60 / 540, abs=0.03)
    assert avail.events == 1.0
    p99 = _one(table, "coupling", "p99 latency")
    assert p99.events > 30 > p99.orchestration  # the backlog waited out most of the minute


def test_throughput_is_capacity_not_style_until_a_limit_or_overload(table):
    free = _one(table, "scalability", "throughput at 80/s offered (capacity")
    assert free.orchestration == pytest.approx(80, rel=0.05) and free.events == pytest.approx(80, rel=0.05)
    assert free.verdict == NOT_SUPPORTED
    capped = _one(table, "scalability", "throughput at 80/s offered, at most 8")
    assert capped.orchestration < 0.9 * capped.events
    over = _one(table, "scalability", "throughput at 120/s")
    assert over.events == pytest.approx(100, rel=0.1)  # two workers of 20 ms: about 100/s
    assert over.orchestration < over.events


def test_load_shedding_and_hybrid_directions(table):
    ls = _one(table, "load-shedding", "availability")
    assert ls.orchestration < ls.events - 0.05 and ls.events > 0.95
    wait = _one(table, "hybrid", "the caller's mean wait")
    assert wait.events < wait.hybrid < wait.orchestration


def test_lab_claims_json_is_only_json(capsys):
    assert main(["claims", "--aspect", "complexity", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["aspect"] for r in rows] == ["complexity"]
    assert rows[0]["events"] > rows[0]["orchestration"]


def test_lab_claims_unknown_aspect_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["claims", "--aspect", "vibes"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "vibes" in err[0]
