"""Where sweep results live on disk: a directory of Parquet part files.

``data/sweeps/NAME.parquet/`` is a directory (the usual Parquet dataset layout) holding
``part-NNNNNN-TOKEN.parquet`` files, each a batch of finished runs, and ``_sweep.json``
describing the sweep.  Parts are written to a hidden temporary name and renamed, so a
reader (or a resumed sweep) never sees half a file.  ``pandas.read_parquet(path)`` reads
the whole directory; :func:`read_sweep` does the same and sorts the rows.

Every row carries ``key``, the hash of its run (full scenario + seed); resuming reads
only that column to learn which runs are done, so a sweep bigger than memory resumes.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import LabError

log = logging.getLogger(__name__)

SPEC_FILE = "_sweep.json"


def _parts(path: Path) -> list[Path]:
    return sorted(p for p in path.glob("part-*.parquet") if p.is_file())


class SweepStore:
    """Append-only store of run rows with one Arrow schema for every part.

    ``schema`` is a schema, or a function that makes it from the first rows written (so
    columns an engine adds are kept); a resumed store takes the schema of its parts.
    Rows are buffered and written as one part when ``flush_rows`` rows are waiting or
    ``flush_seconds`` have passed since the last write, and on :meth:`close`.
    """

    def __init__(
        self,
        path: str | Path,
        schema: pa.Schema | Callable[[list[dict[str, Any]]], pa.Schema],
        *,
        resume: bool = False,
        spec: Mapping[str, Any] | None = None,
        flush_rows: int = 512,
        flush_seconds: float = 5.0,
    ):
        self.path = Path(path)
        self.schema: pa.Schema | None = schema if isinstance(schema, pa.Schema) else None
        self._make_schema = schema
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._buffer: list[dict[str, Any]] = []
        self._warned = False
        self._last_flush = time.monotonic()
        if self.path.exists() and not self.path.is_dir():
            raise LabError("exists and is not a sweep directory; choose another --out", source=str(self.path))
        if self.path.exists() and _parts(self.path) and not resume:
            raise LabError(
                "already holds sweep results; pass --resume (resume=True) to continue it, or remove it",
                source=str(self.path),
            )
        self.path.mkdir(parents=True, exist_ok=True)
        parts = _parts(self.path)
        self._seq = len(parts)
        if parts:
            self.schema = pq.read_schema(parts[0]).remove_metadata()
        if spec is not None and not (self.path / SPEC_FILE).exists():
            (self.path / SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True, default=str) + "\n")

    def done_keys(self) -> set[str]:
        """Keys of the runs already stored (reads only the ``key`` column)."""
        if not _parts(self.path):
            return set()
        import pyarrow.dataset as ds  # (lazy: it costs a quarter second at import)

        table = ds.dataset([str(p) for p in _parts(self.path)], format="parquet").to_table(columns=["key"])
        return set(table.column("key").to_pylist())

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        self._buffer.extend(rows)
        if len(self._buffer) >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        if self.schema is None:
            self.schema = self._make_schema(self._buffer)
        extra = {c for row in self._buffer for c in row} - set(self.schema.names)
        if extra and not self._warned:
            log.warning("columns not in the stored schema are dropped: %s", ", ".join(sorted(extra)))
            self._warned = True
        table = pa.Table.from_pylist(self._buffer, schema=self.schema)
        name = f"part-{self._seq:06d}-{secrets.token_hex(4)}.parquet"
        tmp = self.path / f".{name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.path / name)
        log.debug("wrote %s (%d rows)", name, table.num_rows)
        self._seq += 1
        self._buffer.clear()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        self.flush()

    def compact(self, max_rows: int = 200_000) -> None:
        """Merge the parts into one file when they are small (a finished sweep that
        notebooks read).  The merged part is in place before the old ones go; a crash in
        between leaves duplicate rows that :func:`read_sweep` drops."""
        parts = _parts(self.path)
        if len(parts) < 2:
            return
        if sum(pq.ParquetFile(p).metadata.num_rows for p in parts) > max_rows:
            return
        import pyarrow.dataset as ds

        table = ds.dataset([str(p) for p in parts], format="parquet", schema=self.schema).to_table()
        name = f"part-{self._seq:06d}-{secrets.token_hex(4)}.parquet"
        tmp = self.path / f".{name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.path / name)
        self._seq += 1
        for p in parts:
            p.unlink()
        log.debug("compacted %d parts into %s", len(parts), name)

    def __enter__(self) -> SweepStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_sweep(path: str | Path, *, keys: set[str] | None = None, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a stored sweep (a directory of parts, or one Parquet file) as a DataFrame
    sorted by ``run_id``; with ``keys``, only those runs; with ``columns``, only those
    columns (``key`` and ``style`` are read as well when present, to drop duplicates)."""
    path = Path(path)
    if not path.exists():
        raise LabError("no such sweep", source=str(path))
    files = [str(p) for p in _parts(path)] if path.is_dir() else [str(path)]
    if not files:
        return pd.DataFrame()
    import pyarrow.dataset as ds

    dataset = ds.dataset(files, format="parquet")
    if columns is not None:
        extra = [c for c in ("key", "style") if c in dataset.schema.names and c not in columns]
        columns = [*columns, *extra]
    table = dataset.to_table(columns=columns)
    df = table.to_pandas()
    if keys is not None:
        df = df[df["key"].isin(keys)]
    if "key" in df.columns:
        df = df.drop_duplicates(subset=[c for c in ("key", "style") if c in df.columns])
    if "run_id" in df.columns:
        df = df.sort_values("run_id", kind="stable")
    return df.reset_index(drop=True)
