"""Every notebook runs top to bottom: notebooks/, the workshop's facilitator copies and the
participants' copies (solutions stripped).  Executed with nbclient on the "python3" kernel
(``make setup`` installs it into the venv); cwd is the notebook's own folder."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
WORKSHOP = sorted((ROOT / "workshop").glob("*.ipynb"))
CELL_TIMEOUT_S = 300


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _execute(nb: nbformat.NotebookNode, cwd: Path) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    env_backup = dict(os.environ)
    # never start a shared Kafka broker from the tests (another test may own the lab's broker);
    # a broker that is already running (CI starts one) is used
    os.environ["LAB_NOTEBOOK_START_BROKER"] = "0"
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    try:
        client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, startup_timeout=120, kernel_name="python3",
                                shutdown_kernel="immediate", resources={"metadata": {"path": str(cwd)}})
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
    return nb


def _errors(nb: nbformat.NotebookNode) -> list[str]:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error":
                out.append(f"{o.get('ename')}: {o.get('evalue')}")
    return out


def _content(path: Path) -> list[tuple[str, str, tuple[str, ...]]]:
    """What a notebook says, independent of the nbformat version that wrote it."""
    nb = nbformat.read(str(path), as_version=4)
    return [(c.cell_type, c.source, tuple(c.metadata.get("tags", []))) for c in nb.cells]


def test_notebooks_exist_and_are_clean():
    assert [p.stem[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(9)]
    for path in NOTEBOOKS + WORKSHOP:
        nb = nbformat.read(str(path), as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs: commit it clean"


def test_workshop_has_solutions_and_strip_removes_them(tmp_path):
    strip = _load_script("strip_solutions")
    for path in WORKSHOP:
        nb = nbformat.read(str(path), as_version=4)
        tagged = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
        assert tagged, f"{path.name} has no solution cells"
        stripped, n = strip.strip(nb)
        assert n == len(tagged)
        assert len(stripped.cells) == len(nb.cells)
        assert not any("solution" in c.metadata.get("tags", []) for c in stripped.cells)
        texts = "\n".join(c.source for c in stripped.cells)
        for cell in tagged:
            assert cell.source not in texts
    written = strip.strip_dir(ROOT / "workshop", tmp_path)
    assert [p.name for p in written] == [p.name for p in WORKSHOP]


def test_committed_participant_copies_are_up_to_date(tmp_path):
    strip = _load_script("strip_solutions")
    strip.strip_dir(ROOT / "workshop", tmp_path)
    for path in WORKSHOP:
        committed = ROOT / "workshop" / "participant" / path.name
        assert committed.exists(), f"run scripts/strip_solutions.py: {committed} is missing"
        assert _content(committed) == _content(tmp_path / path.name), f"{committed} is stale: run scripts/strip_solutions.py"


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path):
    nb = _execute(nbformat.read(str(path), as_version=4), path.parent)
    assert not _errors(nb)


@pytest.mark.notebook
@pytest.mark.parametrize("version", ["facilitator", "participant"])
@pytest.mark.parametrize("path", WORKSHOP, ids=[p.stem for p in WORKSHOP])
def test_workshop_notebook_runs(path, version):
    nb = nbformat.read(str(path), as_version=4)
    if version == "participant":
        nb, _ = _load_script("strip_solutions").strip(nb)
    nb = _execute(nb, path.parent)
    assert not _errors(nb)


def test_committed_notebooks_match_their_generator(tmp_path):
    """scripts/make_notebooks.py is the source: the committed notebooks are what it writes."""
    make = _load_script("make_notebooks")
    make.main(["--root", str(tmp_path)])
    for path in NOTEBOOKS + WORKSHOP:
        fresh = tmp_path / path.relative_to(ROOT)
        assert _content(fresh) == _content(path), f"{path.relative_to(ROOT)} is stale: run scripts/make_notebooks.py"
