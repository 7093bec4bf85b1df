"""The cleaned load-shedding record (line numbers below are lines of data/eskom_stage_record.csv, header = 1): hand-checked intervals, invariants, and the press totals."""

from __future__ import annotations

import pandas as pd
import pytest

from lab import eskom
from lab.errors import LabError

T = pd.Timestamp


def _rows(scope: str, lo: str, hi: str) -> list[tuple[str, str, int]]:
    tl = eskom.stage_timeline(scope, lo, hi)
    return [(f"{s:%Y-%m-%d %H:%M}", f"{f:%Y-%m-%d %H:%M}", int(st)) for s, f, st in zip(tl.start, tl.finish, tl.stage, strict=True)]


def test_later_record_wins_and_same_revision_ties_go_to_the_later_row():
    # raw rows (data/eskom_stage_record.csv, lines 178-181):
    # coct_only,2022-12-16 05:00:00,2022-12-16 21:59:00,3,...,2022-12-14T22:34:00+02:00
    # coct_only,2022-12-16 06:00:00,2022-12-16 21:59:00,2,...,2022-12-14T22:34:00+02:00   (same revision, later row)
    # coct_only,2022-12-16 09:07:00,2022-12-16 21:59:00,5,...,2022-12-17T11:43:28+02:00   (recorded later)
    # coct_only,2022-12-16 22:00:00,2022-12-17 04:59:00,6,...,2022-12-17T11:43:28+02:00
    assert _rows("coct_only", "2022-12-16 05:00", "2022-12-17 05:00") == [
        ("2022-12-16 05:00", "2022-12-16 06:00", 3),
        ("2022-12-16 06:00", "2022-12-16 09:07", 2),
        ("2022-12-16 09:07", "2022-12-16 22:00", 5),
        ("2022-12-16 22:00", "2022-12-17 05:00", 6),
    ]


def test_national_and_excl_coct_are_one_timeline_and_stage_0_suspends():
    # raw rows (lines 1405-1407 and 1865-1871):
    # national_excl_coct,2023-06-02 05:00:00,2023-06-03 05:00:00,4,...,2023-06-01T19:52:47+02:00
    # national_excl_coct,2023-06-02 16:00:00,2023-06-03 05:00:00,6,...,2023-05-31T17:44:02+02:00  (older: loses)
    # national_excl_coct,2023-06-03 05:00:00,2023-06-03 16:00:00,2,...,2023-06-01T19:52:47+02:00
    # national,2023-06-03 11:40:00,2023-06-03 16:00:00,0,...,2023-06-03T15:47:53+02:00           (suspended)
    # national_excl_coct,2023-06-03 11:40:00,2023-06-03 16:00:00,0,...,2023-06-03T16:01:21+02:00
    # national,2023-06-03 16:00:00,2023-06-04 05:00:00,4,...,2023-06-03T15:47:53+02:00
    # national_excl_coct,2023-06-04 05:00:00,2023-06-04 16:00:00,0,...,2023-06-03T16:01:21+02:00
    # national_excl_coct,2023-06-04 16:00:00,2023-06-05 05:00:00,2,...,2023-06-04T16:19:06+02:00
    assert _rows("national", "2023-06-02 05:00", "2023-06-05 05:00") == [
        ("2023-06-02 05:00", "2023-06-03 05:00", 4),
        ("2023-06-03 05:00", "2023-06-03 11:40", 2),
        ("2023-06-03 16:00", "2023-06-04 05:00", 4),
        ("2023-06-04 16:00", "2023-06-05 05:00", 2),
    ]
    zero = eskom.clean_record(keep_zero=True)
    z = zero[(zero.scope == "national") & (zero.start == T("2023-06-03 11:40"))]
    assert list(z.stage) == [0] and list(z.finish) == [T("2023-06-03 16:00")]


def test_overnight_rows_with_finish_before_start_end_next_day():
    # raw rows (lines 90-92), finish printed on the start's date:
    # coct_only,2022-11-01 22:00:00,2022-11-01 04:59:00,2,...,2022-11-01T21:02:35+02:00
    # coct_only,2022-11-02 22:00:00,2022-11-02 04:59:00,2,...
    # coct_only,2022-11-03 22:00:00,2022-11-03 04:59:00,2,...
    assert _rows("coct_only", "2022-11-01 12:00", "2022-11-04 12:00") == [
        ("2022-11-01 22:00", "2022-11-02 05:00", 2),
        ("2022-11-02 22:00", "2022-11-03 05:00", 2),
        ("2022-11-03 22:00", "2022-11-04 05:00", 2),
    ]


def test_second_week_of_june_2023_johannesburg():
    # raw rows (national_excl_coct, lines 1878-1886): 06-08 16:00-00:00 st3 ; 06-09 16:00-00:00 st3 ;
    # 06-10 05:00-16:00 st1, 16:00-00:00 st4 ; 06-11 05:00-16:00 st1, 16:00-00:00 st4 ;
    # 06-12, 06-13, 06-14 16:00-00:00 st3
    tl = eskom.stage_timeline("Johannesburg", "2023-06-08", "2023-06-15")
    assert set(tl.scope) == {"national"}
    assert eskom.hours_by_stage(tl)[[1, 3, 4]].tolist() == [22.0, 40.0, 16.0]
    assert eskom.stage_hours(tl) == 22 * 1 + 40 * 3 + 16 * 4
    assert eskom.stage_at(tl, "2023-06-10 17:00") == 4
    assert eskom.stage_at(tl, "2023-06-10 03:00") == 0


def test_iso_t_format_rows_are_read():
    # raw row (line 557): coct_only,2023-05-05T22:00:00,2023-05-06T05:00:00,5,...,2023-05-06T07:54:05+02:00
    tl = eskom.stage_timeline("coct_only", "2023-05-05 22:00", "2023-05-06 05:00")
    assert eskom.stage_at(tl, "2023-05-06 01:00") == 5


def test_cleaned_timelines_do_not_overlap_and_have_valid_stages():
    tl = eskom.clean_record()
    assert set(tl.scope) == {"national", "coct_only"}
    assert tl.stage.between(1, 8).all()
    for _, g in tl.groupby("scope"):
        g = g.sort_values("start")
        assert (g.finish > g.start).all()
        assert (g.start.values[1:] >= g.finish.values[:-1]).all()


def test_2023_totals_are_of_the_order_of_the_press_figures():
    # Eskom: load-shedding on 300 of the first 312 days of 2023; ~6,200 hours by 8 November 2023.
    tl = eskom.stage_timeline("national", "2023-01-01", "2023-11-09")
    hours = eskom.shedding_hours(tl)
    assert 5000 < hours < 7500
    days = eskom.days_with_shedding(tl, "2023-01-01", "2023-11-09")
    assert 280 <= days <= 312


def test_cape_town_falls_back_to_national():
    # the coct_only record ends in May 2024; the national one runs to May 2025
    late = eskom.stage_timeline("Cape Town", "2024-06-01", "2025-06-01")
    nat = eskom.stage_timeline("national", "2024-06-01", "2025-06-01")
    assert eskom.stage_hours(late) == eskom.stage_hours(nat) > 0
    # where the city has its own stage, it is used
    ct = eskom.stage_timeline("Cape Town", "2022-12-16 05:00", "2022-12-17 05:00")
    assert eskom.stage_at(ct, "2022-12-16 10:00") == 5


def test_unknown_place_is_a_lab_error():
    with pytest.raises(LabError, match="unknown place"):
        eskom.stage_timeline("Atlantis")
    with pytest.raises(LabError, match="not after"):
        eskom.stage_timeline("national", "2023-06-15", "2023-06-08")
