"""Time autograding one correct submission, and split where the time goes.

Reports, as medians over a few runs measured in this run: the whole
`nbgrader autograde` of one submission as the kit grades it (sandboxed
kernel, verdicts decided outside the kernel) and as plain nbgrader grades
the same notebook (plain kernel, nbgrader's own Execute, checks deciding in
the kernel); their ratio is the overhead of isolation and trusted verdicts
(goal: at most x1.3). Also nbgrader's own start-up (`nbgrader --version`)
and, inside the notebook, the kernel start, the import cells, the graded
test cells and the other cells (nbclient timings). Goal for Assignment 1:
at most 60 s per submission on 2 CPU cores.

    python benchmarks/grading_timing.py [--runs 3]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from autograder import sandbox
from autograder.pipeline import Course

sys.path.insert(0, str(Path(__file__).parent))
from notebook_timing import _seconds


def split_in_kernel(notebook):
    """kernel start, imports, graded tests, other cells: seconds each."""
    os.environ["NBGRADER_EXECUTION"] = "autograde"  # as nbgrader sets it: no training
    try:
        client = NotebookClient(
            notebook, timeout=600, kernel_name="python3", record_timing=True
        )
        started = time.perf_counter()
        with client.setup_kernel():
            kernel_start = time.perf_counter() - started
            for index, cell in enumerate(notebook.cells):
                if cell.cell_type == "code":
                    client.execute_cell(cell, index)
    finally:
        del os.environ["NBGRADER_EXECUTION"]
    parts = {
        "kernel start": kernel_start,
        "imports": 0.0,
        "graded tests": 0.0,
        "other cells": 0.0,
    }
    exercises_begun = False
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        exercises_begun = exercises_begun or bool(meta.get("solution"))
        if meta.get("grade"):
            parts["graded tests"] += _seconds(cell)
        elif not exercises_begun and re.search(r"^(import|from) ", cell.source, re.M):
            parts["imports"] += _seconds(cell)
        else:
            parts["other cells"] += _seconds(cell)
    return parts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        course = Course(grading_dir=Path(scratch) / "grading")
        course.prepare_grading()
        for assignment in course.assignments():
            solution = next(
                s for s in course.samples(assignment) if s.name == "solution"
            )
            notebook = course.make_submission(assignment, solution)
            path = Path(scratch) / "solution.ipynb"
            nbformat.write(notebook, path)
            whole, plain, startup, splits = [], [], [], []
            for run in range(args.runs):
                # Alternate the kit and plain nbgrader so that both see the
                # same machine load: the ratio is the kit's overhead.
                for kit, times in ((True, whole), (False, plain)):
                    os.environ["KIT_SANDBOX"] = "1" if kit else "0"
                    os.environ["KIT_PLAIN_NBGRADER"] = "0" if kit else "1"
                    course.prepare_grading([assignment])
                    result = course.grade_one(assignment, f"bench{run}", notebook)
                    assert result.total == sum(result.max_scores.values()), result
                    times.append(result.seconds)
                os.environ.pop("KIT_SANDBOX")
                os.environ.pop("KIT_PLAIN_NBGRADER")
                started = time.perf_counter()
                subprocess.run(
                    [str(Path(sys.executable).with_name("nbgrader")), "--version"],
                    capture_output=True,
                    check=True,
                )
                startup.append(time.perf_counter() - started)
                splits.append(split_in_kernel(nbformat.read(path, as_version=4)))
            print(
                f"{assignment}: autograding one correct submission, "
                f"median of {args.runs}:"
            )
            print(
                f"  the kit (sandbox, trusted): {statistics.median(whole):6.1f} s "
                f"(runs: {', '.join(f'{w:.1f}' for w in whole)}); goal <= 60 s"
            )
            ratio = statistics.median(whole) / statistics.median(plain)
            print(
                f"  plain nbgrader:             {statistics.median(plain):6.1f} s "
                f"(runs: {', '.join(f'{p:.1f}' for p in plain)}); "
                f"overhead x{ratio:.2f}, goal <= x1.3"
            )
            print(f"  {sandbox.describe()}")
            print(f"  nbgrader start-up alone:    {statistics.median(startup):6.1f} s")
            for key in splits[0]:
                value = statistics.median(s[key] for s in splits)
                print(f"  {key + ':':<27} {value:6.1f} s")


if __name__ == "__main__":
    main()
