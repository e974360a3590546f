"""Notebook sources: jupytext text in `solutions/`, built into `.ipynb`.

Every notebook has one source of truth: a jupytext "percent" file
`solutions/<assignment>/<notebook>.py`, reviewable as text. `build_source`
turns it into the instructor notebook beside it (ignored by git), which
nbgrader's `generate_assignment` turns into the student version in
`assignments/` (committed, checked in CI to be in sync).

nbgrader metadata is written in short form in the source and completed here:

    # %% nbgrader={"grade_id": "dot_score", "solution": true}
    # %% nbgrader={"grade_id": "test_dot_score", "points": 1}

A cell with `points` is a graded, locked test cell; a cell with `solution`
is an answer cell the student edits; both get `schema_version` 3.
"""

import copy
import json
from pathlib import Path

import jupytext
import nbformat

__all__ = [
    "NotebookError",
    "build_source",
    "complete_metadata",
    "find_sources",
    "normalized_json",
]

KERNELSPEC = {
    "display_name": "Python 3 (ipykernel)",
    "language": "python",
    "name": "python3",
}


class NotebookError(ValueError):
    """A notebook source breaks one of the kit's rules."""


def complete_metadata(cell, where):
    """Fill in nbgrader's metadata from the short form; return the cell."""
    meta = cell.metadata.get("nbgrader")
    if meta is None:
        return cell
    meta = dict(meta)
    if "grade_id" not in meta:
        raise NotebookError(f"{where}: nbgrader metadata without a grade_id: {meta}")
    points = meta.get("points")
    solution = bool(meta.get("solution", False))
    if points is not None and solution:
        raise NotebookError(
            f"{where}: cell {meta['grade_id']} has both points and solution"
        )
    full = {
        "grade": points is not None,
        "grade_id": meta["grade_id"],
        "locked": points is not None or bool(meta.get("locked", False)),
        "schema_version": 3,
        "solution": solution,
        "task": False,
    }
    if points is not None:
        full["points"] = points
    cell.metadata["nbgrader"] = full
    return cell


def build_source(path):
    """Read a jupytext source and return the instructor notebook (no outputs)."""
    path = Path(path)
    notebook = jupytext.read(path, fmt="py:percent")
    ids = set()
    for index, cell in enumerate(notebook.cells):
        complete_metadata(cell, f"{path.name} cell {index}")
        meta = cell.metadata.get("nbgrader")
        if meta:
            if meta["grade_id"] in ids:
                raise NotebookError(
                    f"{path.name}: grade_id {meta['grade_id']} used twice"
                )
            ids.add(meta["grade_id"])
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.id = f"cell-{index}"
    notebook.metadata = {
        "kernelspec": dict(KERNELSPEC),
        "language_info": {"name": "python"},
    }
    nbformat.validate(notebook)
    return notebook


def find_sources(solutions_dir):
    """The jupytext notebook sources: `solutions/<assignment>/<notebook>.py`."""
    found = []
    for path in sorted(Path(solutions_dir).glob("*/*.py")):
        head = path.read_text(encoding="utf-8")[:2000]
        if "# %%" in head:
            found.append(path)
    return found


def write_notebook(notebook, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = normalized_json(notebook)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


def normalized_json(notebook):
    """A stable JSON text: sorted keys, one-space indent, trailing newline."""
    data = copy.deepcopy(dict(notebook)) if not isinstance(notebook, dict) else notebook
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
