"""The sample submissions of every assignment after the first, graded
through the real pipeline (Assignment 1's, with its special submissions, are
in `test_grading.py`). Each must get its expected points per exercise, and
the solution full points every time it is graded."""

import nbformat
import pytest

from autograder.cli import grade_folder
from autograder.pipeline import Course

pytestmark = pytest.mark.slow

LATER = [a for a in Course().assignments() if a != "01_attention_seq2seq"]


@pytest.mark.parametrize("assignment", LATER)
def test_samples_get_their_expected_scores(assignment, tmp_path):
    course = Course(grading_dir=tmp_path / "grading")
    paths, expected = {}, {}
    for sample in course.samples(assignment):
        paths[sample.name] = tmp_path / f"{sample.name}.ipynb"
        nbformat.write(course.make_submission(assignment, sample), paths[sample.name])
        expected[sample.name] = course.expected_scores(assignment, sample)
    for i in range(2):  # a correct submission scores full points every time
        paths[f"solution-again-{i}"] = paths["solution"]
        expected[f"solution-again-{i}"] = expected["solution"]
    results = grade_folder(course, assignment, paths, feedback=False, log=print)
    wrong = {
        r.student: (r.scores, expected[r.student], r.note)
        for r in results
        if r.scores != expected[r.student]
    }
    assert not wrong
