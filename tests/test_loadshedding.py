"""Load-shedding rules, rotation, replay, backup power and the scenario section."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from lab import loadshedding as L
from lab.errors import LabError
from lab.loadshedding import AREAS, LoadShedding, outage_calendar, total_s

DAY = 86400.0
H = 3600.0
SITES = [f"s{a}" for a in AREAS]


def _all_areas(**kw) -> LoadShedding:
    return LoadShedding(areas={f"s{a}": a for a in AREAS}, **kw)


def _full_outages(stage: int, area: int, days: float = 4, buffer_s: float = 0.0) -> list[tuple[float, float]]:
    """Outages of ``area`` that *start* in [0, days), from an unclipped calendar (no edge fragments)."""
    t0 = L.ROTATION_EPOCH - dt.timedelta(days=1)  # start a day early so that nothing is cut at 0
    out = L.area_outages([(0.0, (days + 2) * DAY, stage)], area, t0=t0, buffer_s=buffer_s)
    return [(s - DAY, e - DAY) for s, e in out if DAY <= s < (days + 1) * DAY]


@pytest.mark.parametrize("buffer, expected_h", [(True, 30.0), (False, 24.0)])
def test_stage_4_over_4_days_takes_each_area_off_a_quarter_of_the_time(buffer, expected_h):
    ls = _all_areas(stage=4, switching_buffer=buffer, start_at="2023-03-01T00:00")
    cal = outage_calendar(ls, SITES, 4 * DAY, seed=1)
    for site in SITES:
        assert total_s(cal[site]) / H == pytest.approx(expected_h)  # 12 x 2 h (+ 12 x 30 min) of 96 h
    assert expected_h / 96 == pytest.approx(0.25 if not buffer else 0.3125)


def test_stage_8_over_4_days_takes_each_area_off_half_the_time():
    ls = _all_areas(stage=8, switching_buffer=False, start_at="2023-03-01T10:00")
    cal = outage_calendar(ls, SITES, 4 * DAY)
    for site in SITES:
        assert total_s(cal[site]) / H == pytest.approx(48.0)  # 12 x 4 h of 96 h
    buffered = outage_calendar(_all_areas(stage=8), SITES, 4 * DAY)
    for site in SITES:
        assert total_s(buffered[site]) / H == pytest.approx(54.0)  # 12 x 4 h 30


@pytest.mark.parametrize("stage", range(1, 9))
def test_slot_counts_and_lengths_follow_the_published_rules(stage):
    expected = {1: (3, 0), 2: (6, 0), 3: (9, 0), 4: (12, 0), 5: (9, 3), 6: (6, 6), 7: (3, 9), 8: (0, 12)}[stage]
    for area in AREAS:
        out = _full_outages(stage, area)
        lengths = [round((e - s) / H, 6) for s, e in out]
        assert (lengths.count(2.0), lengths.count(4.0)) == expected
        assert len(lengths) == sum(expected)
        # slots start at even hours
        assert all(s % (2 * H) == 0 for s, _ in out)


@pytest.mark.parametrize("stage", range(1, 5))
def test_four_hour_tables_give_3n_slots_in_8_days(stage):
    ls = _all_areas(stage=stage, slot_hours=4, switching_buffer=False, start_at="2023-03-01")
    cal = outage_calendar(ls, SITES, 8 * DAY)
    for site in SITES:
        assert total_s(cal[site]) / H == pytest.approx(3 * stage * 4)  # 3N x 4 h in 192 h
    for area in (1, 7, 16):
        t0 = L.ROTATION_EPOCH - dt.timedelta(days=1)
        out = L.area_outages([(0.0, 10 * DAY, stage)], area, t0=t0, buffer_s=0.0, slot_s=4 * H)
        full = [(s, e) for s, e in out if DAY <= s < 9 * DAY]
        assert len(full) == 3 * stage and all(e - s == 4 * H for s, e in full)


def test_four_hour_tables_stop_at_stage_4():
    with pytest.raises(LabError, match="stages 1-4 only"):
        L.parse_load_shedding({"stage": 5, "slot_hours": 4})
    # a replayed window that reaches stage 6 (2023-06-01 16:00-22:00, national) cannot use them
    ls = L.parse_load_shedding({"replay": {"start": "2023-06-01", "days": 2}, "slot_hours": 4, "areas": {"x": 1}})
    with pytest.raises(LabError, match="stages 1-4 only"):
        outage_calendar(ls, ["x"], 2 * DAY)


@pytest.mark.parametrize("stage", range(0, 9))
def test_exactly_stage_areas_are_off_in_every_slot(stage):
    for slot in range(-20, 60):
        assert len(L.areas_off(stage, slot)) == stage


@pytest.mark.parametrize("stage", range(1, 8))
def test_stages_are_nested(stage):
    for area in AREAS:
        for buffer_s in (0.0, 1800.0):
            lower = _full_outages(stage, area, buffer_s=buffer_s)
            higher = L.area_outages([(-DAY, 5 * DAY, stage + 1)], area, buffer_s=buffer_s)
            for s, e in lower:
                assert any(hs <= s and e <= he for hs, he in higher), (stage, area, s, e)


def test_rotation_shifts_an_areas_slots_through_the_day():
    # area 1's stage-1 slots in 4 days start at different hours of the day (00:00, 08:00, 16:00)
    starts = sorted({(s % DAY) / H for s, _ in _full_outages(1, 1)})
    assert starts == [0.0, 8.0, 16.0]
    assert L.areas_off(1, 0) == [1] and L.areas_off(1, 1) == [2] and L.areas_off(1, 12) == [13]


def test_day_and_night_stages():
    # stage 1 05:00-16:00, stage 3 16:00-05:00: per day 11 h x 1 + 13 h x 3 = 50 stage-hours,
    # shared over 16 areas (no buffer): the sum over areas of off-hours is 50 per day.
    ls = _all_areas(day_stage=1, night_stage=3, switching_buffer=False, start_at="2023-06-01")
    cal = outage_calendar(ls, SITES, 4 * DAY)
    assert sum(total_s(v) for v in cal.values()) / H == pytest.approx(4 * 50)
    # nobody beyond the stage-1 area is off at noon; three areas are off at 20:00
    at = lambda t: sum(any(s <= t < e for s, e in v) for v in cal.values())  # noqa: E731
    assert at(12.5 * H) == 1 and at(20.5 * H) == 3


def test_replayed_week_gives_that_weeks_stage_hours():
    start, end = "2023-06-08", "2023-06-15"
    ls = _all_areas(replay={"start": start, "days": 7, "place": "Johannesburg"}, switching_buffer=False)
    cal = outage_calendar(ls, SITES, 7 * DAY)
    area_hours = sum(total_s(v) for v in cal.values()) / H
    # independent sum from the cleaned record: stage x hours of every interval in the window
    tl = L.eskom.clean_record()
    tl = tl[tl.scope == "national"]
    lo, hi = pd.Timestamp(start), pd.Timestamp(end)
    s = tl.start.clip(lower=lo)
    f = tl.finish.clip(upper=hi)
    keep = f > s
    expected = float((((f - s).dt.total_seconds() / H) * tl.stage)[keep].sum())
    assert expected == 206.0  # 22 h at stage 1, 40 h at stage 3, 16 h at stage 4
    assert area_hours == pytest.approx(expected)


def test_compress_plays_days_in_scenario_minutes():
    ls = LoadShedding(stage=4, compress=1440, areas={"db": 1}, start_at="2023-03-01")
    cal = outage_calendar(ls, ["db"], 4 * 60.0)  # 4 scenario minutes = 4 days
    assert total_s(cal["db"]) == pytest.approx(30 * H / 1440)


def test_battery_covers_the_first_slot_and_later_slots_bite():
    backup = {"kind": "battery", "runtime_h": 6, "recharge_h": 18}
    ls = LoadShedding(stage=6, start_at="2023-03-01", areas={"tower": {"area": 3, "backup": backup}})
    grid = outage_calendar(ls, ["tower"], 4 * DAY, grid_only=True)["tower"]
    down = outage_calendar(ls, ["tower"], 4 * DAY)["tower"]
    first = grid[0]
    assert not any(s < first[1] and e > first[0] for s, e in down)  # first slot fully covered
    assert total_s(down) > 0
    first_half = total_s(L._clip(down, 0, 2 * DAY))
    second_half = total_s(L._clip(down, 2 * DAY, 4 * DAY))
    assert second_half > first_half
    assert total_s(down) < total_s(grid)
    # the down time lies inside grid outages
    assert all(any(gs <= s and e <= ge for gs, ge in grid) for s, e in down)


def test_battery_keeps_up_at_low_stage_but_not_at_high_stage():
    def down_h(stage):
        ls = LoadShedding(stage=stage, areas={"tower": {"area": 5, "backup": "cell_tower"}})
        return total_s(outage_calendar(ls, ["tower"], 8 * DAY, seed=7)["tower"]) / H

    assert down_h(2) == 0.0
    assert down_h(8) > down_h(6) > 0


def test_cell_tower_at_stage_4_stops_recovering():
    # worst cell tower (6 h runtime, 18 h recharge): at stage 4 each 2 h 30 outage uses 0.42 of
    # the charge and the 5 h 30 between outages gives back only 0.31, so later slots bite.
    backup = {"kind": "battery", "runtime_h": 6, "recharge_h": 18}
    ls = LoadShedding(stage=4, start_at="2023-03-01", areas={"tower": {"area": 11, "backup": backup}})
    down = outage_calendar(ls, ["tower"], 4 * DAY)["tower"]
    assert total_s(L._clip(down, 0, DAY)) == 0.0
    assert total_s(L._clip(down, 2 * DAY, 4 * DAY)) > 2 * H


def test_slots_start_at_even_hours_sast_whatever_the_start_time():
    ls = LoadShedding(stage=3, switching_buffer=False, start_at="2023-03-01T09:30", areas={"x": 6})
    out = outage_calendar(ls, ["x"], 2 * DAY)["x"]
    assert out and all((s + 9.5 * H) % (2 * H) == 0 for s, _ in out if s > 0)


def test_battery_arithmetic_by_hand():
    # 3 h outages every 8 h, 4 h battery, 10 h recharge: 3 h used, 5 h up recharges 0.5 ->
    # charge 1 -> 0.25 -> 0.75 -> 0.0 (down 0 h, then 0.75*4 = 3 h covers the second exactly) ...
    outages = [(0.0, 3 * H), (8 * H, 11 * H), (16 * H, 19 * H)]
    down = L.battery_down(outages, 4 * H, 10 * H)
    # q: 1 -> 0.25 ; +0.5 = 0.75 -> covers 3 h exactly -> 0 ; +0.5 = 0.5 -> covers 2 h, down 1 h
    assert down == [(18 * H, 19 * H)]


def test_generator_delay_and_fuel():
    outages = [(0.0, 2 * H), (10 * H, 14 * H)]
    assert L.generator_down(outages, 120) == [(0.0, 120.0), (10 * H, 10 * H + 120)]
    # 3 h of fuel: the first outage uses 2 h - 2 min, the second runs out after 1 h 2 min
    down = L.generator_down(outages, 120, fuel_s=3 * H)
    assert down == [(0.0, 120.0), (10 * H, 10 * H + 120), (10 * H + 120 + 3 * H - (2 * H - 120), 14 * H)]


def test_same_seed_same_calendar_and_ranges_drawn_per_site():
    ls = LoadShedding(stage=6, areas={"a": {"area": 2, "backup": "cell_tower"}, "b": {"area": 2, "backup": "cell_tower"}})
    one = outage_calendar(ls, ["a", "b", "c"], 4 * DAY, seed=11)
    assert one == outage_calendar(ls, ["a", "b", "c"], 4 * DAY, seed=11)
    assert one["c"] == []
    assert one["a"] != one["b"]  # same area, different draws of runtime/recharge
    assert any(outage_calendar(ls, ["a", "b"], 4 * DAY, seed=s)["a"] != one["a"] for s in (12, 13, 14))


def test_start_at_time_zone_and_rotation_are_calendar_bound():
    # the same instant given in UTC and in SAST gives the same calendar
    a = LoadShedding(stage=3, start_at="2023-03-01T06:00:00+02:00", areas={"x": 4})
    b = LoadShedding(stage=3, start_at="2023-03-01T04:00:00Z", areas={"x": 4})
    c = LoadShedding(stage=3, start_at=dt.datetime(2023, 3, 1, 6), areas={"x": 4})
    assert a.t0 == b.t0 == c.t0
    assert outage_calendar(a, ["x"], DAY) == outage_calendar(b, ["x"], DAY)


@pytest.mark.parametrize(
    "data, field, message",
    [
        ({"stage": 9}, "faults.load_shedding.stage", "stage 9 does not exist"),
        ({"stage": -1}, "faults.load_shedding.stage", "stage -1 does not exist"),
        ({"day_stage": 2, "night_stage": 9}, "faults.load_shedding.night_stage", "stage 9"),
        ({"stage": 2, "areas": {"db": 17}}, "faults.load_shedding.areas.db.area", "area 17 does not exist"),
        ({"stage": 2, "areas": {"db": {"area": 0}}}, "faults.load_shedding.areas.db.area", "area 0 does not exist"),
        (
            {"stage": 2, "areas": {"db": {"area": 1, "backup": {"kind": "battery", "runtime_h": -2, "recharge_h": 4}}}},
            "faults.load_shedding.areas.db.backup.runtime_h",
            "must be positive",
        ),
        (
            {"stage": 2, "areas": {"db": {"area": 1, "backup": {"kind": "generator", "start_delay_min": -5}}}},
            "faults.load_shedding.areas.db.backup.start_delay_min",
            "non-negative",
        ),
        ({"stage": 2, "compress": -1}, "faults.load_shedding.compress", "greater than 0"),
        ({"stage": 2, "buffer_min": -30}, "faults.load_shedding.buffer_min", "greater than or equal to 0"),
        ({"replay": {"start": "2023-06-08", "days": -7}}, "faults.load_shedding.replay.days", "greater than 0"),
        ({"replay": {"start": "2019-01-01", "days": 7}}, "faults.load_shedding.replay", "outside the record"),
        ({"replay": {"start": "2023-06-08", "place": "Atlantis"}}, "faults.load_shedding.replay.place", "unknown place"),
        ({}, "faults.load_shedding", "exactly one of"),
        ({"stage": 2, "replay": {"start": "2023-06-08"}}, "faults.load_shedding", "exactly one of"),
        ({"stage": 2, "stagee": 3}, "faults.load_shedding.stagee", "unknown field"),
        ({"stage": 2, "areas": {"db": {"area": 1, "backup": {"kind": "battery"}}}}, "faults.load_shedding.areas.db.backup", "needs runtime_h"),
    ],
)
def test_clear_errors(data, field, message):
    with pytest.raises(LabError) as info:
        L.parse_load_shedding(data, source="scenario.yaml")
    assert info.value.field == field
    assert message in info.value.message
    assert info.value.source == "scenario.yaml"


def test_unknown_site_and_negative_horizon():
    ls = LoadShedding(stage=2, areas={"paymnts": 1})
    with pytest.raises(LabError, match="unknown site 'paymnts'") as info:
        outage_calendar(ls, ["payments", "broker"], DAY)
    assert info.value.field == "faults.load_shedding.areas.paymnts"
    with pytest.raises(LabError, match="negative"):
        outage_calendar(LoadShedding(stage=2), [], -1.0)


def test_calendar_frame_is_tidy():
    ls = LoadShedding(stage=2, areas={"db": 1, "broker": {"area": "area 9"}})
    df = L.calendar_frame(outage_calendar(ls, ["db", "broker", "api"], DAY))
    assert list(df.columns) == ["site", "start_s", "end_s"]
    assert set(df.site) == {"db", "broker"}
    assert (df.end_s > df.start_s).all()
