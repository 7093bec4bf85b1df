"""The simulator against queueing theory: seeded replications, a warm-up cut, a stated tolerance."""

import math

import numpy as np
import pytest

import lab
from lab.rng import replication_seeds

REPS = 5


def mm1(**kw):
    return lab.load_scenario("mm1-teaching", **kw)


def mean_over_reps(sc, column, reps=REPS, root=7, style=None):
    values = []
    for seed in replication_seeds(root, reps):
        s = lab.simulate(sc, seed=seed).summary
        if style is not None:
            s = s[s["style"] == style]
        values.append(float(s[column].iloc[0]))
    return float(np.mean(values)), float(np.std(values, ddof=1) / math.sqrt(reps))


def test_mm1_mean_response_time_matches_theory():
    # lambda = 8/s, mu = 10/s: W = 1 / (mu - lambda) = 0.5 s. Tolerance 8% (5 reps x 1800 s measured).
    w, se = mean_over_reps(mm1(), "latency_mean_s")
    assert w == pytest.approx(0.5, rel=0.08), (w, se)


def test_mm1_utilisation_and_throughput():
    res = lab.simulate(mm1(), seed=3)
    row = res.summary.iloc[0]
    assert row["throughput_per_s"] == pytest.approx(8.0, rel=0.05)
    assert row["availability"] == 1.0


def test_mmc_matches_erlang_c():
    # M/M/2 with lambda = 15/s, mu = 10/s per server: rho = 0.75, Erlang C waiting probability
    lam, mu, c = 15.0, 10.0, 2
    a = lam / mu
    rho = a / c
    p0_inv = sum(a**k / math.factorial(k) for k in range(c)) + a**c / (math.factorial(c) * (1 - rho))
    pw = (a**c / (math.factorial(c) * (1 - rho))) / p0_inv
    w_theory = pw / (c * mu - lam) + 1 / mu
    sc = mm1(workload={"rate_per_s": lam}, services={"worker": {"concurrency": c}})
    w, se = mean_over_reps(sc, "latency_mean_s")
    assert w == pytest.approx(w_theory, rel=0.08), (w, w_theory, se)


def test_little_law_on_a_run():
    # L (time-average workflows in system, sampled) = lambda x W (from the records)
    sc = mm1(series_interval_s=0.5)
    res = lab.simulate(sc, seed=11)
    s = res.series
    in_sys = s[(s.metric == "in_flight") & (s.time_s >= sc.warmup_s) & (s.time_s <= sc.duration_s)]["value"].mean()
    row = res.summary.iloc[0]
    assert in_sys == pytest.approx(row["throughput_per_s"] * row["latency_mean_s"], rel=0.08)


def test_polling_delay_of_async_job_averages_half_the_interval():
    # a job of random length, polled every 2 s: awareness lags completion by U(0, 2) -> mean 1 s
    sc = lab.load_scenario(
        {
            "name": "poll-delay",
            "duration_s": 3000,
            "warmup_s": 100,
            "network": {"latency_ms": 0},
            "workload": {"rate_per_s": 1},
            "services": {
                "svc": {
                    "service_time": {"dist": "deterministic", "mean_ms": 0},
                    "concurrency": 8,
                    "job": {"dist": "exponential", "mean_ms": 5000},
                    "poll_interval_ms": 2000,
                    "poll_time_ms": 0,
                }
            },
            "flow": ["svc"],
            "style": ["orchestration", "events"],
        }
    )
    res = lab.simulate(sc, seed=5)
    orch = res.summary.set_index("style").loc["orchestration"]
    ev = res.summary.set_index("style").loc["events"]
    assert orch["staleness_mean_s"] == pytest.approx(1.0, rel=0.06)
    # push removes the polling delay: end-to-end latency falls by about half an interval
    assert orch["latency_mean_s"] - ev["latency_mean_s"] == pytest.approx(1.0, rel=0.1)
    # every poll but the last of each job found nothing new: polls per job ~ 1 + E[job]/T
    per_job = orch["polls"] / orch["started"]
    assert per_job == pytest.approx(5.0 / 2.0 + 0.5, rel=0.08)
    # one useful poll per job (the window edges cut a few of either kind)
    assert orch["wasted_polls"] == pytest.approx(orch["polls"] - orch["completed"], abs=10)


@pytest.mark.parametrize("probs", [(0.05, 0.1, 0.02), (0.2, 0.0, 0.3)])
def test_chain_availability_is_product_of_success_probabilities(probs):
    services = {
        f"s{i}": {"service_time": {"dist": "exponential", "mean_ms": 5}, "concurrency": 4, "failure_prob": p}
        for i, p in enumerate(probs)
    }
    sc = lab.load_scenario(
        {"name": "chain", "duration_s": 2000, "workload": {"rate_per_s": 20}, "services": services,
         "flow": list(services), "style": ["orchestration", "events"]}
    )  # fmt: skip
    expected = float(np.prod([1 - p for p in probs]))
    res = lab.simulate(sc, seed=2)
    for _, row in res.summary.iterrows():
        n = row["started"]
        tol = 4 * math.sqrt(expected * (1 - expected) / n)
        assert abs(row["availability"] - expected) < tol, (row["style"], row["availability"], expected)


def test_retries_raise_availability_as_theory_says():
    # one retry: success = 1 - p^2
    p = 0.2
    sc = lab.load_scenario(
        {"name": "retry", "duration_s": 2000, "workload": {"rate_per_s": 20},
         "services": {"a": {"service_time": 5, "concurrency": 4, "failure_prob": p}},
         "flow": ["a"], "orchestration": {"retries": 1, "backoff_ms": 10}}
    )  # fmt: skip
    row = lab.simulate(sc, seed=4).summary.iloc[0]
    assert row["availability"] == pytest.approx(1 - p * p, abs=4 * math.sqrt(p * p / row["started"]))


def test_polling_vs_push_staleness_and_wasted_polls():
    # changes ~ Poisson(0.1/s), one subscriber polls every 10 s: staleness ~ T/2 = 5 s,
    # a poll is wasted when no change happened during its interval: P = exp(-0.1 x 10)
    sc = lab.load_scenario("crm-sync", duration_s=20000, workload={"rate_per_s": 0.1},
                           propagation={"subscribers": ["sandton"], "poll_interval_ms": 10000},
                           network={"latency_ms": 0})  # fmt: skip
    res = lab.simulate(sc, seed=8)
    rows = res.summary.set_index("style")
    poll, push = rows.loc["orchestration"], rows.loc["events"]
    assert poll["staleness_mean_s"] == pytest.approx(5.0, rel=0.08)
    assert poll["wasted_polls"] / poll["polls"] == pytest.approx(math.exp(-1.0), abs=0.03)
    assert push["staleness_mean_s"] < 0.1
    assert push["polls"] == 0
    assert poll["source_load_per_s"] == pytest.approx(0.1, rel=0.02)  # one poll per 10 s
