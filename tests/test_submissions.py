"""Malformed submissions get a clear reason; an interrupted batch resumes.

These run the grading job's own logic with the engine's workers replaced by
a stand-in, so they are fast; `test_grading.py` grades for real.
"""

import json

import nbformat
import pytest

from autograder.job import GradingJob
from autograder.pipeline import (
    MAX_SUBMISSION_BYTES,
    Course,
    inspect_submission,
)
from autograder.records import Records

ASSIGNMENT = "01_attention_seq2seq"


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def notebook_text(source="print(1)", **metadata):
    notebook = nbformat.v4.new_notebook(metadata=metadata)
    cell = nbformat.v4.new_code_cell(source)
    cell.outputs = [nbformat.v4.new_output("stream", text="x" * 1000)]
    notebook.cells = [cell]
    return nbformat.writes(notebook)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("", "the file is empty"),
        ("   \n", "the file is empty"),
        ('{"cells": [', "invalid JSON at line 1, column 12"),
        (b"\xff\xfe\x00", "not UTF-8"),
        ("[1, 2]", "the JSON has no cells"),
        (
            '{"cells": [{"cell_type": "nonsense"}], "nbformat": 4, '
            '"nbformat_minor": 5, "metadata": {}}',
            "not a valid notebook",
        ),
    ],
)
def test_malformed_files_get_a_reason(tmp_path, content, reason):
    notebook, notes, problem = inspect_submission(write(tmp_path, "s.ipynb", content))
    assert notebook is None and notes == []
    assert reason in problem


def test_missing_file(tmp_path):
    assert "cannot read" in inspect_submission(tmp_path / "nope.ipynb")[2]


def test_outputs_are_dropped_and_other_kernels_noted(tmp_path):
    text = notebook_text(
        kernelspec={"name": "ir", "display_name": "R", "language": "R"}
    )
    notebook, notes, problem = inspect_submission(write(tmp_path, "s.ipynb", text))
    assert problem == ""
    assert notebook.cells[0].outputs == []
    assert notes == ["saved with the kernel 'ir'; graded with Python 3"]
    assert notebook.metadata["kernelspec"]["name"] == "python3"


def test_too_large_after_outputs_are_dropped(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("x = 1  # " + "y" * MAX_SUBMISSION_BYTES)
    ]
    problem = inspect_submission(write(tmp_path, "s.ipynb", nbformat.writes(notebook)))[
        2
    ]
    assert problem.startswith("too large")


class StandInEngine:
    """An engine whose workers are replaced by a stand-in: every submission
    scores full points, and `crash_on` kills the coordinator there."""

    def __init__(self, crash_on=None):
        self.graded, self.crash_on = [], crash_on

    def prepare(self, course, assignment):
        self.course = course
        return "stand-in"

    def grade(self, tasks):
        for task in tasks:
            if task.student == self.crash_on:
                raise KeyboardInterrupt  # the grader is killed here
            self.graded.append(task.student)
            points = self.course.exercises(task.assignment)
            yield task, {"scores": dict(points), "grades": {}, "note": ""}, None


def grade(tmp_path, paths, engine, **options):
    course = Course(grading_dir=tmp_path / "grading")
    job = GradingJob(course, ASSIGNMENT, engine, log=lambda _: None, **options)
    return job.run(paths)


@pytest.fixture
def folder(tmp_path):
    good = notebook_text()
    paths = {
        "ada": write(tmp_path, "ada.ipynb", good),
        "bob": write(tmp_path, "bob.ipynb", "{not json"),
        "cy": write(tmp_path, "cy.ipynb", good),
        "dee": write(tmp_path, "dee.ipynb", good),
    }
    return tmp_path, paths


def test_malformed_submission_is_reported_and_the_rest_graded(folder):
    tmp_path, paths = folder
    engine = StandInEngine()
    results = {r.student: r for r in grade(tmp_path, paths, engine)}
    assert engine.graded == ["ada", "cy", "dee"]
    assert results["bob"].total == 0
    assert results["bob"].note.startswith("not graded: not a notebook: invalid JSON")
    saved = json.loads((tmp_path / "grading" / f"grades-{ASSIGNMENT}.json").read_text())
    assert [row["student"] for row in saved] == ["ada", "bob", "cy", "dee"]


def test_interrupted_batch_resumes_keeping_grades_already_written(folder):
    tmp_path, paths = folder
    with pytest.raises(KeyboardInterrupt):
        grade(tmp_path, paths, StandInEngine(crash_on="cy"))
    kept = Records(Course(grading_dir=tmp_path / "grading"), ASSIGNMENT).earlier()
    assert set(kept) == {"ada", "bob"}

    second = StandInEngine()
    results = grade(tmp_path, paths, second)
    assert second.graded == ["cy", "dee"]  # ada and bob were not graded again
    assert [r.student for r in results] == ["ada", "bob", "cy", "dee"]

    paths["ada"].write_text(notebook_text("print(2)"))  # resubmitted, changed
    third = StandInEngine()
    grade(tmp_path, paths, third)
    assert third.graded == ["ada"]

    fourth = StandInEngine()
    grade(tmp_path, paths, fourth, regrade=True)
    assert fourth.graded == ["ada", "cy", "dee"]

    fifth = StandInEngine()
    results = grade(tmp_path, paths, fifth, only=["dee"])
    assert fifth.graded == ["dee"]  # only those asked for
    assert [r.student for r in results] == ["ada", "bob", "cy", "dee"]
