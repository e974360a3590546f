"""The integrity catalogs, graded through the real pipeline.

`solutions/<assignment>/integrity.toml` lists, for each assignment,
submissions that try to get points they have not earned (monkeypatching,
objects equal to everything, borrowed attention reached by a literal or a
computed name, forged records, rewritten test cases, memorised expected
outputs), that attack the grader itself (links, directories and FIFOs
planted where the grader works, a kernel that dies mid-exercise, the hidden
inputs printed into the feedback), and correct answers written in ways a
naive rule would refuse. Each is graded by `grade_folder`, as an instructor
grades; each exercise must get its expected points and its test cells the
expected verdict, and after the batch the grading folder must be intact
(no link anywhere, feedback folders with nothing but feedback, no copy of
the gradebook, no hidden case, nothing a hidden test printed). The verdict
tables are printed at the end of the test run.
"""

import json
import os
import re
from pathlib import Path

import nbformat
import pytest
from conftest import report

from autograder import sandbox
from autograder.cli import grade_folder
from autograder.pipeline import Course, exercise_of

pytestmark = pytest.mark.slow

CONFINED = "private files" in sandbox.describe()
#: Submissions that, without the jail, would really read and write the
#: machine's files: graded only where the kernel is confined.
NEEDS_JAIL = {"read-hidden-tests", "write-elsewhere"}
CATALOGS = [a for a in Course().assignments() if Course().samples(a, "integrity")]


def _verdicts(notebook):
    """exercise -> the error names in its test cells ("" when it passed)."""
    found = {}
    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("grade") or meta.get("solution"):
            continue
        names = [o.ename for o in cell.outputs if o.output_type == "error"]
        found.setdefault(exercise_of(meta["grade_id"]), []).extend(names)
    return {k: ",".join(dict.fromkeys(v)) for k, v in found.items()}


@pytest.fixture(scope="module", params=CATALOGS)
def catalog(request, tmp_path_factory):
    assignment = request.param
    scratch = tmp_path_factory.mktemp(f"integrity-{assignment}")
    course = Course(grading_dir=scratch / "grading")
    samples = course.samples(assignment, "integrity")
    if not CONFINED:
        samples = [s for s in samples if s.name not in NEEDS_JAIL]
    paths = {}
    for sample in samples:
        paths[sample.name] = scratch / f"{sample.name}.ipynb"
        nbformat.write(course.make_submission(assignment, sample), paths[sample.name])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KIT_CELL_TIMEOUT", "60")
        results = grade_folder(
            course, assignment, paths, feedback=True, log=lambda _: None
        )
    results = {r.student: r for r in results}
    notebook = course.notebook_name(assignment)
    graded = {}
    for sample in samples:
        path = course.grading_dir / "autograded" / sample.name / assignment / notebook
        graded[sample.name] = nbformat.read(path, as_version=4)
    _report(course, assignment, samples, results, graded)
    return assignment, course, samples, results, graded


