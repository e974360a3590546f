"""Shared by the tests: tables printed at the end of the run.

Tests that grade a catalog through the real pipeline add their verdict
table with `report(title, text)`; pytest prints them after the summary, so
CI's log shows every verdict, not only the failures. `needs_mirror` marks
tests that read the real translation corpora.
"""

import os
from pathlib import Path

import pytest

REPORTS = []

# Graded as a grading folder grades: on freshly drawn cases, not the shipped
# ones (draw 0), but the same draw on every run, so a failure repeats.
# tests/test_case_draws.py checks that other draws catch the same mistakes.
os.environ.setdefault("KIT_CASE_DRAW", "20261129")

# Tests that read the real corpora need the mirror folder (CI sets it).
needs_mirror = pytest.mark.skipif(
    not (
        os.environ.get("KIT_DATA_MIRROR")
        and (Path(os.environ["KIT_DATA_MIRROR"]) / "spa-eng.zip").is_file()
    ),
    reason="no KIT_DATA_MIRROR with the corpora (CI sets it)",
)


def report(title, text):
    REPORTS.append((title, text))


def pytest_terminal_summary(terminalreporter):
    for title, text in REPORTS:
        terminalreporter.section(title)
        terminalreporter.write_line(text)


@pytest.fixture(scope="session")
def graded_class(tmp_path_factory):
    """A grading folder in which Assignment 1's class (`grading_cases.py`:
    the samples, submissions that loop, crash, tamper or hoard memory, and
    the solution graded again and again) was graded in one batch through
    the real pipeline, once per test session. test_grading.py checks its
    scores; the report, export and roster tests read it. Returns
    `(course, assignment, {student: GradeResult})`."""
    from grading_cases import ASSIGNMENT, CELL_TIMEOUT, class_submissions

    from autograder.cli import grade_folder
    from autograder.pipeline import Course

    folder = tmp_path_factory.mktemp("graded-class")
    course = Course(grading_dir=folder / "grading")
    (folder / "submissions").mkdir()
    paths = class_submissions(course, folder / "submissions")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KIT_CELL_TIMEOUT", CELL_TIMEOUT)
        results = grade_folder(course, ASSIGNMENT, paths, log=lambda _: None)
    return course, ASSIGNMENT, {r.student: r for r in results}
