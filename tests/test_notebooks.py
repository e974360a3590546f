"""Notebook sources and the student versions generated from them."""

import re

import nbformat
import pytest

from autograder.notebooks import NotebookError, build_source, complete_metadata
from autograder.pipeline import _SOLUTION_BLOCK, Course, exercise_of, solution_answers


@pytest.fixture(scope="module")
def course():
    return Course()


@pytest.fixture(scope="module")
def sources(course):
    return {a: course.sources(a)[0] for a in course.assignments()}


def test_every_assignment_has_one_source(course):
    assert course.assignments() == [
        "01_attention_seq2seq",
        "02_self_attention",
        "03_transformer",
    ]
    for assignment in course.assignments():
        assert len(course.sources(assignment)) == 1
        assert re.fullmatch(r"\d\d_[a-z0-9_]+", assignment)


def test_metadata_is_completed_and_graded_cells_are_locked(sources):
    for path in sources.values():
        notebook = build_source(path)
        graded = [
            c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade")
        ]
        assert graded
        for cell in graded:
            meta = cell.metadata["nbgrader"]
            assert meta["locked"] and not meta["solution"] and meta["points"] > 0
            assert meta["schema_version"] == 3
            assert cell.source.lstrip().startswith('"""'), (
                "a test cell starts with its docstring"
            )
            assert meta["grade_id"].startswith(("test_", "hidden_"))


def test_each_exercise_has_visible_and_hidden_tests(sources):
    for path in sources.values():
        notebook = build_source(path)
        answers = {
            c.metadata["nbgrader"]["grade_id"]
            for c in notebook.cells
            if c.metadata.get("nbgrader", {}).get("solution")
        }
        tests = [
            c.metadata["nbgrader"]["grade_id"]
            for c in notebook.cells
            if c.metadata.get("nbgrader", {}).get("grade")
        ]
        for test in tests:
            kind = test.split("_", 1)[0]
            assert (
                f"{'hidden' if kind == 'test' else 'test'}_{exercise_of(test)}" in tests
            )
        hidden_cells = [
            c
            for c in notebook.cells
            if c.metadata.get("nbgrader", {}).get("grade_id", "").startswith("hidden_")
        ]
        assert all("### BEGIN HIDDEN TESTS" in c.source for c in hidden_cells)
        assert answers


def test_short_metadata_errors():
    cell = nbformat.v4.new_code_cell("x", metadata={"nbgrader": {"points": 1}})
    with pytest.raises(NotebookError, match="without a grade_id"):
        complete_metadata(cell, "here")
    cell = nbformat.v4.new_code_cell(
        "x", metadata={"nbgrader": {"grade_id": "a", "points": 1, "solution": True}}
    )
    with pytest.raises(NotebookError, match="both points and solution"):
        complete_metadata(cell, "here")


def test_assignments_are_in_sync_with_solutions(course):
    assert course.check_sync() == []


def test_student_version_leaks_no_solution_and_no_hidden_tests(course, sources):
    for assignment, path in sources.items():
        release = course.release_dir / assignment / course.notebook_name(assignment)
        text = release.read_text()
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
        assert 'cases="hidden"' not in text and "autograder.reference" not in text
        student = nbformat.read(release, as_version=4)
        instructor = build_source(path)
        public = "\n".join(_SOLUTION_BLOCK.sub("", c.source) for c in instructor.cells)
        for grade_id, answer in solution_answers(instructor).items():
            cell = next(
                c
                for c in student.cells
                if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id
            )
            assert "raise NotImplementedError()" in cell.source
            secret = {
                line.strip()
                for line in answer.splitlines()
                if line.strip() not in public
            }
            for line in secret - {""}:
                assert line not in text, (
                    f"solution line leaked into the student version: {line}"
                )
        names = {p.name for p in (course.release_dir / assignment).iterdir()}
        assert names == {course.notebook_name(assignment)}


def test_first_code_cell_prints_versions(course):
    for assignment in course.assignments():
        release = course.release_dir / assignment / course.notebook_name(assignment)
        first = next(
            c
            for c in nbformat.read(release, as_version=4).cells
            if c.cell_type == "code"
        )
        assert "show_versions()" in first.source


def test_samples_patch_cleanly_and_expect_known_exercises(course):
    for assignment in course.assignments():
        samples = course.samples(assignment)
        assert {"solution", "blank"} <= {s.name for s in samples}
        for sample in samples:
            notebook = course.make_submission(assignment, sample)
            nbformat.validate(notebook)
            expected = course.expected_scores(assignment, sample)
            assert set(expected) == set(course.exercises(assignment))
