"""The integrity catalog, graded through the real pipeline.

`solutions/<assignment>/integrity.toml` lists submissions that try to get
points they have not earned (monkeypatching numpy, Keras, the harness or
builtins, objects equal to everything, a silenced traceback, the reference
imported, hidden tests read, files written elsewhere, Keras's attention
borrowed, nbgrader metadata forged) and correct ones written in unusual
ways. Each is graded by `grade_folder`, as an instructor grades; each
exercise must get its expected points and its test cells the expected
verdict. The verdict table is printed at the end of the test run.
"""

import json
from pathlib import Path

import nbformat
import pytest
from conftest import report

from autograder import sandbox
from autograder.cli import grade_folder
from autograder.pipeline import Course, exercise_of

pytestmark = pytest.mark.slow

ASSIGNMENT = "01_attention_seq2seq"
NOTEBOOK = "attention_seq2seq.ipynb"
CONFINED = "private files" in sandbox.describe()


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


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    scratch = tmp_path_factory.mktemp("integrity")
    course = Course(grading_dir=scratch / "grading")
    samples = course.samples(ASSIGNMENT, "integrity")
    if not CONFINED:  # without the jail these would really read and write
        samples = [
            s for s in samples if s.name not in ("read-hidden-tests", "write-elsewhere")
        ]
    paths = {}
    for sample in samples:
        paths[sample.name] = scratch / f"{sample.name}.ipynb"
        nbformat.write(course.make_submission(ASSIGNMENT, sample), paths[sample.name])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KIT_CELL_TIMEOUT", "30")
        results = grade_folder(
            course, ASSIGNMENT, paths, feedback=True, log=lambda _: None
        )
    results = {r.student: r for r in results}
    graded = {}
    for sample in samples:
        path = course.grading_dir / "autograded" / sample.name / ASSIGNMENT / NOTEBOOK
        graded[sample.name] = nbformat.read(path, as_version=4)
    _report(course, samples, results, graded)
    return course, samples, results, graded


def _report(course, samples, results, graded):
    exercises = list(course.exercises(ASSIGNMENT))
    rows = [["submission", *exercises, "total", "as expected"]]
    for sample in samples:
        result = results[sample.name]
        verdicts = _verdicts(graded[sample.name])
        expected = course.expected_scores(ASSIGNMENT, sample)
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
    report(f"integrity catalog of {ASSIGNMENT} (points and verdict per exercise)", text)


def test_every_submission_gets_its_expected_scores(catalog):
    course, samples, results, _ = catalog
    wrong = {}
    for sample in samples:
        expected = course.expected_scores(ASSIGNMENT, sample)
        if results[sample.name].scores != expected:
            wrong[sample.name] = (
                results[sample.name].scores,
                results[sample.name].note,
            )
    assert not wrong


def test_every_verdict_names_what_happened(catalog):
    _, samples, _, graded = catalog
    wrong = {}
    for sample in samples:
        verdicts = _verdicts(graded[sample.name])
        for exercise, ename in sample.verdicts.items():
            if ename not in verdicts.get(exercise, "").split(","):
                wrong[(sample.name, exercise)] = verdicts.get(exercise)
    assert not wrong


def test_feedback_says_an_integrity_check_failed(catalog):
    course, _, _, _ = catalog
    html = (
        course.grading_dir / "feedback" / "monkeypatch-numpy" / ASSIGNMENT
    ).joinpath(NOTEBOOK.replace(".ipynb", ".html"))
    text = html.read_text()
    assert "Integrity check failed" in text
    assert "assigns `np.allclose`" in text


def test_forged_metadata_is_restored_with_a_note(catalog):
    _, _, results, _ = catalog
    note = results["forged-metadata"].note
    assert "metadata removed from 1 cell(s)" in note
    assert "luong_attention restored" in note
    assert results["forged-metadata"].total == 17


@pytest.mark.skipif(not CONFINED, reason="needs root and mount namespaces")
def test_nothing_hidden_was_readable(catalog):
    course, _, _, graded = catalog
    own = str(course.grading_dir / "autograded" / "read-hidden-tests")
    lines = [
        line
        for cell in graded["read-hidden-tests"].cells
        for output in cell.get("outputs", [])
        for line in "".join(output.get("text", "")).splitlines()
        if line.startswith("READ ")
    ]
    foreign = [line for line in lines if not line.split()[1].startswith(own)]
    assert foreign == []


@pytest.mark.skipif(not CONFINED, reason="needs root and mount namespaces")
def test_writes_outside_the_submission_folder_do_not_land(catalog):
    course, _, _, graded = catalog
    for target in [
        course.root / "PWNED-by-a-student",
        course.grading_dir / "PWNED-by-a-student",
        Path("/tmp/PWNED-by-a-student"),
    ]:
        assert not target.exists(), target
    printed = json.dumps(nbformat.writes(graded["write-elsewhere"]))
    assert "Permission denied" in printed


def test_correct_unusual_submissions_keep_full_points(catalog):
    _, _, results, _ = catalog
    for name in ["added-cells-correct", "float64-inside"]:
        assert results[name].total == 17, (name, results[name].scores)
