"""Plots draw on a bare Figure (Agg), return the Axes, and carry the expected lines and labels."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from lab import plots
from lab.errors import LabError


def _ax():
    return Figure().add_subplot()


def _labels(ax):
    return [line.get_label() for line in ax.get_lines()]


def _colour(ax, label):
    line = next(ln for ln in ax.get_lines() if ln.get_label() == label)
    return to_hex(line.get_color())


@pytest.fixture
def records():
    rng = np.random.default_rng(1)
    rows = []
    for style, scale in (("orchestration", 1.0), ("events", 0.2)):
        for i in range(200):
            start = float(i)
            rows.append((style, i, start, start + rng.exponential(scale), "completed", "", start + 0.01))
    return pd.DataFrame(rows, columns=["style", "workflow_id", "started_s", "finished_s", "status", "reason", "response_s"])


def _load_table():
    """A sweep-like runs table: capacity 10/s for orchestration, 20/s for events, 2 replications."""
    rows = []
    for rep in range(2):
        for rate in (2.0, 5.0, 8.0, 12.0, 16.0, 24.0):
            for style, cap in (("orchestration", 10.0), ("events", 20.0)):
                tput = min(rate, cap) + 0.01 * rep
                lat = 0.05 / max(1e-3, 1 - min(rate / cap, 0.99))
                rows.append({"run_id": len(rows), "replication": rep, "workload.rate_per_s": rate, "style": style,
                             "throughput_per_s": tput, "latency_p95_s": lat, "error": None})
    return pd.DataFrame(rows)


def test_latency_cdf_and_staleness_still_work(records):
    ax = plots.plot_latency_cdf(records, ax=_ax())
    assert {"orchestration", "events"} <= set(_labels(ax))
    assert _colour(ax, "events") == plots.STYLE_COLOURS["events"]
    steps = pd.DataFrame({"style": ["orchestration"] * 3 + ["events"] * 3, "staleness_s": [10, 15, 20, 0.01, 0.02, 0.03]})
    ax = plots.plot_staleness(steps, ax=_ax())
    assert "staleness" in ax.get_xlabel() and "(s" in ax.get_xlabel() and "count" in ax.get_ylabel()


def test_latency_cdf_draws_immediate_answers_at_a_floor(records):
    recs = records.copy()
    recs.loc[recs["style"] == "events", "response_s"] = recs.loc[recs["style"] == "events", "started_s"]
    ax = plots.plot_latency_cdf(recs, ax=_ax(), column="response")
    ev = next(ln for ln in ax.get_lines() if ln.get_label().startswith("events (0 s"))
    assert min(ev.get_xdata()) == pytest.approx(0.005)  # half the smallest positive response (10 ms)
    assert "response time" in ax.get_xlabel()


def test_throughput_vs_load_draws_diagonal_and_knee():
    df = _load_table()
    ax = plots.plot_throughput_vs_load(df, ax=_ax())
    labels = _labels(ax)
    assert "served = offered" in labels and "orchestration" in labels and "events" in labels
    assert _colour(ax, "orchestration") == plots.STYLE_COLOURS["orchestration"]
    assert "per s" in ax.get_xlabel() and "per s" in ax.get_ylabel()
    # replications are averaged: one point per rate
    orch = next(ln for ln in ax.get_lines() if ln.get_label() == "orchestration")
    assert len(orch.get_xdata()) == 6
    knees = plots.saturation_knee(df).set_index("style")["knee_rate_per_s"]
    assert knees["orchestration"] == 8.0 and knees["events"] == 16.0
    # the knees are drawn as vertical lines at those rates
    verticals = {ln.get_xdata()[0] for ln in ax.get_lines() if ln.get_linestyle() == ":"}
    assert verticals == {8.0, 16.0}


def test_latency_vs_load_rises_past_the_knee():
    ax = plots.plot_latency_vs_load(_load_table(), ax=_ax())
    orch = next(ln for ln in ax.get_lines() if ln.get_label() == "orchestration")
    y = np.asarray(orch.get_ydata())
    assert y[-1] > 10 * y[0]
    assert ax.get_yscale() == "log" and "(s" in ax.get_ylabel()


def test_load_plots_accept_sweep_ci_tables():
    ci = pd.DataFrame({
        "point_id": [0, 0, 1, 1], "rate_per_s": [5.0, 5.0, 10.0, 10.0], "style": ["events"] * 4,
        "metric": ["throughput_per_s", "latency_p95_s"] * 2, "mean": [5.0, 0.1, 9.0, 0.5],
        "ci_low": [4.9, 0.09, 8.8, 0.4], "ci_high": [5.1, 0.11, 9.2, 0.6],
    })
    ax = plots.plot_throughput_vs_load(ci, ax=_ax())
    ev = next(ln for ln in ax.get_lines() if ln.get_label() == "events")
    assert list(ev.get_ydata()) == [5.0, 9.0]


def test_missing_rate_column_is_a_lab_error():
    with pytest.raises(LabError, match="rate_per_s"):
        plots.plot_throughput_vs_load(pd.DataFrame({"style": ["events"], "throughput_per_s": [1.0]}), ax=_ax())


def test_polling_tradeoff_has_push_reference_and_twin_axis():
    rows = []
    for ms in (1000, 5000, 30000):
        rows.append({"style": "orchestration", "propagation.poll_interval_ms": ms, "staleness_mean_s": ms / 2000,
                     "wasted_polls": 30000 / ms})
        rows.append({"style": "events", "propagation.poll_interval_ms": ms, "staleness_mean_s": 0.02, "wasted_polls": 0})
    ax = plots.plot_polling_tradeoff(pd.DataFrame(rows), ax=_ax())
    labels = _labels(ax)
    assert "orchestration: staleness" in labels
    push = [ln for ln in ax.get_lines() if ln.get_label().startswith("events (push)")]
    assert len(push) == 1 and push[0].get_ydata()[0] == pytest.approx(0.02)
    assert ax.get_xlabel() == "poll interval (s)"
    orch = next(ln for ln in ax.get_lines() if ln.get_label() == "orchestration: staleness")
    assert list(orch.get_xdata()) == [1.0, 5.0, 30.0]  # ms shown as seconds
    assert _labels(ax.right_ax) == ["orchestration: wasted polls"]
    assert "wasted polls" in ax.right_ax.get_ylabel()


def test_availability_vs_chain_with_theory_and_bands():
    rows = [{"style": s, "chain_length": n, "availability": (0.99 if s == "orchestration" else 0.999) ** n,
             "ci_low": 0.99**n - 0.002, "ci_high": 0.99**n + 0.002}
            for s in ("orchestration", "events") for n in range(1, 7)]
    ax = plots.plot_availability_vs_chain(pd.DataFrame(rows), ax=_ax(), service_availability=0.99)
    theory = next(ln for ln in ax.get_lines() if ln.get_label().startswith("theory"))
    assert np.allclose(theory.get_ydata(), 0.99 ** np.arange(1, 7))
    assert len(ax.collections) == 2  # one band per style
    assert "availability" in ax.get_ylabel() and "services" in ax.get_xlabel()


def _timeline():
    """A hand-built timeline: payment down 20-40 s, ledger degraded 20-30 s; failures while down."""
    rows = []
    for style in ("orchestration", "events"):
        for t in range(0, 60, 10):
            for svc in ("fraud", "payment", "ledger"):
                state = "up"
                if svc == "payment" and 20 <= t < 40:
                    state = "down"
                if svc == "ledger" and 20 <= t < 30:
                    state = "degraded"
                fail = 5.0 if (style == "orchestration" and svc == "payment" and state == "down") else 0.0
                lag = 8.0 if (style == "events" and svc == "payment" and state == "down") else 0.0
                rows.append({"style": style, "time_s": float(t), "service": svc, "state": state,
                             "queue": 1.0, "lag": lag, "failures": fail})
    return pd.DataFrame(rows)


def test_failure_propagation_picture():
    ax = plots.plot_failure_propagation(_timeline(), ax=_ax())
    assert [t.get_text() for t in ax.get_yticklabels()] == ["fraud", "payment", "ledger"]
    # state bands: one collection per (service, state present)
    faces = {to_hex(c.get_facecolor()[0]) for c in ax.collections}
    assert faces == {to_hex(plots.STATE_COLOURS[s]) for s in ("up", "down", "degraded")}
    right, outer = ax.right_ax, ax.backlog_ax
    assert "orchestration: failed steps" in _labels(right)  # no "*" rows: failed steps are drawn
    assert "events: backlog (queue + lag)" in _labels(outer)
    fails = next(ln for ln in right.get_lines() if ln.get_label() == "orchestration: failed steps")
    assert float(np.sum(fails.get_ydata())) == 10.0  # reconciles with the table
    backlog = next(ln for ln in outer.get_lines() if ln.get_label() == "events: backlog (queue + lag)")
    assert max(backlog.get_ydata()) == 3 + 8  # three queues of 1 plus the lag at payment
    assert ax.get_xlabel() == "time (s)"
    assert "(messages" in outer.get_ylabel() and "per 10 s" in right.get_ylabel()  # units on every axis


def test_failure_propagation_uses_system_rows_and_rebuckets():
    tl = _timeline()
    system = [{"style": s, "time_s": float(t), "service": "*", "state": "up", "queue": 0.0, "lag": 0.0, "failures": 0,
               "failed_workflows": 4 if (s == "orchestration" and 20 <= t < 40) else 0, "completed_workflows": 10}
              for s in ("orchestration", "events") for t in range(0, 60, 10)]
    # a broker exists only under events; it is down for one bucket
    broker = [{"style": "events", "time_s": float(t), "service": "broker", "state": "down" if t == 50 else "up",
               "queue": 0.0, "lag": 0.0, "failures": 0} for t in range(0, 60, 10)]
    full = pd.concat([tl, pd.DataFrame(system), pd.DataFrame(broker)], ignore_index=True)
    ax = plots.plot_failure_propagation(full, ax=_ax())
    assert [t.get_text() for t in ax.get_yticklabels()] == ["fraud", "payment", "ledger", "broker"]  # no "*"
    fails = next(ln for ln in ax.right_ax.get_lines() if ln.get_label() == "orchestration: failed workflows")
    assert float(np.sum(fails.get_ydata())) == 8.0
    coarse = plots.plot_failure_propagation(full, ax=_ax(), bucket_s=30)
    fails = next(ln for ln in coarse.right_ax.get_lines() if ln.get_label() == "orchestration: failed workflows")
    assert list(fails.get_ydata()) == [4.0, 4.0]  # 20-30 s in the first 30 s bucket, 30-40 s in the second
    down = [c for c in coarse.collections if to_hex(c.get_facecolor()[0]) == to_hex(plots.STATE_COLOURS["down"])]
    assert sum(len(c.get_paths()) for c in down) == 3  # payment in both buckets, broker in the second


def test_failure_propagation_accepts_fault_calendar_timeline():
    from lab.faults import fault_calendar

    cal = fault_calendar({"outages": [{"service": "payment", "start_s": 20, "duration_s": 20}]},
                         ["fraud", "payment"], 60.0, seed=1)
    tl = cal.timeline(["fraud", "payment"], bucket_s=10)
    ax = plots.plot_failure_propagation(tl, ax=_ax())
    assert [t.get_text() for t in ax.get_yticklabels()] == ["fraud", "payment"]
    down = [c for c in ax.collections if to_hex(c.get_facecolor()[0]) == to_hex(plots.STATE_COLOURS["down"])]
    assert len(down) == 1 and len(down[0].get_paths()) == 2  # two 10 s buckets down


def test_backlog_sums_entities_and_shades_outages():
    t = np.arange(0, 100, 10.0)
    rows = []
    for style in ("events", "orchestration"):
        for ent in ("a", "b"):
            for x in t:
                metric = "lag" if style == "events" else "queue"
                rows.append((style, x, metric, ent, 1.0 if x < 50 else 3.0))
        rows += [(style, x, "in_flight", "workflows", 100.0) for x in t]
    series = pd.DataFrame(rows, columns=["style", "time_s", "metric", "entity", "value"])
    ax = plots.plot_backlog(series, ax=_ax(), outages=[(20, 40)], time_unit="min")
    ev = next(ln for ln in ax.get_lines() if ln.get_label() == "events")
    assert max(ev.get_ydata()) == 6.0  # two entities, in_flight left out
    assert ev.get_xdata()[1] == pytest.approx(10 / 60)
    assert any(p.get_label() == "outage (no power)" for p in ax.patches)
    assert ax.get_xlabel() == "time (min)" and "consumer lag" in ax.get_ylabel()
    only_lag = plots.plot_backlog(series, ax=_ax(), metric="lag")
    assert _labels(only_lag) == ["events"]


def test_sweep_ci_bands():
    ci = pd.DataFrame({
        "point_id": [0, 1, 2] * 2, "workload.rate_per_s": [1.0, 2.0, 4.0] * 2,
        "style": ["orchestration"] * 3 + ["events"] * 3, "metric": "latency_p95_s",
        "mean": [0.1, 0.2, 0.8, 0.05, 0.06, 0.1], "ci_low": [0.09, 0.18, 0.7, 0.04, 0.05, 0.09],
        "ci_high": [0.11, 0.22, 0.9, 0.06, 0.07, 0.11], "level": 0.95,
    })
    ax = plots.plot_sweep_ci(ci, ax=_ax())
    assert set(_labels(ax)) == {"orchestration", "events"}
    assert len(ax.collections) == 2
    assert ax.get_xlabel() == "workload rate (per s)" and ax.get_ylabel() == "latency p95 (s)"
    assert "95% CI" in ax.get_legend().get_title().get_text()
    two = pd.concat([ci, ci.assign(metric="availability")])
    with pytest.raises(LabError, match="several metrics"):
        plots.plot_sweep_ci(two, ax=_ax())
    assert plots.plot_sweep_ci(two, ax=_ax(), metric="availability").get_ylabel() == "availability"


def test_summary_bars_one_bar_per_style():
    summary = pd.DataFrame({"style": ["orchestration", "events"], "latency_p95_s": [1.0, 0.1]})
    ax = plots.plot_summary_bars(summary, ax=_ax())
    assert [to_hex(p.get_facecolor()) for p in ax.patches] == [plots.STYLE_COLOURS["orchestration"],
                                                                plots.STYLE_COLOURS["events"]]
    assert ax.get_ylabel() == "latency p95 (s)"


def test_plots_never_show(monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "show", lambda *a, **k: pytest.fail("a plot called plt.show()"))
    plots.plot_sweep_ci(pd.DataFrame({"x": [1, 2], "style": "events", "mean": [1, 2], "ci_low": [0, 1],
                                      "ci_high": [2, 3]}), ax=_ax())
    plots.plot_failure_propagation(_timeline(), ax=_ax(), style="events")


def test_outages_and_stage_timeline():
    from lab.loadshedding import calendar_frame, outage_calendar

    cal = outage_calendar({"stage": 4, "areas": {"erp": 1, "portal": 9}}, ["erp", "portal", "gateway"], 86400.0)
    frame = calendar_frame(cal)
    ax = plots.plot_outages(frame, ax=_ax(), horizon_s=86400)
    sites = [t.get_text() for t in ax.get_yticklabels()]
    assert sites == ["erp", "portal"]  # the gateway is never shed: no rows
    total_h = sum(w for c in ax.collections for _, w in [(p.get_extents().x0, p.get_extents().width) for p in c.get_paths()])
    assert total_h == pytest.approx((frame["end_s"] - frame["start_s"]).sum() / 3600)
    tl = pd.DataFrame({"start": pd.to_datetime(["2023-06-01 00:00", "2023-06-01 16:00"]),
                       "finish": pd.to_datetime(["2023-06-01 10:00", "2023-06-02 00:00"]), "stage": [2, 4]})
    ax = plots.plot_stage_timeline(tl, ax=_ax())
    line = ax.get_lines()[0]
    assert list(line.get_ydata()) == [2, 2, 0, 0, 4, 4]
    assert ax.get_ylabel() == "load-shedding stage"


def test_claims_dot_chart_scales_each_row_and_names_the_verdict():
    table = pd.DataFrame([
        {"aspect": "a", "claim": "c", "measure": "m1", "orchestration": 15.0, "events": 0.03, "hybrid": np.nan,
         "verdict": "supported", "depends_on": "", "scenario": "s"},
        {"aspect": "b", "claim": "c", "measure": "m2", "orchestration": 80.0, "events": 40.0, "hybrid": 60.0,
         "verdict": "not supported", "depends_on": "", "scenario": "s"},
    ])
    ax = plots.plot_claims(table, ax=_ax())
    dots = {(ln.get_label(), float(ln.get_ydata()[0])): float(ln.get_xdata()[0]) for ln in ax.get_lines() if ln.get_marker() == "o"}
    assert dots[("orchestration", 1.0)] == 1.0 and dots[("events", 1.0)] == pytest.approx(0.002)  # row 1 on top
    assert dots[("events", 0.0)] == 0.5 and dots[("hybrid", 0.0)] == 0.75
    assert ("hybrid", 1.0) not in dots  # no figure, no dot
    assert [t.get_text() for t in ax.texts if t.get_text() in plots.VERDICT_COLOURS] == ["supported", "not supported"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b: m2", "a: m1"]
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["events", "hybrid", "orchestration"]
