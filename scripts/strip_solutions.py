"""Make the participants' copies of the workshop notebooks: cells tagged ``solution`` are
replaced by a placeholder, outputs are cleared.

    .venv/bin/python scripts/strip_solutions.py                  # workshop/*.ipynb -> workshop/participant/
    .venv/bin/python scripts/strip_solutions.py --out build/ws   # somewhere else
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
TAG = "solution"
PLACEHOLDER_MD = "*(The solution is discussed in the room; the facilitator's copy has it.)*"
PLACEHOLDER_CODE = "# Your turn: write your own check here (the facilitator's copy has one)."


def strip(nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, int]:
    """A copy of ``nb`` with each solution cell replaced by a placeholder of the same kind,
    and no outputs.  Returns the notebook and the number of cells replaced."""
    out = nbformat.from_dict(nb)
    n = 0
    cells = []
    for cell in out.cells:
        if TAG in cell.get("metadata", {}).get("tags", []):
            n += 1
            if cell.cell_type == "code":
                new = nbformat.v4.new_code_cell(PLACEHOLDER_CODE)
            else:
                new = nbformat.v4.new_markdown_cell(PLACEHOLDER_MD)
            new.id = cell.get("id", f"placeholder-{n}")
            new.metadata["tags"] = ["placeholder"]
            cells.append(new)
            continue
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cells.append(cell)
    out.cells = cells
    return out, n


def strip_dir(src: Path, dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(src.glob("*.ipynb")):
        nb, _ = strip(nbformat.read(str(path), as_version=4))
        nbformat.validate(nb)
        target = dest / path.name
        nbformat.write(nb, str(target))
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the participants' workshop notebooks (solutions removed).")
    parser.add_argument("--src", type=Path, default=ROOT / "workshop")
    parser.add_argument("--out", type=Path, default=ROOT / "workshop" / "participant")
    args = parser.parse_args(argv)
    written = strip_dir(args.src, args.out)
    print(f"wrote {len(written)} participant notebooks to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