def _report(course, assignment, samples, results, graded):
    exercises = list(course.exercises(assignment))
    rows = [["submission", *exercises, "total", "as expected"]]
    for sample in samples:
        result = results[sample.name]
        verdicts = _verdicts(graded[sample.name])
        expected = course.expected_scores(assignment, sample)
        cells = []
        for name in exercises:
            verdict = verdicts.get(name) or "pass"
            cells.append(f"{result.scores[name]:g} {verdict}")
        rows.append(
            [
                sample.name,
                *cells,
                f"{result.total:g}/{sum(result.max_scores.values()):g}",
                "yes" if result.scores == expected else "NO",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    text = "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows
    )
    report(f"integrity catalog of {assignment} (points and verdict per exercise)", text)


def test_every_submission_gets_its_expected_scores(catalog):
    assignment, course, samples, results, _ = catalog
    wrong = {}
    for sample in samples:
        expected = course.expected_scores(assignment, sample)
        if results[sample.name].scores != expected:
            wrong[sample.name] = (
                results[sample.name].scores,
                results[sample.name].note,
            )
    assert not wrong


def test_every_verdict_names_what_happened(catalog):
    _, _, samples, _, graded = catalog
    wrong = {}
    for sample in samples:
        verdicts = _verdicts(graded[sample.name])
        for exercise, ename in sample.verdicts.items():
            if ename not in verdicts.get(exercise, "").split(","):
                wrong[(sample.name, exercise)] = verdicts.get(exercise)
    assert not wrong


def test_the_grading_folder_is_intact(catalog):
    """Whatever the submissions did, the grader's files are the grader's:
    no link anywhere, feedback folders hold feedback only (no copy of the
    gradebook, no case file), the gradebook is a database, every student
    has a log and a feedback page."""
    assignment, course, samples, _, _ = catalog
    grading = course.grading_dir
    for path in grading.rglob("*"):
        assert not path.is_symlink(), path
        assert ".kit" not in path.parts, path
        assert path.suffix != ".npz" or "trusted" in path.parts, path
    for path in (grading / "feedback").rglob("*"):
        if path.is_file():
            assert path.suffix in (".html", ".txt"), path
            assert not path.read_bytes().startswith(b"SQLite format 3"), path
    if not os.environ.get("KIT_GRADEBOOK_URL"):
        assert (grading / "gradebook.db").read_bytes()[:16] == b"SQLite format 3\x00"
    page = Path(course.notebook_name(assignment)).with_suffix(".html").name
    for sample in samples:
        assert (grading / "logs" / f"autograde-{sample.name}.log").is_file()
        assert (grading / "feedback" / sample.name / assignment / page).is_file()


def test_hidden_tests_show_nothing_the_code_printed(catalog):
    _, _, samples, _, graded = catalog
    for sample in samples:
        for cell in graded[sample.name].cells:
            meta = cell.metadata.get("nbgrader", {})
            if not meta.get("grade_id", "").startswith("hidden_"):
                continue
            for output in cell.outputs:
                if output.output_type != "stream":
                    continue
                for line in output.text.splitlines():
                    assert re.match(
                        # the grader's own lines: a verdict, a count of what
                        # the code printed, a note (wired right on a wrong
                        # part, without the hidden case's numbers)
                        r"^(check_\w+: all \d+ cases passed|\(your code printed \d+"
                        r"|Note: `\w+` is wired right: [^0-9]*$)",
                        line,
                    ), (sample.name, meta["grade_id"], line[:120])


# ------------------------------------------------------------------ Assignment 1


@pytest.fixture
def first(catalog):
    if catalog[0] != "01_attention_seq2seq":
        pytest.skip("Assignment 1's catalog")
    return catalog


def test_feedback_says_an_integrity_check_failed(first):
    assignment, course, _, _, _ = first
    html = (
        course.grading_dir / "feedback" / "monkeypatch-numpy" / assignment
    ).joinpath("attention_seq2seq.html")
    text = html.read_text()
    assert "Integrity check failed" in text
    assert "assigns `np.allclose`" in text


def test_forged_metadata_is_restored_with_a_note(first):
    _, _, _, results, _ = first
    note = results["forged-metadata"].note
    assert "metadata removed from 1 cell(s)" in note
    assert "luong_attention restored" in note
    assert results["forged-metadata"].total == 17


@pytest.mark.skipif(not CONFINED, reason="needs root and mount namespaces")
def test_nothing_hidden_was_readable(first):
    _, _, _, _, graded = first
    lines = [
        line
        for cell in graded["read-hidden-tests"].cells
        for output in cell.get("outputs", [])
        for line in "".join(output.get("text", "")).splitlines()
        if line.startswith("READ ")
    ]
    assert lines == [], lines


@pytest.mark.skipif(not CONFINED, reason="needs root and mount namespaces")
def test_writes_outside_the_submission_folder_do_not_land(first):
    _, course, _, _, graded = first
    for target in [
        course.root / "PWNED-by-a-student",
        course.grading_dir / "PWNED-by-a-student",
        Path("/tmp/PWNED-by-a-student"),
    ]:
        assert not target.exists(), target
    printed = json.dumps(nbformat.writes(graded["write-elsewhere"]))
    assert "Permission denied" in printed or "Read-only file system" in printed


def test_correct_unusual_submissions_keep_full_points(catalog):
    assignment, course, samples, results, _ = catalog
    full = sum(course.exercises(assignment).values())
    for sample in samples:
        if sample.name.startswith(
            ("correct-", "added-cells-correct", "float64-inside")
        ):
            assert results[sample.name].total == full, (
                sample.name,
                results[sample.name].scores,
            )
