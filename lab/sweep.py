"""Parameter sweeps: a grid of scenario overrides times replications, run in parallel.

Words: a *point* is one set of parameters (one cell of the grid); a *run* is one point
with one replication seed.  ``lab.sweep`` returns one row per run and style, in long
format::

    run_id, point_id, replication, seed, <params...>, <summary columns...>, error, key

Seeds: replication ``r`` gets the seed of the ``r``-th child of
``numpy.random.SeedSequence(seed)``; every point uses the same replication seeds, so the
points (and the styles inside a run) are compared on common random numbers.  The table
depends only on the root seed, never on the executor: one worker, N processes or a Dask
cluster give the same rows.

Execution: in-process for ``workers=1``; local worker processes
(:class:`concurrent.futures.ProcessPoolExecutor`) by default; a Dask ``distributed``
cluster when ``scheduler`` is an address, a ``Client``, or ``"local"`` (an embedded
``LocalCluster``).  With ``out`` the rows stream to a Parquet directory as runs finish
(see :mod:`lab.sweep_store`) and ``resume=True`` skips the runs already stored there,
matched by the hash of the run's full scenario and seed.  A run that fails (a point
whose overrides do not validate, or an engine error) becomes a row with ``error`` set;
the sweep goes on.

``sweep_ci`` turns the runs into a tidy table of means and t-distribution confidence
intervals across replications, per point and style.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import itertools
import json
import logging
import math
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from .errors import LabError
from .records import SUMMARY_COLUMNS
from .scenario import Scenario, load_scenario, preset_names, read_yaml
from .sweep_store import SweepStore, read_sweep

log = logging.getLogger(__name__)

__all__ = ["expand_grid", "load_sweep_file", "read_sweep", "replication_seeds", "sweep", "sweep_ci", "sweep_params"]

META_COLUMNS = ["run_id", "point_id", "replication", "seed"]
TAIL_COLUMNS = ["error", "key"]
STRING_METRICS = {"scenario", "style", "engine"}
#: summary columns kept as metrics ("seed" is already a meta column)
METRIC_COLUMNS = [c for c in SUMMARY_COLUMNS if c != "seed"]
NUMERIC_METRICS = [c for c in METRIC_COLUMNS if c not in STRING_METRICS]


# -- grid and seeds ------------------------------------------------------------------------


def _is_values(v: Any) -> bool:
    return isinstance(v, list | tuple | range | np.ndarray | pd.Series | pd.Index)


def expand_grid(grid: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """The points of a grid, in order (the first key varies slowest).

    ``grid`` maps dotted scenario keys to a list of values (varied) or a scalar (fixed,
    kept as a column); or it is an explicit list of parameter dicts.
    """
    if grid is None:
        return [{}]
    if isinstance(grid, Mapping):
        keys = list(grid)
        for k in keys:
            if not isinstance(k, str) or not k:
                raise LabError("grid keys must be dotted scenario fields", source="<grid>", field=str(k))
        values = []
        for k in keys:
            v = grid[k]
            if _is_values(v):
                v = list(v.tolist() if hasattr(v, "tolist") else v)
                if not v:
                    raise LabError("empty list of values", source="<grid>", field=k)
                values.append(v)
            else:
                values.append([v])
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]
    if isinstance(grid, Sequence) and not isinstance(grid, str):
        points = []
        for i, p in enumerate(grid):
            if not isinstance(p, Mapping):
                raise LabError("a list grid must hold parameter mappings", source="<grid>", field=f"[{i}]")
            points.append(dict(p))
        if not points:
            raise LabError("the list of points is empty", source="<grid>")
        return points
    raise LabError("grid must be a mapping of key -> values or a list of parameter sets", source="<grid>")


def replication_seeds(seed: int, replications: int) -> list[int]:
    """One seed per replication, from independent children of ``SeedSequence(seed)``
    (63-bit, so they fit a Parquet int64 column)."""
    children = np.random.SeedSequence(seed).spawn(replications)
    return [int(c.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)) for c in children]


def run_key(scenario_dump: Mapping[str, Any], seed: int) -> str:
    """The identity of a run: hash of the full scenario (sorted JSON) and the seed."""
    text = json.dumps({"scenario": scenario_dump, "seed": int(seed)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# -- plan ----------------------------------------------------------------------------------


class _Task(NamedTuple):
    run_id: int
    key: str
    seed: int
    scenario: Scenario


@dataclass
class SweepPlan:
    """Everything a sweep runs: the points, their scenarios (or why they are invalid),
    the replication seeds, and the output schema."""

    base: Scenario
    points: list[dict[str, Any]]
    scenarios: list[Scenario | None]
    point_errors: list[str | None]
    seeds: list[int]
    param_types: dict[str, pa.DataType]
    keys: list[list[str]] = field(default_factory=list)

    @property
    def replications(self) -> int:
        return len(self.seeds)

    @property
    def n_runs(self) -> int:
        return len(self.points) * len(self.seeds)

    def run_id(self, point_id: int, replication: int) -> int:
        return point_id * self.replications + replication

    def locate(self, run_id: int) -> tuple[int, int]:
        return divmod(run_id, self.replications)

    def schema(self, rows: Sequence[Mapping[str, Any]] = ()) -> pa.Schema:
        """The output schema: meta, parameters, the summary columns, then any extra
        summary columns the engine reported in ``rows`` (strings stay strings, the rest
        is float64), then ``error`` and ``key``."""
        fields = [pa.field(c, pa.int64()) for c in META_COLUMNS]
        fields += [pa.field(k, t) for k, t in self.param_types.items()]
        taken = set(META_COLUMNS) | set(self.param_types) | set(TAIL_COLUMNS)
        for c in METRIC_COLUMNS:
            if c not in taken:
                fields.append(pa.field(c, pa.string() if c in STRING_METRICS else pa.float64()))
                taken.add(c)
        for row in rows:
            for c, v in row.items():
                if c not in taken:
                    fields.append(pa.field(c, pa.string() if isinstance(v, str) else pa.float64()))
                    taken.add(c)
        fields += [pa.field("error", pa.string()), pa.field("key", pa.string())]
        return pa.schema(fields)

    def tasks(self, skip: set[str] = frozenset()) -> Iterator[_Task]:
        for pid, sc in enumerate(self.scenarios):
            if sc is None:
                continue
            for r, s in enumerate(self.seeds):
                key = self.keys[pid][r]
                if key not in skip:
                    yield _Task(self.run_id(pid, r), key, s, sc)


def _param_type(values: list[Any]) -> tuple[pa.DataType, bool]:
    """Arrow type of a parameter column; ``True`` when values must be JSON-encoded."""
    present = [v for v in values if v is not None]
    if not present:
        return pa.string(), False
    if all(isinstance(v, bool) for v in present):
        return pa.bool_(), False
    if all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in present):
        return pa.int64(), False
    if all(isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool) for v in present):
        return pa.float64(), False
    if all(isinstance(v, str) for v in present):
        return pa.string(), False
    return pa.string(), True


def plan_sweep(
    scenario: Scenario | str | Path,
    grid: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
    *,
    replications: int = 10,
    seed: int = 0,
    source: str = "<grid>",
) -> SweepPlan:
    """Expand the grid, build (and validate) every point's scenario, draw the seeds.

    A grid key that is not a scenario field raises :class:`LabError`; a point whose
    values do not validate is kept, and its runs are recorded with the error."""
    base = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    if not isinstance(replications, int) or isinstance(replications, bool) or replications < 1:
        raise LabError(f"replications must be a whole number >= 1 (got {replications!r})", source=source, field="replications")
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
        raise LabError(f"seed must be a whole number >= 0 (got {seed!r})", source=source, field="seed")
    try:
        points = expand_grid(grid)
    except LabError as exc:
        sub = exc.field or ""
        raise LabError(exc.message, source=source, field=f"grid{sub if sub.startswith('[') or not sub else '.' + sub}") from None
    keys = list(dict.fromkeys(k for p in points for k in p))
    param_types: dict[str, pa.DataType] = {}
    json_keys = set()
    for k in keys:
        t, as_json = _param_type([p.get(k) for p in points])
        param_types[k] = t
        if as_json:
            json_keys.add(k)
        if k in META_COLUMNS or k in TAIL_COLUMNS:
            raise LabError("is reserved for sweep bookkeeping", source=source, field=f"grid.{k}")
    # a key that names no scenario field is a mistake in the sweep, not a failing point
    for k in keys:
        try:
            base.replace(**{k: next(p[k] for p in points if k in p)})
        except LabError as exc:
            if exc.message == "unknown field" or exc.message.startswith("conflicting"):
                where = "" if exc.field in (None, k) else f" ({exc.field})"
                raise LabError(f"not a scenario field{where}", source=source, field=f"grid.{k}") from None
    scenarios: list[Scenario | None] = []
    errors: list[str | None] = []
    first_bad: LabError | None = None
    for i, p in enumerate(points):
        try:
            scenarios.append(base.replace(**p))
            errors.append(None)
        except LabError as exc:  # named as the sweep's own field, so the user finds it
            scenarios.append(None)
            bad = LabError(exc.message, source=source, field=f"{_grid_field(exc.field, p)} (point {i})")
            first_bad = first_bad or bad
            if all(sc is None for sc in scenarios) and i == len(points) - 1:  # nothing can run: the sweep is wrong
                more = f" (no point of the {len(points)} is a valid scenario)" if len(points) > 1 else ""
                raise LabError(first_bad.message + more, source=source, field=first_bad.field) from None
            errors.append(f"LabError: {bad.one_line()}")
    stored_points = [
        {k: (json.dumps(p.get(k), sort_keys=True) if k in json_keys and k in p else p.get(k)) for k in keys}
        for p in points
    ]
    seeds = replication_seeds(int(seed), replications)
    plan = SweepPlan(base, stored_points, scenarios, errors, seeds, param_types)
    base_dump = base.model_dump(mode="json")
    for p, sc in zip(points, scenarios, strict=True):
        dump = sc.model_dump(mode="json") if sc is not None else {"base": base_dump, "overrides": p}
        plan.keys.append([run_key(dump, s) for s in seeds])
    return plan


def _grid_field(field: str | None, point: Mapping[str, Any]) -> str:
    """The sweep-file name of a scenario field a point's override broke: ``grid.KEY`` for
    the grid key it came from (``grid.workload`` for a ``workload.rate_per_s`` error when
    the grid set ``workload`` whole), else the scenario field itself."""
    if not field:
        return "grid"
    for k in sorted(point, key=len, reverse=True):
        if field == k or field.startswith(k + ".") or field.startswith(k + "["):
            return f"grid.{field}"
    return field


# -- one run ---------------------------------------------------------------------------------


def _simulate(scenario: Scenario, seed: int) -> pd.DataFrame:
    from . import simulate  # the SimPy engine (lab.sim)

    return simulate(scenario, seed=seed).summary


class _Result(NamedTuple):
    run_id: int
    key: str
    rows: list[dict[str, Any]]
    error: str | None
    elapsed_s: float


def _to_native(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _run_task(task: _Task) -> _Result:
    """Run one point with one seed (in whichever process the executor chose)."""
    t0 = time.perf_counter()
    try:
        summary = _simulate(task.scenario, task.seed)
        rows = []
        columns = [str(c) for c in summary.columns]
        for values in summary.to_numpy(dtype=object).tolist():  # (to_dict is ~50x slower)
            row: dict[str, Any] = {}
            for c, v in zip(columns, values, strict=True):
                if c == "seed":
                    continue
                v = _to_native(v)
                if c in STRING_METRICS or isinstance(v, str):
                    row[c] = None if v is None else str(v)
                else:
                    row[c] = None if v is None else float(v)
            rows.append(row)
        return _Result(task.run_id, task.key, rows, None, time.perf_counter() - t0)
    except Exception as exc:  # a failing run is recorded, not fatal to the sweep
        msg = " ".join(f"{type(exc).__name__}: {exc}".split())
        return _Result(task.run_id, task.key, [], msg[:2000], time.perf_counter() - t0)


# -- executors -------------------------------------------------------------------------------


def _window(workers: int) -> int:
    return max(2, 4 * workers)


def _run_sequential(tasks: Iterable[_Task]) -> Iterator[_Result]:
    for t in tasks:
        yield _run_task(t)


def _mp_context() -> multiprocessing.context.BaseContext:
    """``fork`` on Linux: workers start in milliseconds with lab already imported, and
    scripts need no ``if __name__ == "__main__"`` guard.  Elsewhere ``spawn``."""
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


class _Processes:
    """Local worker processes with a bounded window of submitted runs (so a sweep of a
    million runs does not hold a million futures).  The pool starts, and its workers
    fork, when this object is made: before the progress bar starts its thread."""

    def __init__(self, tasks: Iterable[_Task], workers: int):
        self._it = iter(tasks)
        self._pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context(), initializer=_worker_init)
        self._pending = {self._pool.submit(_run_task, t) for t in itertools.islice(self._it, _window(workers))}

    def __iter__(self) -> Iterator[_Result]:
        try:
            while self._pending:
                done, self._pending = cf.wait(self._pending, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
                for t in itertools.islice(self._it, len(done)):
                    self._pending.add(self._pool.submit(_run_task, t))
        except BaseException:  # Ctrl-C, or the caller stopped early: do not wait for runs in flight
            self.close(abort=True)
            raise
        finally:
            self.close()

    def close(self, abort: bool = False) -> None:
        """Stop the pool.  ``abort`` (an interrupt): the workers are terminated at once,
        their runs in flight are lost (a resumed sweep redoes them); otherwise the pool
        finishes the runs it has started."""
        for fut in self._pending:
            fut.cancel()
        if abort:
            for proc in list((getattr(self._pool, "_processes", None) or {}).values()):
                if proc.is_alive():
                    proc.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)


def _worker_init() -> None:
    """In a worker process: Ctrl-C is the parent's to handle (it stops the workers); a
    worker dying of its own KeyboardInterrupt mid-run would break the pool instead."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Dask:
    """Runs on a Dask ``distributed`` cluster: a given ``Client``, an address, or
    ``"local"`` (an embedded ``LocalCluster`` of worker processes, closed at the end).
    A bounded window of submitted runs, as for local processes."""

    def __init__(self, tasks: Iterable[_Task], scheduler: Any, workers: int | None):
        from distributed import Client, LocalCluster, as_completed

        self._cluster = None
        self._own = False
        if isinstance(scheduler, Client):
            self._client = scheduler
        elif scheduler == "local":
            self._cluster = LocalCluster(
                n_workers=workers or min(os.cpu_count() or 1, 4),
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",  # a free port: never a clash with another cluster on 8787
                silence_logs=logging.WARNING,
            )
            self._client, self._own = Client(self._cluster), True
            log.info("embedded Dask LocalCluster %s, dashboard %s", self._cluster.scheduler_address,
                     self._client.dashboard_link)
        else:
            try:
                self._client, self._own = Client(str(scheduler), timeout="10s"), True
            except (OSError, TimeoutError) as exc:
                raise LabError(
                    f"cannot reach the Dask scheduler: {exc}", source="--scheduler", field=str(scheduler)
                ) from None
        n = workers or max(1, len(self._client.scheduler_info().get("workers", {})))
        self._it = iter(tasks)
        self._tasks: dict[Any, _Task] = {}
        self._ac = as_completed([self._submit(t) for t in itertools.islice(self._it, _window(n))])

    def _submit(self, task: _Task) -> Any:
        fut = self._client.submit(_run_task, task, pure=False)
        self._tasks[fut.key] = task
        return fut

    def __iter__(self) -> Iterator[_Result]:
        try:
            for fut in self._ac:
                task = self._tasks.pop(fut.key)
                try:
                    res = fut.result()
                except Exception as exc:  # the worker died on this run (memory, crash): record it
                    msg = " ".join(f"{type(exc).__name__}: {exc}".split())[:2000]
                    res = _Result(task.run_id, task.key, [], msg, float("nan"))
                fut.release()
                yield res
                nxt = next(self._it, None)
                if nxt is not None:
                    self._ac.add(self._submit(nxt))
        finally:
            self.close()

    def close(self, abort: bool = False) -> None:
        """Release the client (and the embedded cluster); runs in flight are abandoned."""
        if self._own:
            self._own = False
            self._client.close()
            if self._cluster is not None:
                self._cluster.close()


