"""Grading through the real pipeline: nbgrader, one process per submission.

Covers the sample submissions' expected scores, a correct submission graded
again and again, the untouched student version failing for the right
reason, and submissions that loop, kill their kernel, write to stderr, or
delete or weaken a test cell.
"""

import re

import nbformat
import pytest
from grading_cases import (
    ASSIGNMENT,
    LISTENER,
    class_expectations,
    leftover_processes,
)

from autograder import sandbox

pytestmark = pytest.mark.slow


ISOLATED = "namespaces" in {name for name, _ in sandbox.layers()}


@pytest.fixture(scope="module")
def graded(graded_class):
    """The session's graded class (tests/conftest.py): Assignment 1's
    samples, the special submissions above and the solution three times
    more, graded in one batch."""
    course, _, results = graded_class
    return course, results, class_expectations(course)


def test_every_submission_gets_its_expected_scores(graded):
    _, results, expected = graded
    wrong = {
        name: (result.scores, expected[name], result.note)
        for name, result in results.items()
        if result.scores != expected[name]
    }
    assert not wrong


def test_correct_submission_scores_full_points_every_time(graded):
    _, results, _ = graded
    full = sum(results["solution"].max_scores.values())
    for name in [
        "solution",
        "alternative",
        "solution-again-0",
        "solution-again-1",
        "solution-again-2",
    ]:
        assert results[name].total == full, (name, results[name].scores)


def test_looping_cell_is_interrupted_with_a_note(graded):
    _, results, _ = graded
    note = results["loops"].note
    assert "a cell ran past the 12 s per-cell limit and was interrupted" in note, note


def test_kernel_death_gets_a_note_and_the_batch_goes_on(graded):
    _, results, _ = graded
    assert "kernel died" in results["kills-kernel"].note
    # graded after it, in the same batch:
    assert results["deleted-test-cell"].total == sum(
        results["solution"].max_scores.values()
    )


def test_blank_student_version_fails_only_with_not_implemented_error(graded):
    course, results, _ = graded
    assert results["blank"].total == 0
    autograded = nbformat.read(
        course.grading_dir
        / "autograded"
        / "blank"
        / ASSIGNMENT
        / "attention_seq2seq.ipynb",
        as_version=4,
    )
    for cell in autograded.cells:
        if cell.metadata.get("nbgrader", {}).get("grade"):
            errors = [o for o in cell.outputs if o.output_type == "error"]
            assert [e.ename for e in errors] == ["NotImplementedError"], cell.metadata[
                "nbgrader"
            ]


def test_feedback_shows_no_hidden_tests_paths_or_tracebacks(graded):
    course, _, _ = graded
    for name in ["luong-no-mask", "blank", "solution"]:
        html = (
            course.grading_dir
            / "feedback"
            / name
            / ASSIGNMENT
            / "attention_seq2seq.html"
        ).read_text()
        text = re.sub(r"<[^>]+>", "", html)
        assert "HIDDEN TESTS" not in text
        assert 'cases="hidden"' not in text and "cases=&quot;hidden&quot;" not in text
        assert "site-packages" not in text and str(course.root) not in text
        assert not re.search(r"File \S+\.py|Cell In\[", text)  # no traceback frames
    html = (
        course.grading_dir
        / "feedback"
        / "luong-no-mask"
        / ASSIGNMENT
        / "attention_seq2seq.html"
    ).read_text()
    assert "pass `values_mask` to your masked softmax" in html


@pytest.mark.skipif(not ISOLATED, reason="needs Linux namespaces (root and unshare)")
def test_student_code_has_no_network_and_leaves_no_process(graded):
    _, results, _ = graded
    assert results["network-and-daemon"].scores["concat_score"] == 2
    assert LISTENER.connections == 0
    assert leftover_processes() == []


def test_memory_bomb_fails_its_own_cell_only(graded):
    _, results, _ = graded
    assert results["memory-bomb"].scores["luong_attention"] == 3
    assert results["memory-bomb"].scores["dot_score"] == 0
