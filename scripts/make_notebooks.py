"""Write the lab's notebooks (notebooks/*.ipynb) and the workshop notebooks (workshop/*.ipynb).

The notebooks are thin: they import from ``lab``, set a few parameters, call, plot and explain.
This script is their source of truth; edit it and re-run::

    .venv/bin/python scripts/make_notebooks.py            # writes notebooks/ and workshop/
    .venv/bin/python scripts/strip_solutions.py           # writes workshop/participant/

The written notebooks carry no outputs.  Workshop cells tagged ``solution`` are removed by
``scripts/strip_solutions.py`` for the participants' copies.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]

SETUP = '''\
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

import lab
from lab import plots

# the repository root (for data/ and examples/), wherever the notebook runs from
ROOT = next((p for p in [Path.cwd(), *Path.cwd().parents] if (p / "pyproject.toml").exists()), Path.cwd())
pd.set_option("display.precision", 4)
pd.set_option("display.width", 160)'''

SUMMARY_COLS = '''\
COLS = ["style", "started", "completed", "failed", "throughput_per_s", "latency_p50_s", "latency_p95_s",
        "latency_p99_s", "availability", "polls", "wasted_polls", "staleness_mean_s", "max_backlog"]'''

def md(text: str, *tags: str):
    # every line flush left (the texts are indented in this file, and pieces are joined before
    # dedent could see them); none of the markdown here relies on indentation
    cell = new_markdown_cell("\n".join(line.strip() for line in text.splitlines()).strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def code(text: str, *tags: str):
    cell = new_code_cell(textwrap.dedent(text).strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def notebook(cells) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    for i, cell in enumerate(nb.cells):  # stable ids: regenerating gives the same file
        cell.id = f"cell-{i:02d}"
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


# ------------------------------------------------------------------------------------------------
# notebooks/
# ------------------------------------------------------------------------------------------------


def nb_00_quickstart():
    return notebook([
        md("""
        # 00 Quickstart: one preset, two integration styles, one figure

        The lab runs the same business work under two integration styles and compares them on
        common random numbers (the same customers, the same service times, the same failures):

        * **API orchestration**: a central controller calls each service synchronously, in order;
        * **event-driven integration**: each service reacts to the previous one's event on a broker.

        Here: a card payment at a South African fintech (`fintech-hybrid`): fraud scoring, the
        payment switch and the ledger, then compliance logging and fraud alerts. Two simulated
        minutes keep this notebook quick; the preset itself runs ten.
        """),
        code(SETUP),
        code("""
        PRESET = "fintech-hybrid"
        DURATION_S = 120          # simulated seconds (the preset: 600)
        WARMUP_S = 20             # measurements start after the warm-up
        STYLES = ["orchestration", "events"]
        SEED = 2026

        scenario = lab.load_scenario(PRESET, duration_s=DURATION_S, warmup_s=WARMUP_S, style=STYLES)
        print(scenario.description)
        print("offered utilisation per service:", {k: round(v, 2) for k, v in scenario.offered_utilisation().items()})
        """),
        code("""
        result = lab.simulate(scenario, seed=SEED)
        """ + SUMMARY_COLS + """
        result.summary[COLS + ["response_p95_s"]]
        """),
        md("""
        `result.summary` has one row per style. `latency_*` is **end to end** (arrival until the
        last service is done); `response_*` is what the **caller** waits for. Under orchestration
        the caller waits for everything; under events the caller is answered at once and the work
        carries on behind the broker.
        """),
        code("""
        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
        plots.plot_latency_cdf(result.records, ax=axes[0], title="end-to-end latency")
        plots.plot_latency_cdf(result.records, ax=axes[1], column="response", title="the caller's response time")
        fig.tight_layout()
        """),
        md("""
        **Reading the figure.** Each curve is the share of payments done within a time. Events add
        broker hops (a few milliseconds each) to the end-to-end time, but the caller no longer waits
        for compliance logging. Whether that matters depends on what the caller needs: a card
        payment needs the ledger's answer (strong consistency), a compliance log does not.

        The same run from a terminal: `lab run fintech-hybrid --set duration_s=120 --set warmup_s=20`.

        **Next:** [01 polling vs push](01_polling_vs_push.ipynb) for the "real time" claim,
        [02 coupling](02_coupling_and_failure_propagation.ipynb) for "one failing API halts the
        whole process", [05 hybrid](05_hybrid_fintech.ipynb) for the third style.
        """),
    ])


def nb_01_polling():
    return notebook([
        md("""
        # 01 Polling vs push: staleness, wasted polls, load on the source

        A head-office CRM in Johannesburg changes customer records; the Sandton, Soweto, Midrand and
        Rosebank branch systems must learn of every change (`crm-sync`). Polling asks the CRM
        "anything new?" every interval, per branch, whether or not anything changed; push sends
        one event per change through a broker.

        The claims to test: *polling is not real time*, *polling wastes resources*.
        Theory for polling: a change waits on average **half an interval** for the next poll, and
        each branch makes `duration / interval` polls of which only those that find a change are useful.
        """),
        code(SETUP),
        code("""
        PRESET = "crm-sync"
        DURATION_S = 900                                # 15 simulated minutes
        CHANGE_RATE_PER_S = 0.05                        # one customer change every 20 s
        POLL_INTERVALS_S = [1, 2, 5, 10, 30, 60, 120]
        SEED = 2026

        base = lab.load_scenario(PRESET, duration_s=DURATION_S, warmup_s=60, **{"workload.rate_per_s": CHANGE_RATE_PER_S})
        window_s = base.duration_s - base.warmup_s
        rows = []
        for interval_s in POLL_INTERVALS_S:
            r = lab.simulate(base, seed=SEED, **{"propagation.poll_interval_ms": interval_s * 1000})
            rows.append(r.summary.assign(poll_interval_s=interval_s))
        table = pd.concat(rows, ignore_index=True)
        table["wasted_polls_per_s"] = table["wasted_polls"] / window_s
        table[["style", "poll_interval_s", "staleness_mean_s", "polls", "wasted_polls", "wasted_polls_per_s", "source_load_per_s"]]
        """),
        code("""
        ax = plots.plot_polling_tradeoff(table, interval="poll_interval_s",
                                         title=f"crm-sync: one change per {1 / CHANGE_RATE_PER_S:.0f} s, 4 branches")
        """),
        md("""
        **Reading it.** Staleness under polling grows linearly with the interval (about half of
        it); push stays at the broker's few milliseconds whatever the interval (the green line).
        Wasted polls fall as the interval grows, but never to zero while changes are rarer than
        polls. There is no interval that is both fresh and cheap: that is the trade-off push
        removes, at the price of running a broker.

        Check against theory: staleness ~ interval / 2.
        """),
        code("""
        polling = table[table["style"] == "orchestration"].set_index("poll_interval_s")
        pd.DataFrame({"measured staleness (s)": polling["staleness_mean_s"],
                      "theory: interval / 2 (s)": polling.index.to_series() / 2})
        """),
        md("""
        **Load on the source.** Every poll is a request the CRM must serve. Four branches polling
        every second is 4 requests per second for one change every 20 s; with 200 branches it is
        200 per second, and during load-shedding a CRM on a generator has less capacity to spare.
        """),
        code("""
        ax = table.pivot(index="poll_interval_s", columns="style", values="source_load_per_s").plot(
            marker="o", logx=True, color=[plots.style_colour(s) for s in ["events", "orchestration"]])
        ax.set_xlabel("poll interval (s, log scale)")
        ax.set_ylabel("requests to the CRM per s")
        ax.grid(alpha=0.3)
        """),
        md("""
        ## Turn the knob

        Move the slider: the distribution of staleness (change made to branch aware) for polling
        and push at that interval. (Run headless, it shows the default.)
        """),
        code("""
        from ipywidgets import IntSlider, interact


        @interact(poll_interval_s=IntSlider(value=30, min=1, max=120, step=1, description="poll every (s)"))
        def show(poll_interval_s):
            r = lab.simulate(base, seed=SEED, **{"propagation.poll_interval_ms": poll_interval_s * 1000})
            fig, ax = plt.subplots(figsize=(8, 3.5))
            plots.plot_staleness(r.steps, ax=ax, title=f"polling every {poll_interval_s} s vs push")
            plt.show()
            polls = r.summary.set_index("style").loc["orchestration", ["polls", "wasted_polls"]]
            print(f"polls {polls['polls']:.0f}, wasted {polls['wasted_polls']:.0f} ({polls['wasted_polls'] / max(polls['polls'], 1):.0%})")
        """),
        md("""
        **Next:** [07 sweeps](07_sweeps.ipynb) repeats this over change rates with replications and
        confidence intervals (`examples/sweeps/crm-sync-poll-vs-rate.yaml`).
        """),
    ])


def nb_02_coupling():
    return notebook([
        md("""
        # 02 Coupling and failure propagation

        The claim: *orchestration is tightly coupled: one failing API halts the whole process;
        events are loosely coupled: systems fail independently.* Two experiments:

        1. **Chain length.** A workflow through `n` services that each fail 1% of calls. A
           synchronous chain succeeds only if every call does: availability `0.99 ** n`.
        2. **An outage.** One service of four is down for a minute. What happens to the
           workflows in flight, the queues and the backlog, under each style?
        """),
        code(SETUP),
        code("""
        FAILURE_PROB = 0.01        # per call, every service
        CHAIN_LENGTHS = [1, 2, 3, 4, 6, 8]
        DURATION_S = 120
        SEED = 7
        SERVICE = {"service_time": {"dist": "exponential", "mean_ms": 10}, "concurrency": 4}   # 10 ms, 4 workers
        CHAIN = {"duration_s": DURATION_S, "warmup_s": 10, "seed": SEED, "workload": {"rate_per_s": 20},
                 "style": ["orchestration", "events"]}         # 20 workflows per s through s1 -> s2 -> ... -> sn

        runs = []
        for n in CHAIN_LENGTHS:
            names = [f"s{i}" for i in range(1, n + 1)]
            sc = lab.load_scenario({**CHAIN, "name": f"chain-{n}", "flow": names,
                                    "services": {s: {**SERVICE, "failure_prob": FAILURE_PROB} for s in names}})
            runs.append(lab.simulate(sc).summary.assign(chain_length=n))
        coupling = pd.concat(runs, ignore_index=True)
        coupling[["style", "chain_length", "started", "failed", "availability", "latency_p95_s"]]
        """),
        code("""
        ax = plots.plot_availability_vs_chain(coupling, service_availability=1 - FAILURE_PROB,
                                              title="a call fails 1% of the time: availability of the whole workflow")
        """),
        md("""
        **Reading it.** Both styles follow `0.99 ** n`: an error inside a step fails the workflow
        whether the step was called or triggered by an event. Per-call errors are not what
        "loose coupling" buys. What it buys shows when a service is **unavailable for a while**:
        the caller of an orchestration gets an error (or waits for a timeout), while an event waits
        in the broker until the consumer is back. That is experiment 2.
        """),
        md("""
        ## 2. One service down for a minute

        The scenario's `faults:` section schedules the outage (`lab.faults`: also crashes, latency
        spikes, error bursts, partitions and load-shedding). `mode: refuse` fails calls at once;
        `hang` holds them until the caller's timeout. Besides the usual columns the summary now
        has fault metrics (`lab.metrics`): `blast_radius` (share of workflows failed or slowed
        beyond the pre-fault p99), `recovery_s` and `drain_s` (backlog back to normal after the fault).
        """),
        code("""
        OUTAGE = {"service": "s3", "start_s": 60, "duration_s": 60, "mode": "refuse"}
        FOUR = ["s1", "s2", "s3", "s4"]                 # four services that never fail a call
        outage_scenario = lab.load_scenario({**CHAIN, "name": "chain-4", "duration_s": 240, "flow": FOUR,
                                             "services": {s: SERVICE for s in FOUR},
                                             "faults": {"outages": [OUTAGE]}, "orchestration": {"timeout_ms": 1000}})
        outage = lab.simulate(outage_scenario)
        outage.summary[["style", "started", "failed", "availability", "latency_p99_s", "max_backlog", "recovery_s", "blast_radius", "drain_s"]]
        """),
        md("""
        **The failure-propagation picture.** Services down the side, time along the bottom:
        green up, amber degraded, red down. Over it, per style, failed workflows (solid) and the
        backlog of queued requests and unconsumed events (dashed).
        """),
        code("""
        fig, ax = plt.subplots(figsize=(11, 4))
        plots.plot_failure_propagation(outage.timeline, ax=ax, bucket_s=5, title="s3 down from 60 s to 120 s")
        outage.timeline.head()
        """),
        code("""
        fig, ax = plt.subplots(figsize=(11, 3.5))
        plots.plot_backlog(outage.series, ax=ax, outages=[(60, 120)], title="backlog through the outage and the recovery")
        """),
        md("""
        **What to look for.** Under orchestration, every workflow that reaches `s3` while it is down
        fails: the outage propagates to the caller. Under events, nothing fails; `s3`'s consumer lag
        grows for a minute and drains after it comes back: the outage becomes **latency** for those
        workflows instead of **errors**. Whether that is better depends on the business: a
        delayed compliance log is fine; a delayed payment answer may not be.

        ## Turn the knob
        """),
        code("""
        from ipywidgets import Dropdown, IntSlider, interact


        @interact(outage_s=IntSlider(value=60, min=10, max=120, step=10, description="outage (s)"),
                  style=Dropdown(options=["orchestration", "events"], value="orchestration"))
        def show(outage_s, style):
            sc = outage_scenario.replace(**{"faults.outages": [dict(OUTAGE, duration_s=outage_s)]})
            r = lab.simulate(sc, styles=[style])
            print(r.summary[["style", "failed", "availability", "latency_p99_s", "max_backlog", "drain_s"]].to_string(index=False))
        """),
        md("**Next:** [03 load-shedding](03_load_shedding.ipynb): outages that come on a schedule."),
    ])


def nb_03_loadshedding():
    return notebook([
        md("""
        # 03 Load-shedding: a compressed stage-4 day, then a real week of 2023

        Load-shedding takes areas off the grid on a published rotation: at stage `N`, `N` of 16
        areas are off at any time, for 2-hour slots (plus a 30-minute switching buffer). A service
        hosted in an area without backup goes dark; a battery carries it for some hours, then
        needs many hours to recharge. The lab models the rotation (`lab.loadshedding`) and the
        real national record (`lab.eskom`, from eskom-calendar, CC BY-NC-SA 4.0).

        The claim to test: *polling is risky on networks prone to load-shedding; events ride it out.*
        """),
        code(SETUP + "\n" + 'from lab import eskom, loadshedding'),
        md("## 1. Who is off when: one stage-4 day"),
        code("""
        STAGE = 4
        AREAS = {                        # site -> area 1..16 and its backup power
            "gateway": 1,                                            # a Braamfontein data room, no backup
            "tracker": {"area": 5, "backup": "cell_tower"},          # 6-12 h battery, slow to recharge
            "erp": {"area": 9, "backup": {"kind": "generator", "start_delay_min": 2}},
            "broker": {"area": 3, "backup": {"kind": "battery", "runtime_h": 2, "recharge_h": 8}},
        }
        sites = ["gateway", "tracker", "erp", "portal", "broker", "orchestrator"]
        day = loadshedding.outage_calendar({"stage": STAGE, "areas": AREAS}, sites, horizon_s=86400, seed=1)
        frame = loadshedding.calendar_frame({s: day[s] for s in sites})
        ax = plots.plot_outages(pd.concat([frame, pd.DataFrame({"site": [s for s in sites if not day[s]]})]),
                                horizon_s=86400, title=f"stage {STAGE}, one day from 00:00 SAST (after backup power)")
        frame.assign(hours=(frame.end_s - frame.start_s) / 3600).groupby("site")["hours"].sum()
        """),
        md("""
        The portal (in the cloud) and the orchestrator are never shed here. The gateway, with no
        backup, is dark three times for 2.5 hours (a 2-hour slot plus the switching buffer). The
        generator turns each of those into its 2-minute start; the broker's 2-hour battery covers
        most of a slot but needs 8 hours to recharge, so it runs out before the end of each slot.
        The tracker's cell-tower battery (6-12 hours) carries it through this first day; the stage
        slider at the end shows when it stops recovering.

        ## 2. The same day, compressed into 12 simulated minutes

        `compress: 120` plays 120 calendar seconds per simulated second, so a day takes 720 s. The
        supply-chain preset: a carrier scan reaches the gateway, the tracker confirms with the
        carrier, the ERP and the customer portal are updated.
        """),
        code("""
        DAY_S = 720                     # simulated seconds for one calendar day
        day_scenario = lab.load_scenario(
            "supply-chain", duration_s=DAY_S, warmup_s=0, **{
                "workload.day_length_s": DAY_S, "workload.rate_per_s": 2,
                "orchestration.timeout_ms": 5000,
                "faults": {"load_shedding": {"stage": STAGE, "compress": 86400 / DAY_S, "areas": AREAS}}})
        sim_day = loadshedding.outage_calendar(day_scenario.faults.load_shedding, sites, DAY_S, seed=day_scenario.seed)
        shed = lab.simulate(day_scenario)
        shed.summary[["style", "started", "failed", "availability", "latency_p99_s", "max_backlog", "blast_radius", "drain_s"]]
        """),
        code("""
        fig, axes = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
        plots.plot_outages(loadshedding.calendar_frame(sim_day), ax=axes[0], time_unit="min", horizon_s=DAY_S,
                           title="who is dark (simulated minutes; one minute = two calendar hours)")
        plots.plot_backlog(shed.series, ax=axes[1], outages=loadshedding.calendar_frame(sim_day), time_unit="min",
                           title="backlog through the compressed stage-4 day (grey: some site dark)")
        fig.tight_layout()
        """),
        code("""
        fig, ax = plt.subplots(figsize=(11, 4))
        ax = plots.plot_failure_propagation(shed.timeline, ax=ax, bucket_s=10, title="the failure-propagation picture of the day")
        """),
        md("""
        **What to look for.** While a site is dark, orchestrated workflows that need it time out
        and fail; events pile up as consumer lag and drain when power returns. The drain takes
        time: a consumer must work through the backlog **and** the new arrivals, so recovery is
        slower the busier the service is (the same reason traffic stays jammed after a robot is fixed).

        ## 3. A real week: Johannesburg, 1-7 May 2023
        """),
        code("""
        WEEK_START, DAYS, PLACE = "2023-05-01", 7, "Johannesburg"
        week = eskom.stage_timeline(PLACE, WEEK_START, pd.Timestamp(WEEK_START) + pd.Timedelta(days=DAYS))
        ax = plots.plot_stage_timeline(week, title=f"{PLACE}: load-shedding stage, week of {WEEK_START}")
        ax.figure.set_size_inches(11, 3)
        print(f"hours with load-shedding: {eskom.shedding_hours(week):.0f} of {24 * DAYS}; stage-hours: {eskom.stage_hours(week):.0f}")
        """),
        code("""
        WEEK_S = 840                    # simulated seconds for the week (one day per 2 minutes)
        replay = {"replay": {"start": WEEK_START, "days": DAYS, "place": PLACE},
                  "compress": DAYS * 86400 / WEEK_S, "areas": AREAS}
        week_scenario = lab.load_scenario(
            "supply-chain", duration_s=WEEK_S, warmup_s=0, **{
                "workload.day_length_s": WEEK_S / DAYS, "workload.rate_per_s": 1,
                "orchestration.timeout_ms": 5000, "faults": {"load_shedding": replay}})
        week_run = lab.simulate(week_scenario)
        week_cal = loadshedding.calendar_frame(
            loadshedding.outage_calendar(week_scenario.faults.load_shedding, sites, WEEK_S, seed=week_scenario.seed))
        fig, ax = plt.subplots(figsize=(11, 3.5))
        plots.plot_backlog(week_run.series, ax=ax, outages=week_cal, time_unit="min",
                           title="the replayed week, compressed (2 simulated minutes per day)")
        week_run.summary[["style", "started", "failed", "availability", "latency_p99_s", "max_backlog", "blast_radius", "drain_s"]]
        """),
        md("""
        ## Turn the knob: the stage

        Hours each site is dark in one day at the chosen stage (after backup). Stage 6 is what
        May 2023 looked like; notice when the cell-tower battery stops recovering between slots.
        """),
        code("""
        from ipywidgets import IntSlider, interact


        @interact(stage=IntSlider(value=4, min=0, max=8, description="stage"))
        def dark_hours(stage):
            cal = loadshedding.outage_calendar({"stage": stage, "areas": AREAS}, sites, horizon_s=2 * 86400, seed=1)
            hours = {s: loadshedding.total_s(cal[s]) / 3600 / 2 for s in sites}
            print(pd.Series(hours, name=f"hours dark per day at stage {stage}").round(1).to_string())
        """),
        md("**Next:** [04 resilience patterns](04_resilience_patterns.ipynb): what to do about it."),
    ])


def nb_04_resilience():
    return notebook([
        md("""
        # 04 Resilience patterns: retries, jitter, circuit breaker, idempotency, DLQ

        Every pattern in the lab is a small, clock-agnostic object in `lab.policies`, used by the
        simulator and the real engines alike. First the objects on their own, then their effect on
        a payment flow.
        """),
        code(SETUP + "\n" + 'import numpy as np\n\nfrom lab import policies'),
        md("""
        ## 1. Backoff and jitter

        Exponential backoff waits 100 ms, 200 ms, 400 ms... before retries 1, 2, 3. Without jitter,
        every client that failed at the same moment retries at the same moment too (a retry
        storm). *Full* jitter spreads the wait uniformly over `[0, b]`, *equal* jitter over `[b/2, b]`.
        """),
        code("""
        rng = np.random.default_rng(2026)
        fig, ax = plt.subplots(figsize=(8, 3.5))
        for k, jitter in enumerate(["none", "equal", "full"]):
            policy = policies.RetryPolicy(retries=4, base_ms=100, jitter=jitter)
            for attempt in range(1, 5):
                delays = [policy.delay_s(attempt, rng) for _ in range(200)]
                ax.scatter(np.full(200, attempt) + (k - 1) * 0.25, delays, s=4, alpha=0.4,
                           label=jitter if attempt == 1 else None, color=["#333333", "#e6ab02", "#66a61e"][k])
        ax.set_xlabel("retry number")
        ax.set_ylabel("wait before the retry (s)")
        ax.legend(title="jitter", markerscale=3)
        ax.grid(alpha=0.3)
        """),
        md("""
        ## 2. Retries against a flaky payment switch

        The payment switch fails 5% of calls. Each retry gives a failed payment another chance, at
        the cost of latency (the backoff) and load on the switch. A small sweep with replications
        (`lab.sweep`) gives confidence intervals.
        """),
        code("""
        RETRIES = [0, 1, 2, 3]
        flaky = lab.load_scenario("fintech-hybrid", duration_s=60, warmup_s=10, style="orchestration", **{
            "services.payment.failure_prob": 0.05, "workload.bursts": [],
            "orchestration.backoff_ms": 50, "orchestration.jitter": "full"})
        runs = lab.sweep(flaky, {"orchestration.retries": RETRIES}, replications=3, seed=1, workers=1, progress=False)
        ci = lab.sweep_ci(runs, metrics=["availability", "latency_p99_s"])
        fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
        plots.plot_sweep_ci(ci, ax=axes[0], metric="availability", title="retries buy availability...")
        plots.plot_sweep_ci(ci, ax=axes[1], metric="latency_p99_s", title="p99 latency: what did they cost?")
        fig.tight_layout()
        """),
        md("""
        Retries buy availability. Their price in latency is paid only by the payments that retry
        (5% here, waiting a 50 ms backoff on average 25 ms with full jitter): too few to move the p99
        beyond the noise of three replications. The price that does show is load: every retry is
        another call to the switch, and under an outage (section 4) that is what hurts.

        Theory: with `r` retries a payment fails only if all `r + 1` attempts fail:
        `availability ~ 1 - 0.05 ** (r + 1)` for this step (other steps fail too: compare the shape).
        """),
        code("""
        pd.DataFrame({"retries": RETRIES, "payment step alone (theory)": [1 - 0.05 ** (r + 1) for r in RETRIES]})
        """),
        md("""
        ## 3. The circuit breaker

        After 5 failures in a row the breaker opens: calls fail at once for `open_ms` instead of
        waiting for a dead service (and adding to its load). Then a trial call is let through.
        """),
        code("""
        breaker = policies.CircuitBreaker(failure_threshold=5, open_ms=2000)
        trace = []
        for step in range(40):
            now = step * 0.25                              # a call every 250 ms
            service_up = not (2.0 <= now < 6.0)            # the dependency is down from 2 s to 6 s
            if breaker.allow(now):
                if service_up:
                    breaker.record_success(now)
                else:
                    breaker.record_failure(now)
                trace.append((now, breaker.state(now), "called", "ok" if service_up else "failed"))
            else:
                trace.append((now, breaker.state(now), "rejected at once", ""))
        pd.DataFrame(trace, columns=["t_s", "breaker", "call", "outcome"]).iloc[::2]
        """),
        md("""
        ## 4. In a run: breaker, idempotency and a dead-letter queue

        The scenario's `resilience:` section switches the patterns on for a run: retries with a
        budget, a circuit breaker per dependency, idempotent consumers (a redelivered event is not
        processed twice), a retry topic and a dead-letter queue for poison events.
        """),
        code("""
        RESILIENCE = {
            "retry": {"retries": 2, "backoff_ms": 50, "jitter": "full", "budget_ratio": 0.2},
            "circuit_breaker": {"enabled": True, "failure_threshold": 5, "open_ms": 2000},
            "events": {"idempotent_consumer": True, "retry_topic": True, "max_redeliveries": 3, "dlq": True,
                       "poison_rate": 0.002},
        }
        OUTAGE = {"outages": [{"service": "ledger", "start_s": 40, "duration_s": 20, "mode": "hang"}]}
        rows = []
        for label, res in [("no patterns", {}), ("patterns on", RESILIENCE)]:
            sc = lab.load_scenario("fintech-hybrid", duration_s=120, warmup_s=10, faults=OUTAGE, resilience=res,
                                   **{"workload.bursts": [], "orchestration.timeout_ms": 500, "orchestration.retries": 0})
            rows.append(lab.simulate(sc).summary.assign(patterns=label))
        pd.concat(rows)[["patterns", "style", "started", "failed", "availability", "latency_p99_s", "retries",
                         "fallbacks", "dlq", "lost", "duplicates", "duplicates_absorbed", "blast_radius"]]
        """),
        md("""
        **Reading it.** The ledger hangs for 20 s. Without patterns, every orchestrated payment that
        reaches it waits for the 500 ms timeout and fails; with retries and a breaker, the breaker
        opens after five failures and callers fail fast instead of queueing on a dead service (fewer
        threads held, less load when it comes back). Events lose nothing either way; the idempotent
        consumer absorbs the redeliveries that would otherwise be processed twice (`duplicates`),
        and poison events end in the DLQ instead of blocking their partition.
        """),
        md("""
        ## 5. Backpressure: where should the backlog wait?

        The ledger slows down twentyfold for 20 s. Without backpressure its consumer lag grows
        while the stages before it keep publishing. With `pause_at_lag` each stage stops fetching
        when the next stage's lag passes 50 (and resumes below 10): the backlog moves to the front
        of the flow, where new payments can be refused or delayed at the door instead of half-done.
        """),
        code("""
        SPIKE = {"latency_spikes": [{"service": "ledger", "start_s": 20, "duration_s": 20, "multiplier": 20}]}
        peaks = {}
        for label, bp in [("no backpressure", {}), ("pause at lag 50", {"pause_at_lag": 50, "resume_at_lag": 10})]:
            sc = lab.load_scenario("fintech-hybrid", duration_s=90, warmup_s=5, style="events", faults=SPIKE,
                                   resilience={"events": bp}, **{"workload.bursts": []})
            r = lab.simulate(sc)
            lag = r.series[r.series["metric"] == "lag"]
            peaks[label] = lag.groupby("entity")["value"].max()
        pd.DataFrame(peaks).loc[list(sc.steps)].rename_axis("peak consumer lag at")
        """),
        md("""
        ## Turn the knobs: retries and jitter
        """),
        code("""
        from ipywidgets import Dropdown, IntSlider, interact


        @interact(retries=IntSlider(value=1, min=0, max=5, description="retries"),
                  jitter=Dropdown(options=["none", "equal", "full"], value="full", description="jitter"))
        def show(retries, jitter):
            r = lab.simulate(flaky, seed=1, **{"orchestration.retries": retries, "orchestration.jitter": jitter})
            print(r.summary[["style", "failed", "availability", "latency_p95_s", "latency_p99_s"]].to_string(index=False))
        """),
        md("**Next:** [05 hybrid](05_hybrid_fintech.ipynb)."),
    ])


def nb_05_hybrid():
    return notebook([
        md("""
        # 05 Hybrid: orchestrate the payment, publish events for the rest

        The advice most South African businesses get: orchestrate the transactional core (strong
        consistency, a clear answer to the customer), publish events for downstream reactions
        (compliance logging, fraud alerts). `fintech-hybrid` runs all three styles; a burst at
        month-end (payday) doubles the load for 20 s.
        """),
        code(SETUP),
        code("""
        DURATION_S = 120
        BURST = {"start_s": 50, "duration_s": 20, "multiplier": 2}     # payday
        scenario = lab.load_scenario("fintech-hybrid", duration_s=DURATION_S, warmup_s=20, **{"workload.bursts": [BURST]})
        result = lab.simulate(scenario)
        """ + SUMMARY_COLS + """
        result.summary[COLS + ["response_mean_s", "response_p95_s"]]
        """),
        code("""
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        plots.plot_latency_cdf(result.records, ax=axes[0], column="response", title="the customer's wait")
        plots.plot_latency_cdf(result.records, ax=axes[1], title="until compliance and alerts are done")
        plots.plot_summary_bars(result.summary, ax=axes[2], metric="response_p95_s", title="p95 of the customer's wait")
        fig.tight_layout()
        """),
        md("""
        **Reading it.** The hybrid answers the customer when fraud, payment and ledger are done, like
        orchestration minus the downstream work; compliance logging and alerts follow by event,
        like pure events. Pure events answer at once, but then the customer's "paid" is only a promise.
        """),
        code("""
        fig, ax = plt.subplots(figsize=(11, 3.5))
        plots.plot_backlog(result.series, ax=ax, outages=[(BURST["start_s"], BURST["start_s"] + BURST["duration_s"])],
                           title="backlog through the payday burst (grey)");
        """),
        md("""
        ## Turn the knob: which style's queues?

        Backlog per service for one style (queued calls plus consumer lag).
        """),
        code("""
        from ipywidgets import Dropdown, interact


        @interact(style=Dropdown(options=scenario.styles, value="hybrid", description="style"))
        def per_service(style):
            s = result.series[(result.series["style"] == style) & result.series["metric"].isin(["queue", "lag"])]
            print(s.groupby(["metric", "entity"])["value"].max().rename("max").unstack(0).fillna(0).to_string())
        """),
        md("**Next:** [06 real backends](06_real_backends.ipynb): the same scenario on real HTTP services and a real Kafka broker."),
    ])


def nb_06_real():
    return notebook([
        md("""
        # 06 Real backends: HTTP services and a Kafka broker, against the simulation

        The same scenario runs on three engines: `sim` (SimPy, simulated time), `http` (one real
        uvicorn process per service on 127.0.0.1, driven by an httpx orchestrator, wall-clock time)
        and `kafka` (a real Apache Kafka broker, the event-driven style). If the simulation is
        right, their numbers agree within the noise of a real machine.

        This notebook runs for real only what this machine can run: it checks with the lab's own
        functions and skips politely otherwise.
        """),
        code(SETUP + "\n" + 'import os'),
        code("""
        DURATION_S = 15            # wall-clock seconds per style on the real engines: keep it short
        scenario = lab.load_scenario("fintech-hybrid", duration_s=DURATION_S, warmup_s=2,
                                     **{"workload.rate_per_s": 10, "workload.bursts": []})
        START_BROKER = os.environ.get("LAB_NOTEBOOK_START_BROKER", "1") == "1"   # may this notebook start Kafka?
        sim = lab.simulate(scenario)
        sim.summary[["style", "engine", "completed", "failed", "throughput_per_s", "latency_p50_s", "latency_p95_s"]]
        """),
        md("## HTTP: real service processes"),
        md("""
        The HTTP engine drives its services from its own asyncio event loop; Jupyter already runs
        one in the notebook's thread, so the run goes to a worker thread (from a script or the
        CLI, call `lab.run(...)` directly).
        """),
        code("""
        from concurrent.futures import ThreadPoolExecutor

        try:
            with ThreadPoolExecutor(max_workers=1) as pool:
                http = pool.submit(lab.run, scenario, engine="http", styles=["orchestration"]).result()
        except Exception as exc:              # e.g. services could not start on this machine
            http = None
            print(f"Skipped the HTTP engine: {type(exc).__name__}: {exc}")
        if http is not None:
            from lab.http import compare_results

            # one row per style and metric: each engine's value and the relative difference to the simulation
            display(compare_results([sim, http]))
        """),
        code("""
        if http is not None:
            fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharex=True)
            plots.plot_latency_cdf(sim.records[sim.records["style"] == "orchestration"], ax=axes[0], title="simulated")
            plots.plot_latency_cdf(http.records, ax=axes[1], title="real HTTP processes on this machine")
            fig.tight_layout()
        """),
        md("""
        The HTTP engine draws each workflow's service times and failure coins from the same
        random streams as the simulation (common random numbers), so the differences above are the
        engine's, not the dice's. Expect the real engine to be a little slower: a real HTTP hop on
        loopback costs more than the scenario's network latency, and the machine's scheduler adds noise.

        ## Kafka: a real broker

        `lab kafka up` starts the lab's single-node KRaft broker (Java and the Kafka jars needed);
        an existing cluster can be named with `KAFKA_BOOTSTRAP_SERVERS`.
        """),
        code("""
        from lab.errors import EngineUnavailable
        from lab.kafka import broker

        bootstrap = broker.resolve_bootstrap()
        if bootstrap is not None:                # named or recorded, but is it answering?
            host, _, port = bootstrap.split(",")[0].rpartition(":")
            bootstrap = bootstrap if broker.port_open(host, int(port), timeout=2.0) else None
        started_here = False
        if bootstrap is None and START_BROKER and broker.java_available() and (broker.jar_dir() / ".complete").exists():
            try:
                bootstrap = broker.start().bootstrap
                started_here = True
            except EngineUnavailable as exc:
                print(f"could not start a broker: {exc}")
        print(f"Kafka broker: {bootstrap}" if bootstrap else
              "No Kafka broker here (run `lab kafka up`, or set KAFKA_BOOTSTRAP_SERVERS): skipping the Kafka part.")
        """),
        code("""
        kafka = None
        if bootstrap is not None:
            try:
                kafka = lab.run(scenario, engine="kafka", bootstrap=bootstrap)
            except Exception as exc:             # a real broker can go away: report, do not crash
                print(f"Skipped the Kafka engine: {type(exc).__name__}: {exc}")
            finally:
                if started_here:
                    broker.stop()
        if kafka is not None:
            from lab.http import compare_results

            display(compare_results([sim, kafka], metrics=["latency_p50_s", "latency_p95_s", "throughput_per_s",
                                                           "availability", "lost", "duplicates"]))
        """),
        md("""
        **Reading it.** `lost` and `duplicates` reconcile every event: at-least-once delivery with
        idempotent consumers should show none of either. Latency on a real broker includes batching
        and consumer polling that the simulation models as a fixed broker latency.

        From a terminal: `lab run fintech-hybrid --engine http --set duration_s=15` and
        `lab kafka up && lab run fintech-hybrid --engine kafka --set duration_s=15 && lab kafka down`.
        """),
    ])


def nb_07_sweeps():
    return notebook([
        md("""
        # 07 Sweeps: many runs, replications, confidence intervals

        One run is one roll of the dice. A sweep runs a grid of parameters times replications
        (independent seeds; every point on the same seeds, so points are compared on common random
        numbers) and stores long-format rows under `data/sweeps/`. A sweep file says what to run:
        """),
        code(SETUP + "\n" + 'SWEEP_FILE = ROOT / "examples" / "sweeps" / "crm-sync-poll-vs-rate.yaml"\nprint(SWEEP_FILE.read_text() if SWEEP_FILE.exists() else "(no sweep file in this checkout)")'),
        md("""
        The command that made the data: `lab sweep examples/sweeps/crm-sync-poll-vs-rate.yaml`
        (add `--workers 2`, `--resume` after an interruption, or `--scheduler local` for Dask).
        If the data is not there, this notebook runs a small version of it here.
        """),
        code("""
        STORED = ROOT / "data" / "sweeps" / "crm-sync-poll-vs-rate.parquet"
        if STORED.exists():
            runs = lab.read_sweep(STORED)
            print(f"read {len(runs)} rows from {STORED.relative_to(ROOT)}")
            dups = int(runs.duplicated(["run_id", "style"]).sum())
            if dups:  # one row per run and style is the contract; say so if the file breaks it
                print(f"note: {dups} rows repeat a (run_id, style) already read; keeping the first of each")
                runs = runs.drop_duplicates(["run_id", "style"]).reset_index(drop=True)
        else:
            runs = lab.sweep("crm-sync", {"propagation.poll_interval_ms": [5000, 30000, 60000],
                                          "workload.rate_per_s": [0.05, 0.8]},
                             replications=3, seed=2026, workers=1, progress=False)
            print(f"ran a small sweep here: {len(runs)} rows")
        runs.head()
        """),
        code("""
        ci = lab.sweep_ci(runs, metrics=["staleness_mean_s", "wasted_polls", "polls", "source_load_per_s"])
        ci.head(8)
        """),
        md("""
        One row per point, style and metric: the mean over replications and its 95% t-interval.
        Fix the change rate and put the poll interval on the x axis:
        """),
        code("""
        rates = sorted(ci["workload.rate_per_s"].unique())
        fig, axes = plt.subplots(1, len(rates[:2]) or 1, figsize=(12, 4), squeeze=False)
        for ax, rate in zip(axes[0], rates[:2]):
            at = ci[ci["workload.rate_per_s"] == rate]
            plots.plot_sweep_ci(at, ax=ax, x="propagation.poll_interval_ms", metric="staleness_mean_s",
                                title=f"{rate:g} changes per s", xlabel="poll interval (ms)", ylabel="mean staleness (s)")
        fig.tight_layout()
        """),
        code("""
        at = ci[ci["propagation.poll_interval_ms"] == ci["propagation.poll_interval_ms"].min()]
        ax = plots.plot_sweep_ci(at, x="workload.rate_per_s", metric="source_load_per_s", logx=True,
                                 xlabel="changes per s (log scale)", ylabel="requests to the CRM per s",
                                 title="load on the CRM at the shortest poll interval")
        """),
        md("""
        **Reading it.** Polling's staleness depends on the interval and not on the change rate; its
        load on the source depends on the interval and not on the change rate either: it is paid
        whether or not anything changed. Push's cost follows the change rate. The bands are narrow
        where replications agree; a wide band says: run more replications before concluding.

        Other sweep files in `examples/sweeps/` work the same way: run them with `lab sweep`,
        read them with `lab.read_sweep`, summarise with `lab.sweep_ci`, plot with `plots.plot_sweep_ci`
        (or `plots.plot_throughput_vs_load` / `plots.plot_latency_vs_load` for a load sweep).
        """),
        md("""
        ## Saturation: where is each style's knee?

        Offered load against throughput and tail latency, on a small in-process sweep (30 simulated
        seconds per run, two replications). Below the knee, throughput follows the offered load and
        latency is flat; past it, queues grow without bound. The fraud scorer (one worker, 15 ms) is
        the bottleneck of this flow: about 66 payments per second. Watch what the orchestrator's
        2 s timeout does past the knee.
        """),
        code("""
        load_sc = lab.load_scenario("fintech-hybrid", duration_s=30, warmup_s=5, style=["orchestration", "events"],
                                    **{"workload.bursts": [], "orchestration.retries": 0})
        load_runs = lab.sweep(load_sc, {"workload.rate_per_s": [10, 30, 50, 65, 80]}, replications=2, seed=1,
                              workers=1, progress=False)
        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
        plots.plot_throughput_vs_load(load_runs, ax=axes[0], title="throughput against offered load")
        plots.plot_latency_vs_load(load_runs, ax=axes[1], title="p95 latency against offered load")
        fig.tight_layout()
        plots.saturation_knee(load_runs)
        """),
        md("""
        Past the knee, orchestration's throughput **collapses**: every payment waits in the fraud
        scorer's queue longer than the 2 s timeout, so the orchestrator gives up on work the scorer
        then does anyway (congestion collapse). Events keep serving at capacity; their backlog, and
        so their latency, grows instead. (Latency counts *completed* workflows only: past the knee
        orchestration's p95 looks better than events' because its slow payments timed out and are
        not counted. Always read latency next to availability.) Neither is fine: past the knee the answer is capacity or
        load-shedding of *requests* (admission control), not a different integration style.

        ## Load-shedding stage x style (retail inventory)

        `examples/sweeps/retail-loadshedding-stage-x-style.yaml` runs the retail preset through 48
        compressed hours of load-shedding at stages 0-8, for each style, three replications each.
        It is too big to run inside a notebook (45 runs of 600 simulated seconds); run it from a
        terminal with `lab sweep examples/sweeps/retail-loadshedding-stage-x-style.yaml --workers 2`.
        """),
        code("""
        LS = ROOT / "data" / "sweeps" / "retail-loadshedding-stage-x-style.parquet"
        if LS.exists():
            ls_ci = lab.sweep_ci(lab.read_sweep(LS), metrics=["availability", "drain_s", "latency_p95_s"])
            fig, axes = plt.subplots(1, 2, figsize=(12, 4))
            plots.plot_sweep_ci(ls_ci, ax=axes[0], x="faults.load_shedding.stage", metric="availability",
                                xlabel="load-shedding stage", title="sales completed")
            plots.plot_sweep_ci(ls_ci, ax=axes[1], x="faults.load_shedding.stage", metric="drain_s",
                                xlabel="load-shedding stage", ylabel="drain after the last outage (s)",
                                title="time to work off the backlog")
            fig.tight_layout()
        else:
            print(f"{LS.relative_to(ROOT)} is not there yet: run the command above to make it.")
        """),
        code("""
        for f in sorted((ROOT / "examples" / "sweeps").glob("*.yaml")):
            stored = ROOT / "data" / "sweeps" / (f.stem + ".parquet")
            print(f"{f.name:<40} {'stored' if stored.exists() else 'not run yet'}")
        """),
    ])


def nb_08_claims():
    return notebook([
        md("""
        # 08 The claims, measured

        Articles written for South African businesses compare the two styles with a table like
        this one, without evidence:

        | aspect | API orchestration | event-driven integration |
        |---|---|---|
        | communication | synchronous (pull) | asynchronous (push) |
        | coupling | tight: one failing API halts the whole process | loose: systems fail independently |
        | real time | polling-dependent | native |
        | scalability | limited, poor at high volumes | high throughput |
        | complexity | lower | higher (broker, event schemas, idempotency) |

        `lab.check_claims` turns each line into a small seeded experiment on the simulator (the
        experiments are written out in `lab/claims.py`) and computes a verdict from the figures:
        **supported**, **not supported**, or **depends** - with what it depends on. The same table
        comes from the command line: `lab claims` (`--json`, `--out claims.csv`, `--full`).
        """),
        code(SETUP),
        code("""
        SEED = 2026
        table = lab.check_claims(seed=SEED, quick=True)   # about 15 s on 2 cores
        table[["aspect", "claim", "measure", "orchestration", "events", "hybrid", "verdict"]]
        """),
        code("""
        fig, ax = plt.subplots(figsize=(11, 7))
        plots.plot_claims(table, ax=ax, title=f"The claims, measured (seed {SEED})")
        fig.tight_layout()
        """),
        md("""
        **Reading it.** Each row is scaled to its own largest figure (the units differ); the printed
        number is the figure itself. Three things stand out:

        * *Real time* and *coupling* hold as claimed - but the price of loose coupling is time:
          during an outage events wait (p99 of nearly a minute) where orchestration fails fast.
        * *Scalability* is not about the style: with the same services both carry the same load.
          What limits orchestration is its own in-flight limit (a thread pool: Little's law) and,
          under overload, timeouts that make callers abandon work the services still do.
        * *Polling wastes resources* depends on how often the data changes per poll interval:
          at 0.2 changes/s and a 30 s interval almost every poll finds something new.
        """),
        code("""
        table[["aspect", "measure", "verdict", "depends_on"]].style.hide(axis="index")
        """),
        md("""
        **Try it.** Change the seed, or run `table = lab.check_claims(seed=SEED, quick=False)` for
        longer runs: the figures move a little, the verdicts should not.

        ## Your own system

        The claims are about systems in general. `lab.assess` puts one scenario - a preset here,
        your own YAML in practice - through four questions (everyday, headroom, one service down,
        load-shedding) on every style it names, and `verdicts` reads one line per question from
        the table. The same from a terminal: `lab assess my-scenario.yaml`.
        """),
        code("""
        from lab.assess import verdicts

        mine = lab.load_scenario("retail-inventory", duration_s=600, warmup_s=60)
        assessment = lab.assess(mine, seed=SEED)        # a tidy long table: question, case, style, metric, value
        verdicts(assessment)
        """),
        code("""
        down = assessment[(assessment.question == "one service down") & (assessment.metric == "availability")]
        down.pivot_table(index="case", columns="style", values="value")
        """),
        md("""
        **Reading it.** A service down for a tenth of the run costs the orchestrated styles about a
        tenth of their sales; under events nothing is lost and the backlog drains after. For the
        hybrid it depends on *which* service: the core (till, inventory) behaves like
        orchestration, the downstream reactions (reorder, analytics) like events. To dig into a
        question, use its notebook: `01` (real time, wasted polls), `02` (coupling), `03`
        (load-shedding), `05` (hybrid), `07` (scalability sweeps).
        """),
    ])


NOTEBOOKS = {
    "00_quickstart": nb_00_quickstart,
    "01_polling_vs_push": nb_01_polling,
    "02_coupling_and_failure_propagation": nb_02_coupling,
    "03_load_shedding": nb_03_loadshedding,
    "04_resilience_patterns": nb_04_resilience,
    "05_hybrid_fintech": nb_05_hybrid,
    "06_real_backends": nb_06_real,
    "07_sweeps": nb_07_sweeps,
    "08_claims": nb_08_claims,
}

# ------------------------------------------------------------------------------------------------
# workshop/ (predict, then run; cells tagged "solution" are stripped for participants)
# ------------------------------------------------------------------------------------------------

PREDICT = "✍️ **Predict.** "
GUESS = "*My guess (write it before running the next cell):* ..."


def ws_01():
    return notebook([
        md("""
        # Workshop 1: polling, push and coupling (about 60 minutes)

        Work in pairs. For each exercise: **write down your prediction** in the cell provided,
        then run the experiment, then compare and discuss. A wrong prediction is the most useful
        outcome: it is where your mental model and the system disagree.
        """),
        code(SETUP),
        md("""
        ## Exercise 1: how stale is a branch?

        Four Johannesburg branches poll the head-office CRM every 30 s for customer changes.
        """ + "\n\n" + PREDICT + """On average, how many seconds after a change does a branch
        know about it? And with push through a broker?"""),
        md(GUESS),
        code("""
        POLL_INTERVAL_MS = 30000
        crm = lab.load_scenario("crm-sync", duration_s=900, warmup_s=60, **{"propagation.poll_interval_ms": POLL_INTERVAL_MS})
        r1 = lab.simulate(crm)
        r1.summary[["style", "staleness_mean_s", "polls", "wasted_polls"]]
        """),
        md("**Compare.** Was your guess close? Where does the measured number come from?"),
        md("""
        **Solution.** Polling: about **15 s**, half the interval: a change lands at a uniformly
        random moment between two polls. Push: a few **milliseconds** (one broker hop plus the
        consumer's work). The simulation agrees with `interval / 2` within noise:
        """, "solution"),
        code("""
        print(f"theory {POLL_INTERVAL_MS / 2000:.1f} s, measured {r1.summary.set_index('style').loc['orchestration', 'staleness_mean_s']:.1f} s")
        """, "solution"),
        md("""
        ## Exercise 2: the cost of freshness

        Management wants branch data at most 2 s old on average. Changes are rare: one every 20 s.
        """ + "\n\n" + PREDICT + """Which poll interval do you need, and what share of the
        polls will find nothing new?"""),
        md(GUESS),
        code("""
        fresh = lab.simulate(crm, **{"propagation.poll_interval_ms": 4000, "workload.rate_per_s": 0.05})
        fresh.summary[["style", "staleness_mean_s", "polls", "wasted_polls", "source_load_per_s"]]
        """),
        md("**Compare.** What does the CRM pay for this freshness? What would 200 branches cost?"),
        md("""
        **Solution.** An interval of **4 s** (staleness ~ 2 s). With one change per 20 s and a poll
        per branch every 4 s, about **4 in 5 polls are wasted** (a poll is useful only if a change
        arrived since the last one: `1 - exp(-0.05 x 4) ~ 18%` useful). 200 branches would send the
        CRM 50 requests per second to learn about one change every 20 s. Push sends one event per
        change, however many branches listen.
        """, "solution"),
        code("""
        import math

        print(f"useful share (theory): {1 - math.exp(-0.05 * 4):.0%}; requests per s for 200 branches: {200 / 4:.0f}")
        """, "solution"),
        md("""
        ## Exercise 3: a chain of five services

        An orchestrated workflow calls five services in turn; each fails 1% of its calls.
        """ + "\n\n" + PREDICT + """What share of workflows complete? Will event-driven
        integration do better?"""),
        md(GUESS),
        code("""
        names = [f"s{i}" for i in range(1, 6)]
        chain = lab.load_scenario({
            "name": "chain-5", "duration_s": 200, "warmup_s": 10, "seed": 7, "workload": {"rate_per_s": 20},
            "services": {s: {"service_time": {"dist": "exponential", "mean_ms": 10}, "concurrency": 4, "failure_prob": 0.01}
                         for s in names},
            "flow": names, "style": ["orchestration", "events"]})
        r3 = lab.simulate(chain)
        r3.summary[["style", "started", "failed", "availability"]]
        """),
        md("**Compare.** Did events help? Why, or why not?"),
        md("""
        **Solution.** `0.99 ** 5 = 95.1%` for **both** styles. A failed step fails the workflow whichever
        way the step was reached. "Loose coupling" does not remove per-request errors; it changes what
        happens when a service is **unavailable for a while** (events wait in the broker; calls fail).
        Retries (orchestration) or redelivery (events) are what recover errors: see workshop 2.
        """, "solution"),
        md("""
        ## Discuss (10 minutes)

        * Which of your systems poll today? What is their interval, and who chose it?
        * Where would 15 s of staleness hurt your business (stock levels, fraud, a customer's balance)?
        * The claim "events are real time": what did this workshop show it depends on?
        """),
    ])


def ws_02():
    return notebook([
        md("""
        # Workshop 2: load-shedding and resilience (about 60 minutes)

        Predict, then run, then compare. Load-shedding is the outage every South African system is
        designed around; here we put numbers on what it does to each integration style.
        """),
        code(SETUP + "\n" + 'from lab import loadshedding, policies'),
        md("""
        ## Exercise 1: how long is a site dark?

        Your ERP runs in a Midrand office in area 9, no backup power. Stage 4 all day.
        """ + "\n\n" + PREDICT + """How many hours a day is the ERP dark? With a generator that
        starts after 2 minutes?"""),
        md(GUESS),
        code("""
        sites = ["erp"]
        grid = loadshedding.outage_calendar({"stage": 4, "areas": {"erp": 9}}, sites, horizon_s=4 * 86400)
        gen = loadshedding.outage_calendar(
            {"stage": 4, "areas": {"erp": {"area": 9, "backup": {"kind": "generator", "start_delay_min": 2}}}},
            sites, horizon_s=4 * 86400)
        print(f"no backup: {loadshedding.total_s(grid['erp']) / 3600 / 4:.1f} h dark per day")
        print(f"generator: {loadshedding.total_s(gen['erp']) / 60 / 4:.0f} min dark per day")
        """),
        md("**Compare.** Where do the extra minutes of each slot come from?"),
        md("""
        **Solution.** Stage 4: an area is off 12 times in 4 days for 2 hours, plus the 30-minute
        switching buffer each time: `3 x 2.5 = 7.5 h` a day. A generator leaves only its start
        delay per outage: about 3 outages x 2 min = 6 minutes a day (if the diesel lasts).
        """, "solution"),
        md("""
        ## Exercise 2: retries against a flaky payment switch

        The payment switch fails 5% of calls. You add retries with backoff.
        """ + "\n\n" + PREDICT + """With 2 retries, what share of payments fail at the switch?
        What happens to the slowest 1% of payments (p99 latency)?"""),
        md(GUESS),
        code("""
        RETRIES = 2
        flaky = lab.load_scenario("fintech-hybrid", duration_s=90, warmup_s=10, style="orchestration", **{
            "services.payment.failure_prob": 0.05, "workload.bursts": [],
            "orchestration.backoff_ms": 50, "orchestration.jitter": "full"})
        rows = [lab.simulate(flaky, **{"orchestration.retries": r}).summary.assign(retries=r) for r in (0, RETRIES)]
        pd.concat(rows)[["retries", "started", "failed", "availability", "latency_p50_s", "latency_p99_s"]]
        """),
        md("**Compare.** Retries bought availability: what did they cost, and who pays it?"),
        md("""
        **Solution.** Failing at the switch needs all three attempts to fail: `0.05 ** 3 = 0.0125%`,
        down from 5% (about 1 payment in 8,000; in this short run, none). The median and even the
        p99 hardly move here: only 5% of payments retry, and a 50 ms backoff with full jitter is small
        next to the switch's own slow tail. What grows is the work: the switch serves about 5% more
        calls. Under an outage (not a flaky 5%), every payment retries against a service that is
        already down, multiplying its load and the callers' wait: that is what circuit breakers and
        retry budgets are for.
        """, "solution"),
        code("""
        print(f"theory, switch alone: {0.05 ** (RETRIES + 1):.4%} fail with {RETRIES} retries")
        """, "solution"),
        md("""
        ## Exercise 3: the breaker

        """ + PREDICT + """A breaker trips after 5 consecutive failures and stays open 2 s. The
        dependency is down from 2 s to 6 s; a call every 250 ms. How many calls reach the dead
        service?"""),
        md(GUESS),
        code("""
        breaker = policies.CircuitBreaker(failure_threshold=5, open_ms=2000)
        reached = 0
        for step in range(40):
            now = step * 0.25
            up = not (2.0 <= now < 6.0)
            if breaker.allow(now):
                reached += not up
                if up:
                    breaker.record_success(now)
                else:
                    breaker.record_failure(now)
        print(f"calls that reached the dead service: {reached} of {int(4 / 0.25)} made while it was down")
        """),
        md("""
        **Solution.** 5 calls trip it (2.00-3.00 s); open until 3.00+2 = 5.00 s; one trial call at
        ~5 s fails and reopens it until ~7 s, by when the service is back. So about **6 of 16** calls
        reach the dead service instead of 16, and callers get an immediate answer (a fallback or
        an error) instead of waiting for a timeout.
        """, "solution"),
        md("""
        ## Discuss (10 minutes)

        * Which of your dependencies sit in an area without backup power? Which have generators?
        * During stage 6, would you rather your integration fail fast (orchestration with a breaker)
          or queue and catch up later (events)? For which business flows?
        * What does "catching up" cost after the power returns (notebook 03 shows the drain)?
        """),
    ])


WORKSHOP = {"01_polling_push_coupling": ws_01, "02_loadshedding_resilience": ws_02}


def write(out: Path, nb: nbformat.NotebookNode) -> None:
    nbformat.validate(nb)
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root to write into")
    args = parser.parse_args(argv)
    for name, make in NOTEBOOKS.items():
        write(args.root / "notebooks" / f"{name}.ipynb", make())
    for name, make in WORKSHOP.items():
        write(args.root / "workshop" / f"{name}.ipynb", make())
    print(f"wrote {len(NOTEBOOKS)} notebooks to notebooks/ and {len(WORKSHOP)} to workshop/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