# -- the sweep --------------------------------------------------------------------------------


def _rows_of(plan: SweepPlan, run_id: int, key: str, rows: list[dict[str, Any]], error: str | None) -> list[dict]:
    pid, rep = plan.locate(run_id)
    head = {"run_id": run_id, "point_id": pid, "replication": rep, "seed": plan.seeds[rep], **plan.points[pid]}
    if not rows:
        return [{**head, "error": error, "key": key}]
    return [{**head, **r, "error": error, "key": key} for r in rows]


def sweep(
    scenario: Scenario | str | Path,
    grid: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    *,
    replications: int = 10,
    seed: int = 0,
    workers: int | None = None,
    scheduler: Any = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    compact: bool = True,
    load: bool = True,
    _source: str = "<grid>",
) -> pd.DataFrame | None:
    """Run ``scenario`` at every point of ``grid``, ``replications`` times each.

    ``grid`` maps dotted scenario keys (``"workload.rate_per_s"``, ``"style"``) to a list
    of values or a fixed scalar, or is a list of parameter dicts.  ``workers``: 1 runs
    in this process, N uses N local processes (default: the CPU count); ``scheduler``
    (an address, a ``distributed.Client`` or ``"local"``) runs on Dask instead.  ``out``
    (a ``.parquet`` directory) stores rows as runs finish; ``resume=True`` skips runs
    already stored there; ``compact`` merges the stored parts into one file when the
    sweep finishes.  ``progress=False`` hides the progress bar.  Returns the long-format
    table sorted by ``run_id``; with ``out`` and ``load=False``, nothing (for sweeps
    bigger than memory: read the directory with ``pyarrow.dataset`` or ``dask.dataframe``).
    """
    plan = plan_sweep(scenario, grid, replications=replications, seed=seed, source=_source)
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise LabError(f"workers must be a whole number >= 1 (got {workers!r})", source="--workers")
    if resume and out is None:
        raise LabError("resume needs an output path (out / --out)", source="--resume")
    if not load and out is None:
        raise LabError("load=False needs an output path (out)", source="load")
    all_keys = {k for ks in plan.keys for k in ks}
    store = None
    done: set[str] = set()
    if out is not None:
        spec = {
            "scenario": plan.base.name,
            "grid": grid if isinstance(grid, Mapping) else list(grid or []),
            "replications": plan.replications,
            "seed": int(seed),
            "seeds": plan.seeds,
        }
        store = SweepStore(out, plan.schema, resume=resume, spec=spec)
        if store.schema is not None:
            missing = [k for k in plan.param_types if k not in store.schema.names]
            if missing:
                raise LabError(
                    f"the stored sweep has no column for parameter(s) {', '.join(missing)}: "
                    "resume only the same kind of sweep, or choose another out",
                    source=str(out),
                )
        done = store.done_keys() & all_keys
        if done:
            log.info("resuming %s: %d of %d runs already stored", out, len(done), plan.n_runs)
    kept: list[dict[str, Any]] = []  # only when not streaming to disk

    def emit(rows: list[dict[str, Any]]) -> None:
        if store is not None:
            store.append(rows)
        else:
            kept.extend(rows)

    from tqdm.auto import tqdm

    tasks = plan.tasks(skip=done)
    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    results: Iterable[_Result]
    if scheduler is not None:
        results = _Dask(tasks, scheduler, workers)
    elif n_workers == 1:
        results = _run_sequential(tasks)
    else:
        results = _Processes(tasks, n_workers)
    bar = tqdm(
        total=plan.n_runs,
        initial=len(done),
        unit="run",
        desc=f"sweep {plan.base.name}",
        disable=not progress,
        dynamic_ncols=True,
    )
    n_failed = 0
    per_point = [sum(k in done for k in ks) for ks in plan.keys]  # runs done per point
    points_done = sum(n == plan.replications for n in per_point)
    bar.set_postfix({"points": f"{points_done}/{len(plan.points)}"}, refresh=False)

    def tick(run_id: int) -> None:
        nonlocal points_done
        pid = plan.locate(run_id)[0]
        per_point[pid] += 1
        points_done += per_point[pid] == plan.replications
        post = {"points": f"{points_done}/{len(plan.points)}"}
        if n_failed:
            post["failed"] = str(n_failed)
        bar.set_postfix(post, refresh=False)
        bar.update(1)

    t0 = time.perf_counter()
    try:
        for res in results:
            if res.error is not None:
                n_failed += 1
                log.warning("run %d failed: %s", res.run_id, res.error)
            emit(_rows_of(plan, res.run_id, res.key, res.rows, res.error))
            tick(res.run_id)
        # points that did not validate: recorded after the runs, so that the first part
        # written (which fixes the stored columns) has the engine's extra summary columns
        for pid, err in enumerate(plan.point_errors):
            if err is None:
                continue
            for r in range(plan.replications):
                key = plan.keys[pid][r]
                if key not in done:
                    emit(_rows_of(plan, plan.run_id(pid, r), key, [], err))
                    n_failed += 1
                    tick(plan.run_id(pid, r))
        if store is not None:
            store.close()
            if compact:
                store.compact()
    except BaseException:  # Ctrl-C (or a failing store): stop the workers now, keep what is stored
        if isinstance(results, _Processes | _Dask):
            results.close(abort=True)
        raise
    finally:
        bar.close()
        if isinstance(results, _Processes | _Dask):
            results.close()
        if store is not None:
            store.close()  # the finished runs buffered so far are written: --resume starts after them
    log.info("sweep %s: %d runs in %.1f s, %d failed", plan.base.name, plan.n_runs, time.perf_counter() - t0, n_failed)
    if store is not None:
        if not load:
            return None
        df = read_sweep(out, keys=all_keys)
    else:
        df = pd.DataFrame(kept).sort_values("run_id", kind="stable").reset_index(drop=True)
    return _conform(df, plan)


