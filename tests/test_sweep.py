"""Parameter sweeps: grid expansion, seeds, executors agree row for row, resume, failures,
confidence intervals, sweep files.  Every run here is the real SimPy engine
(``lab.simulate``) on short scenarios."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import lab
from lab.errors import LabError
from lab.scenario import preset_text
from lab.sweep import expand_grid, load_sweep_file, replication_seeds, sweep, sweep_ci, sweep_params
from lab.sweep_store import read_sweep

ROOT = Path(__file__).resolve().parents[1]
sweep_mod = importlib.import_module("lab.sweep")  # the module (lab.sweep is also the function)


@pytest.fixture(scope="module")
def mm1():
    """M/M/1, short: about 0.05 s a run."""
    return lab.load_scenario("mm1-teaching", duration_s=60, warmup_s=5)


@pytest.fixture(scope="module")
def crm():
    """Change propagation with two styles in one run (one summary row per style)."""
    return lab.load_scenario("crm-sync", duration_s=300, warmup_s=20)


def _parts(path: Path) -> list[Path]:
    return sorted(path.glob("part-*.parquet"))


def _stored_keys(path: Path) -> list[str]:
    """Every key in every stored part, duplicates included: one entry per stored run-row."""
    keys: list[str] = []
    for p in _parts(path):
        keys += pq.read_table(p, columns=["key"]).column("key").to_pylist()
    return keys


# -- grid ---------------------------------------------------------------------------------


def test_expand_grid_product_order_and_fixed_values():
    pts = expand_grid({"workload.rate_per_s": [10, 20, 40], "style": ["orchestration", "events"], "duration_s": 50})
    assert len(pts) == 6
    assert pts[0] == {"workload.rate_per_s": 10, "style": "orchestration", "duration_s": 50}
    assert pts[1] == {"workload.rate_per_s": 10, "style": "events", "duration_s": 50}  # last key fastest
    assert [p["workload.rate_per_s"] for p in pts] == [10, 10, 20, 20, 40, 40]
    assert all(p["duration_s"] == 50 for p in pts)
    assert len(expand_grid({"a": range(3), "b": np.array([1.0, 2.0]), "c": (1, 2)})) == 12
    explicit = [{"workload.rate_per_s": 5}, {"workload.rate_per_s": 6, "style": "events"}]
    assert expand_grid(explicit) == explicit
    assert expand_grid(None) == [{}]


@pytest.mark.parametrize("bad", [{"a": []}, [], [1, 2], "rate"])
def test_expand_grid_rejects_bad_grids(bad):
    with pytest.raises(LabError):
        expand_grid(bad)


def test_unknown_grid_key_is_a_user_error(mm1):
    with pytest.raises(LabError) as exc:
        sweep(mm1, {"workload.rate_pr_s": [1, 2]}, replications=1, workers=1, progress=False)
    assert exc.value.field == "grid.workload.rate_pr_s"


def test_fixed_params_kept_and_shape(mm1):
    grid = {"workload.rate_per_s": [4, 8], "network.latency_ms": 0.5}
    df = sweep(mm1, grid, replications=3, seed=7, workers=1, progress=False)
    assert len(df) == 2 * 3  # one style
    assert list(df.columns[:7]) == ["run_id", "point_id", "replication", "seed", "workload.rate_per_s",
                                    "network.latency_ms", "scenario"]  # fmt: skip
    assert (df["network.latency_ms"] == 0.5).all()
    assert df["run_id"].tolist() == list(range(6))
    assert df.groupby("point_id")["workload.rate_per_s"].first().tolist() == [4, 8]
    assert df["error"].isna().all()
    assert set(lab.SUMMARY_COLUMNS) - {"seed"} <= set(df.columns)
    assert sweep_params(df) == ["workload.rate_per_s", "network.latency_ms"]
    # the parameter really reached the engine: doubling the arrival rate doubles the started count
    started = df.groupby("workload.rate_per_s")["started"].mean()
    assert 1.6 < started[8] / started[4] < 2.4
    # the seed reached the engine: the summary's own seed column matched (it is dropped as a duplicate)
    one = lab.simulate(mm1.replace(**{"workload.rate_per_s": 8, "network.latency_ms": 0.5}), seed=int(df.seed[3]))
    row = df[df.run_id == 3].iloc[0]
    assert one.summary["started"].iloc[0] == row["started"]
    assert one.summary["latency_mean_s"].iloc[0] == pytest.approx(row["latency_mean_s"], rel=1e-12)


def test_style_list_gives_a_row_per_style_and_style_key_is_a_param(crm):
    df = sweep(crm, {"propagation.poll_interval_ms": [5000, 20000]}, replications=2, workers=1, progress=False)
    assert len(df) == 2 * 2 * 2
    assert df.groupby("run_id")["style"].apply(list).tolist() == [["orchestration", "events"]] * 4
    df2 = sweep(crm, {"style": ["orchestration", "events"]}, replications=2, workers=1, progress=False)
    assert len(df2) == 4 and sweep_params(df2) == ["style"]
    assert df2["style"].tolist() == ["orchestration", "orchestration", "events", "events"]
    # polling is the orchestration side; push has none
    assert (df2.loc[df2["style"] == "events", "polls"] == 0).all()
    assert (df2.loc[df2["style"] == "orchestration", "polls"] > 0).all()


# -- seeds ----------------------------------------------------------------------------------


def test_seeds_reproducible_independent_and_common_across_points(mm1):
    s = replication_seeds(0, 5)
    assert s == replication_seeds(0, 5)
    assert len(set(s)) == 5 and all(0 <= x < 2**63 for x in s)
    assert replication_seeds(0, 8)[:5] == s  # more replications extend, never reshuffle
    assert set(replication_seeds(1, 5)).isdisjoint(s)
    ss = np.random.SeedSequence(0).spawn(2)[1]
    assert s[1] == int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))

    grid = {"workload.rate_per_s": [4, 6]}
    a = sweep(mm1, grid, replications=4, seed=3, workers=1, progress=False)
    b = sweep(mm1, grid, replications=4, seed=3, workers=1, progress=False)
    pd.testing.assert_frame_equal(a, b)
    assert a.groupby("point_id")["seed"].apply(list).tolist() == [replication_seeds(3, 4)] * 2
    # replications are different draws: the results vary across them
    assert a[a.point_id == 0]["latency_mean_s"].nunique() == 4
    c = sweep(mm1, grid, replications=4, seed=4, workers=1, progress=False)
    assert not np.allclose(a["latency_mean_s"], c["latency_mean_s"])


# -- executors agree row for row -------------------------------------------------------------

GRID = {"workload.rate_per_s": [4, 7], "services.worker.concurrency": [1, 2]}


@pytest.fixture(scope="module")
def sequential(mm1):
    return sweep(mm1, GRID, replications=3, seed=11, workers=1, progress=False)


def test_sequential_equals_processes_row_for_row(mm1, sequential):
    par = sweep(mm1, GRID, replications=3, seed=11, workers=2, progress=False)
    pd.testing.assert_frame_equal(sequential, par)
    assert len(par) == 12 and par["error"].isna().all()


def test_sequential_equals_dask_local_cluster(mm1, sequential):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:  # fmt: skip
        threads = sweep(mm1, GRID, replications=3, seed=11, scheduler=client, progress=False)
        by_address = sweep(mm1, GRID, replications=3, seed=11, scheduler=cluster.scheduler_address, progress=False)
    pd.testing.assert_frame_equal(sequential, threads)
    pd.testing.assert_frame_equal(sequential, by_address)


def test_sequential_equals_dask_local_processes(mm1, sequential, tmp_path):
    out = tmp_path / "dask.parquet"
    procs = sweep(mm1, GRID, replications=3, seed=11, scheduler="local", workers=2, out=out, progress=False)
    pd.testing.assert_frame_equal(sequential, procs)


# -- storage and resume ------------------------------------------------------------------------


def test_out_streams_parts_and_reads_back(mm1, sequential, tmp_path):
    out = tmp_path / "s.parquet"
    df = sweep(mm1, GRID, replications=3, seed=11, workers=2, out=out, progress=False)
    pd.testing.assert_frame_equal(sequential, df)
    assert _parts(out) and (out / "_sweep.json").exists()
    back = pd.read_parquet(out).sort_values("run_id", kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(df, back, check_like=False, check_dtype=False)
    assert sorted(_stored_keys(out)) == sorted(df["key"])
    with pytest.raises(LabError, match="resume"):
        sweep(mm1, GRID, replications=3, seed=11, workers=1, out=out, progress=False)
    # bigger than memory: nothing is read back; the store holds the same rows
    out2 = tmp_path / "noload.parquet"
    assert sweep(mm1, GRID, replications=3, seed=11, workers=2, out=out2, progress=False, load=False) is None
    pd.testing.assert_frame_equal(read_sweep(out2), read_sweep(out))
    assert read_sweep(out2, columns=["run_id"]).columns.tolist() == ["run_id", "key", "style"]


def test_resume_skips_finished_runs(mm1, sequential, tmp_path):
    out = tmp_path / "r.parquet"
    # an "interrupted" sweep: only the first two points were stored ...
    first = sweep(mm1, {"workload.rate_per_s": [4], "services.worker.concurrency": [1, 2]},
                  replications=3, seed=11, workers=1, out=out, progress=False, compact=False)  # fmt: skip
    parts_before = {p.name: p.stat().st_mtime_ns for p in _parts(out)}
    assert len(_stored_keys(out)) == 6
    # ... and with fewer replications: seeds extend, so the first 2 replications match
    full = sweep(mm1, GRID, replications=3, seed=11, workers=2, out=out, resume=True, progress=False, compact=False)
    pd.testing.assert_frame_equal(sequential, full)
    keys = _stored_keys(out)
    assert len(keys) == 12 and len(set(keys)) == 12  # nothing ran twice
    for name, mtime in parts_before.items():  # finished parts untouched
        assert (out / name).stat().st_mtime_ns == mtime
    new = [p for p in _parts(out) if p.name not in parts_before]
    new_keys = set().union(*(set(pq.read_table(p, columns=["key"]).column("key").to_pylist()) for p in new))
    assert new_keys.isdisjoint(first["key"]) and len(new_keys) == 6
    # resuming a finished sweep runs nothing
    again = sweep(mm1, GRID, replications=3, seed=11, workers=1, out=out, resume=True, progress=False, compact=False)
    pd.testing.assert_frame_equal(sequential, again)
    assert len(_stored_keys(out)) == 12 and len(_parts(out)) == len(parts_before) + len(new)
    # compaction (the default) leaves one part with the same rows
    sweep(mm1, GRID, replications=3, seed=11, workers=1, out=out, resume=True, progress=False)
    assert len(_parts(out)) == 1 and sorted(_stored_keys(out)) == sorted(keys)
    pd.testing.assert_frame_equal(sequential, sweep(mm1, GRID, replications=3, seed=11, out=out, resume=True,
                                                    progress=False))  # fmt: skip


@pytest.mark.parametrize("workers", [1, 2])
def test_interrupted_sweep_stops_its_workers_keeps_finished_runs_and_resumes(mm1, sequential, monkeypatch, tmp_path,
                                                                            workers):
    """Ctrl-C in the middle (here: KeyboardInterrupt as the 4th run's rows are stored):
    the sweep raises it, no worker process is left behind, the runs finished before it are
    on disk, and --resume runs only the others and gives the full table."""
    import multiprocessing

    real = sweep_mod._rows_of
    calls = {"n": 0}

    def interrupt_on_4th(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    out = tmp_path / "int.parquet"
    monkeypatch.setattr(sweep_mod, "_rows_of", interrupt_on_4th)
    with pytest.raises(KeyboardInterrupt):
        sweep(mm1, GRID, replications=3, seed=11, workers=workers, out=out, progress=False)
    assert not multiprocessing.active_children()
    stored = _stored_keys(out)
    assert len(stored) == 3 and set(stored) <= set(sequential["key"])
    monkeypatch.setattr(sweep_mod, "_rows_of", real)
    full = sweep(mm1, GRID, replications=3, seed=11, workers=workers, out=out, resume=True, progress=False)
    pd.testing.assert_frame_equal(sequential, full)
    assert sorted(_stored_keys(out)) == sorted(sequential["key"])  # the 3 stored runs were not redone


def test_resume_of_a_different_kind_of_sweep_is_refused(mm1, tmp_path):
    out = tmp_path / "k.parquet"
    sweep(mm1, {"workload.rate_per_s": [5]}, replications=1, workers=1, out=out, progress=False)
    with pytest.raises(LabError, match="network.latency_ms"):
        sweep(mm1, {"network.latency_ms": [1]}, replications=1, workers=1, out=out, resume=True, progress=False)


def test_resume_with_more_replications_runs_only_new_ones(mm1, tmp_path):
    out = tmp_path / "more.parquet"
    sweep(mm1, {"workload.rate_per_s": [5]}, replications=2, seed=1, workers=1, out=out, progress=False)
    df = sweep(mm1, {"workload.rate_per_s": [5]}, replications=5, seed=1, workers=1, out=out, resume=True,
               progress=False)  # fmt: skip
    assert len(_stored_keys(out)) == 5
    fresh = sweep(mm1, {"workload.rate_per_s": [5]}, replications=5, seed=1, workers=1, progress=False)
    pd.testing.assert_frame_equal(fresh, df)


def test_run_key_depends_on_full_scenario_and_seed(mm1):
    k = sweep_mod.run_key(mm1.model_dump(mode="json"), 1)
    assert k == sweep_mod.run_key(lab.load_scenario("mm1-teaching", duration_s=60, warmup_s=5).model_dump(mode="json"), 1)
    assert k != sweep_mod.run_key(mm1.model_dump(mode="json"), 2)
    assert k != sweep_mod.run_key(mm1.replace(**{"network.jitter_ms": 1}).model_dump(mode="json"), 1)


# -- failures ---------------------------------------------------------------------------------


def test_invalid_point_is_recorded_not_fatal(mm1):
    df = sweep(mm1, {"workload.rate_per_s": [4, -1, 6]}, replications=2, workers=2, progress=False)
    assert len(df) == 6
    bad = df[df["workload.rate_per_s"] == -1]
    assert bad["error"].str.contains("workload.rate_per_s").all()
    assert bad["latency_mean_s"].isna().all()
    good = df[df["workload.rate_per_s"] != -1]
    assert good["error"].isna().all() and (good["completed"] > 0).all()
    ci = sweep_ci(df, ["latency_mean_s"])
    assert sorted(ci["workload.rate_per_s"]) == [4, 6]


@pytest.mark.parametrize("workers", [1, 2])
def test_engine_error_is_recorded_not_fatal(mm1, monkeypatch, tmp_path, workers):
    """The engine raising for one point (here: the real engine, made to fail for one
    arrival rate) gives rows with the error; the other points run and are stored."""
    real = sweep_mod._simulate

    def fails_at_rate_5(scenario, seed):
        if scenario.workload.rate_per_s == 5:
            raise RuntimeError("engine broke at rate 5")
        return real(scenario, seed)

    monkeypatch.setattr(sweep_mod, "_simulate", fails_at_rate_5)  # forked workers inherit it
    out = tmp_path / "fail.parquet"
    df = sweep(mm1, {"workload.rate_per_s": [4, 5, 6]}, replications=2, workers=workers, out=out, progress=False)
    assert len(df) == 6 and len(_stored_keys(out)) == 6
    err = df.set_index("run_id")["error"]
    assert err[[2, 3]].tolist() == ["RuntimeError: engine broke at rate 5"] * 2
    assert err[[0, 1, 4, 5]].isna().all()


# -- confidence intervals -------------------------------------------------------------------------


def test_sweep_ci_matches_hand_computation():
    df = pd.DataFrame({
        "run_id": range(7), "point_id": [0, 0, 0, 1, 1, 1, 1], "replication": [0, 1, 2, 0, 1, 2, 3],
        "seed": 0, "rate": [1, 1, 1, 2, 2, 2, 2], "scenario": "x", "style": "events", "engine": "sim",
        "latency_mean_s": [1.0, 2.0, 6.0, 4.0, 4.0, 4.0, np.nan], "error": [None] * 7, "key": list("abcdefg"),
    })  # fmt: skip
    ci = sweep_ci(df)
    assert list(ci["metric"]) == ["latency_mean_s", "latency_mean_s"]
    r0, r1 = ci.iloc[0], ci.iloc[1]
    # point 0: mean 3, sample sd sqrt(7), t(0.975, 2) = 4.302652729911275
    assert r0["n"] == 3 and r0["mean"] == pytest.approx(3.0) and r0["std"] == pytest.approx(7**0.5)
    half = 4.302652729911275 * 7**0.5 / 3**0.5
    assert r0["ci_low"] == pytest.approx(3 - half) and r0["ci_high"] == pytest.approx(3 + half)
    assert r0["rate"] == 1 and r0["style"] == "events"
    # point 1: a NaN is not a replication; zero spread gives a zero-width interval
    assert r1["n"] == 3 and r1["ci_low"] == r1["ci_high"] == 4.0
    # a 90% interval is narrower; one replication has no interval
    assert sweep_ci(df, level=0.90).iloc[0]["half_width"] == pytest.approx(2.919985580355516 * 7**0.5 / 3**0.5)
    assert np.isnan(sweep_ci(df.iloc[:1]).iloc[0]["half_width"])
    with pytest.raises(LabError):
        sweep_ci(df, ["nope"])


def test_sweep_ci_on_a_real_sweep(crm):
    df = sweep(crm, {"propagation.poll_interval_ms": [4000, 16000]}, replications=4, workers=2, progress=False)
    ci = sweep_ci(df, ["staleness_mean_s", "wasted_polls"])
    assert len(ci) == 2 * 2 * 2
    sel = df[(df.point_id == 1) & (df["style"] == "orchestration")]["staleness_mean_s"]
    row = ci[(ci.point_id == 1) & (ci["style"] == "orchestration") & (ci.metric == "staleness_mean_s")].iloc[0]
    from scipy import stats

    h = stats.t.ppf(0.975, 3) * sel.std(ddof=1) / 2
    assert row["mean"] == pytest.approx(sel.mean()) and row["half_width"] == pytest.approx(h)
    stale = ci[(ci["style"] == "orchestration") & (ci.metric == "staleness_mean_s")].set_index("point_id")["mean"]
    # polling staleness is about half the interval: 4x the interval, about 4x staler
    assert 2.5 < stale[1] / stale[0] < 6
    assert stale[0] == pytest.approx(2.0, rel=0.5)


# -- sweep files and the CLI --------------------------------------------------------------------


def _write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_load_sweep_file_resolves_scenario_and_set(tmp_path):
    p = _write(tmp_path, """
        scenario: mm1-teaching
        set: {duration_s: 60, warmup_s: 5}
        grid: {workload.rate_per_s: [4, 6]}
        replications: 2
        seed: 5
    """)
    spec = load_sweep_file(p)
    assert spec.scenario.duration_s == 60 and spec.file.replications == 2 and spec.file.seed == 5
    (tmp_path / "my.yaml").write_text(preset_text("mm1-teaching"))
    q = _write(tmp_path, "scenario: my.yaml\ngrid: {style: [orchestration]}\n", "q.yaml")
    assert load_sweep_file(q).scenario.name == "mm1-teaching"


BAD_FILES = {
    "unknown top field": ("scenario: mm1-teaching\ngrid: {style: [events]}\nreplication: 3\n", "replication"),
    "missing grid": ("scenario: mm1-teaching\n", "grid"),
    "bad replications": ("scenario: mm1-teaching\ngrid: {style: [events]}\nreplications: 0\n", "replications"),
    "unknown grid key": ("scenario: mm1-teaching\ngrid: {workload.rate: [1, 2]}\n", "grid.workload.rate"),
    "bad set value": ("scenario: mm1-teaching\nset: {workload.rate_per_s: fast}\ngrid: {style: [events]}\n",
                      "set.workload.rate_per_s"),
    "unknown scenario": ("scenario: no-such-preset\ngrid: {style: [events]}\n", "scenario"),
    "yaml syntax": ("scenario: mm1-teaching\ngrid: {style: [events\n", "line"),
    "not a mapping": ("- 1\n- 2\n", None),
    "grid list of non-mappings": ("scenario: mm1-teaching\ngrid: [{workload.rate_per_s: 1}, 3]\n", "grid[1]"),
    "empty grid list": ("scenario: mm1-teaching\ngrid: {workload.rate_per_s: []}\n", "grid.workload.rate_per_s"),
    "replications a bool": ("scenario: mm1-teaching\ngrid: {style: [events]}\nreplications: true\n", "replications"),
    "replications a float": ("scenario: mm1-teaching\ngrid: {style: [events]}\nreplications: 2.5\n", "replications"),
    "seed negative": ("scenario: mm1-teaching\ngrid: {style: [events]}\nseed: -1\n", "seed"),
    "every point invalid": ("scenario: mm1-teaching\ngrid: {workload.rate_per_s: [-1, -2]}\n",
                            "grid.workload.rate_per_s (point 0)"),
    "fixed grid value invalid": ("scenario: mm1-teaching\ngrid: {workload.rate_per_s: [1, 2], network.latency_ms: -5}\n",
                                 "grid.network.latency_ms"),
    "grid sets a section whole, badly": ("scenario: mm1-teaching\ngrid: {workload: {rate_per_s: [1, 2]}}\n",
                                         "grid.workload.rate_per_s"),
    "reserved grid key": ("scenario: mm1-teaching\ngrid: {seed: [1, 2]}\n", "grid.seed"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_sweep_files_raise_lab_error_with_field(tmp_path, case):
    text, field = BAD_FILES[case]
    p = _write(tmp_path, text)
    with pytest.raises(LabError) as exc:
        spec = load_sweep_file(p)
        sweep(spec.scenario, spec.file.grid, replications=1, workers=1, progress=False, _source=spec.source)
    assert exc.value.source == str(p)
    if field:
        assert field in (exc.value.field or "")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab", "sweep", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})  # fmt: skip


def test_cli_bad_sweep_files_exit_2_one_line(tmp_path):
    for case in ("unknown grid key", "bad set value", "every point invalid", "replications a bool"):  # the rest: above
        p = _write(tmp_path, BAD_FILES[case][0], f"{case.replace(' ', '_')}.yaml")
        r = _cli(str(p), "--no-progress", cwd=tmp_path)
        assert r.returncode == 2, (case, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and str(p) in lines[0] and "Traceback" not in r.stderr, (case, r.stderr)
    r = _cli(str(tmp_path / "missing.yaml"), cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_cli_names_the_file_and_field_of_a_point_that_does_not_validate(tmp_path):
    """A grid value the scenario rejects is stored as a failed run, and the CLI says why on
    stderr, naming the sweep file and its grid field; the valid points still run."""
    p = _write(tmp_path, """
        scenario: mm1-teaching
        set: {duration_s: 40, warmup_s: 4}
        grid: {workload.rate_per_s: [4, -2]}
        replications: 2
        out: out/s.parquet
    """)
    r = _cli(str(p), "--workers", "1", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "4 runs" in r.stdout and "2 failed" in r.stdout
    warn = [ln for ln in r.stderr.splitlines() if "failed" in ln]
    assert len(warn) == 1 and str(p) in warn[0] and "grid.workload.rate_per_s (point 1)" in warn[0], r.stderr
    df = read_sweep(tmp_path / "out/s.parquet")
    assert df["error"].isna().sum() == 2 and (df.loc[df["error"].isna(), "completed"] > 0).all()


def test_cli_runs_and_resumes(tmp_path):
    p = _write(tmp_path, """
        scenario: mm1-teaching
        set: {duration_s: 40, warmup_s: 4}
        grid: {workload.rate_per_s: [4, 6]}
        replications: 2
        seed: 3
        out: out/s.parquet
    """)
    r = _cli(str(p), "--workers", "2", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "4 runs" in r.stdout and "0 failed" in r.stdout
    df = read_sweep(tmp_path / "out/s.parquet")
    assert len(df) == 4
    r = _cli(str(p), "--no-progress", cwd=tmp_path)  # exists, no --resume
    assert r.returncode == 2 and "--resume" in r.stderr
    r = _cli(str(p), "--resume", "--replications", "3", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(_stored_keys(tmp_path / "out/s.parquet")) == 6


def test_sweep_ci_covers_mm1_theory():
    """Replications are independent draws: their t interval covers the M/M/1 mean response
    time 1/(mu - lambda) at every load, and narrows as replications grow."""
    base = lab.load_scenario("mm1-teaching", duration_s=600, warmup_s=60)
    grid = {"workload.rate_per_s": [3.0, 5.0]}  # mu = 10/s
    df = sweep(base, grid, replications=8, seed=2026, workers=2, progress=False)
    ci = sweep_ci(df, ["latency_mean_s"], level=0.999).set_index("workload.rate_per_s")
    for lam in (3.0, 5.0):
        theory = 1 / (10 - lam)
        row = ci.loc[lam]
        assert row["ci_low"] <= theory <= row["ci_high"], (lam, theory, row.to_dict())
        assert row["half_width"] < 0.15 * theory
    few = sweep_ci(df[df.replication < 3], ["latency_mean_s"], level=0.999).set_index("workload.rate_per_s")
    assert (few["half_width"] > ci["half_width"]).all()
