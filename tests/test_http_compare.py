"""The engine comparison table and the `lab compare` command's input checks (no servers)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pandas as pd
import pytest

from lab.cli import main
from lab.http.compare import compare_results

pytestmark = pytest.mark.http


def fake(engine: str, p50: float, thr: float):
    """A stand-in with what compare_results reads of a RunResult: engine and summary."""
    summary = pd.DataFrame(
        [{"style": "orchestration", "engine": engine, "latency_p50_s": p50, "latency_p95_s": 2 * p50,
          "latency_p99_s": 3 * p50, "throughput_per_s": thr, "availability": 1.0,
          "staleness_mean_s": math.nan, "wasted_polls": 0}]
    )  # fmt: skip
    return SimpleNamespace(engine=engine, summary=summary, seed=1)


def test_compare_results_side_by_side_with_relative_difference():
    table = compare_results([fake("sim", 0.5, 8.0), fake("http", 0.6, 7.6)]).set_index("metric")
    assert table.loc["latency_p50_s", "sim"] == 0.5 and table.loc["latency_p50_s", "http"] == 0.6
    assert table.loc["latency_p50_s", "reldiff_http"] == pytest.approx(0.2)
    assert table.loc["latency_p99_s", "reldiff_http"] == pytest.approx(0.2)
    assert table.loc["throughput_per_s", "reldiff_http"] == pytest.approx(-0.05)
    assert "staleness_mean_s" not in table.index  # NaN in every engine: left out
    assert table.loc["wasted_polls", "sim"] == 0 and math.isnan(table.loc["wasted_polls", "reldiff_http"])


def test_compare_command_rejects_bad_engines(capsys):
    assert main(["compare", "mm1-teaching", "--engines", "sim,nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["compare", "mm1-teaching", "--engines", "sim"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["run", "mm1-teaching", "--engine", "http", "--compress", "0"])
    assert exc.value.code == 2


def test_run_engine_http_from_the_command_line(capsys):
    code = main(["run", "mm1-teaching", "--engine", "http", "--set", "duration_s=2", "--set", "warmup_s=0.2",
                 "--set", "workload.rate_per_s=5", "--json"])  # fmt: skip
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0]["engine"] == "http" and rows[0]["style"] == "orchestration"
    assert rows[0]["started"] == rows[0]["completed"] + rows[0]["failed"]