def _conform(df: pd.DataFrame, plan: SweepPlan) -> pd.DataFrame:
    """The same columns and dtypes whether the rows came from memory or from disk."""
    base = set(plan.schema().names)
    sample = {}
    for c in df.columns:
        if c not in base:
            values = df[c].dropna()
            sample[c] = values.iloc[0] if len(values) else None
    schema = plan.schema([sample])
    table = pa.Table.from_pandas(df.reindex(columns=schema.names), schema=schema, preserve_index=False)
    out = table.to_pandas()
    out.attrs["params"] = list(plan.param_types)
    return out


# -- confidence intervals ---------------------------------------------------------------------


def sweep_params(df: pd.DataFrame) -> list[str]:
    """The parameter columns of a sweep table: ``df.attrs["params"]`` when set (as
    :func:`sweep` does), else the columns between ``seed`` and ``scenario``."""
    if "params" in df.attrs:
        return [c for c in df.attrs["params"] if c in df.columns]
    cols = list(df.columns)
    if "seed" not in cols:
        return []
    start = cols.index("seed") + 1
    end = next((i for i in range(start, len(cols)) if cols[i] in METRIC_COLUMNS and cols[i] != "style"), len(cols))
    return cols[start:end]


def sweep_ci(df: pd.DataFrame, metrics: Sequence[str] | None = None, level: float = 0.95) -> pd.DataFrame:
    """Mean and t-distribution confidence interval across replications, per point,
    style and metric (tidy: one row per point x style x metric).

    Columns: point_id, the parameters, scenario/style/engine, ``metric``, ``n``
    (replications with a value), ``mean``, ``std``, ``ci_low``, ``ci_high``,
    ``half_width``.  Failed runs are left out (``n`` shows it); with ``n < 2`` the
    interval is NaN.
    """
    from scipy import stats

    if not 0 < level < 1:
        raise LabError(f"level must be between 0 and 1 (got {level})", field="level")
    params = sweep_params(df)
    labels = [c for c in ("scenario", "style", "engine") if c in df.columns and c not in params]
    if metrics is None:
        skip = set(META_COLUMNS) | set(TAIL_COLUMNS) | set(params) | set(labels)
        metrics = [c for c in df.columns if c not in skip and pd.api.types.is_numeric_dtype(df[c])]
    else:
        missing = [m for m in metrics if m not in df.columns]
        if missing:
            raise LabError(f"no such metric column(s): {', '.join(missing)}", field="metrics")
        metrics = list(metrics)
    ok = df[df["error"].isna()] if "error" in df.columns else df
    group = ["point_id", *params, *labels]
    long = ok.melt(id_vars=group, value_vars=metrics, var_name="metric", value_name="value")
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    g = long.groupby([*group, "metric"], dropna=False, sort=False)["value"]
    out = g.agg(n="count", mean="mean", std="std").reset_index()
    order = {m: i for i, m in enumerate(metrics)}
    out = out.sort_values(
        ["point_id", *(["style"] if "style" in out.columns else []), "metric"],
        key=lambda s: s.map(order) if s.name == "metric" else s,
        kind="stable",
    ).reset_index(drop=True)
    n = out["n"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        tcrit = np.where(n >= 2, stats.t.ppf((1 + level) / 2, np.maximum(n - 1, 1)), np.nan)
        half = tcrit * out["std"].to_numpy(dtype=float) / np.sqrt(n)
    out["ci_low"] = out["mean"] - half
    out["ci_high"] = out["mean"] + half
    out["half_width"] = half
    out["level"] = level
    return out


# -- sweep files and the CLI ----------------------------------------------------------------


class SweepFile(BaseModel):
    """A sweep file: which scenario, what to vary, how often, where to store."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    scenario: str = Field(min_length=1)
    overrides: dict[str, Any] = Field(default_factory=dict, alias="set")
    grid: dict[str, Any] | list[dict[str, Any]]
    replications: StrictInt = Field(default=10, ge=1)  # strict: "true" or 2.0 is a mistake, not 1 or 2
    seed: StrictInt = Field(default=0, ge=0)
    out: str | None = None
    description: str = ""


def _loc(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif isinstance(p, str) and ("[" in p or p in ("str", "int")):
            continue
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts) or "(top level)"


@dataclass
class SweepSpec:
    """A validated sweep file with its scenario loaded."""

    source: str
    file: SweepFile
    scenario: Scenario


def load_sweep_file(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file; every problem is a :class:`LabError` naming the
    file and the field."""
    path = Path(path)
    source = str(path)
    data = read_yaml(path)
    if not isinstance(data, Mapping):
        raise LabError("a sweep file must be a mapping with scenario, grid, replications, seed", source=source)
    try:
        spec = SweepFile.model_validate(dict(data))
    except ValidationError as exc:
        err = max(exc.errors(), key=lambda e: len(e["loc"]))  # the deepest branch of a union
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (expected scenario, set, grid, replications, seed, out, description)"
        elif err["type"] not in ("missing",) and not isinstance(err.get("input"), dict | list):
            msg = f"{msg} (got {err.get('input')!r})"
        raise LabError(msg, source=source, field=_loc(tuple(err["loc"]))) from None
    name = spec.scenario
    near = path.parent / name
    if name in preset_names() and not Path(name).exists() and not near.exists():
        target: str | Path = name
    elif near.exists():
        target = near
    else:
        target = name
    try:
        base = load_scenario(target)
    except LabError as exc:
        if exc.source == str(target) and exc.field is None:
            raise LabError(exc.message, source=source, field="scenario") from None
        raise
    if spec.overrides:
        try:
            base = base.replace(**spec.overrides)
        except LabError as exc:
            raise LabError(exc.message, source=source, field=f"set.{exc.field}" if exc.field else "set") from None
    return SweepSpec(source, spec, base)
