"""The instructor's report page (`autograder.report`), on Assignment 1's
class graded once for the session (`graded_class`: the samples, submissions
that loop, crash or tamper, and the solution graded again).

The counts are checked on the data (`summarise`), the page's safety on a
copy of the grading folder with hostile text injected, and the page itself
in headless Chromium, which leaves a screenshot in `build/test-artifacts/`
for a person to look at.
"""

import json
import shutil
from pathlib import Path

import pytest

from autograder.pipeline import Course
from autograder.report import summarise, write_report

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
HOSTILE = "<script>alert('mistake')</script>"


def mistakes_of(summary, exercise, student):
    return [m for m in summary.mistakes.get(exercise, []) if student in m.students]


def test_summary_counts_the_samples_mistakes(graded_class):
    course, assignment, results = graded_class
    summary = summarise(course, assignment)

    assert [r.student for r in summary.results] == sorted(results)
    assert summary.max_total == 17
    assert summary.unread == {}
    # The visible and the hidden test both fail: one mistake, counted once
    # per student; the submission that also weakened its test cell made the
    # same mistake (no mask to the softmax), so it is counted with it.
    (luong,) = mistakes_of(summary, "luong_attention", "luong-no-mask")
    assert luong.ename == "CheckFailed"
    assert luong.students == ["luong-no-mask", "weakened-test-cell"]
    assert "values_mask" in luong.label and "mask" in luong.example.message
    assert luong.example.grade_id == "test_luong_attention"  # the whole message
    (scaled,) = mistakes_of(summary, "dot_score", "dot-scaled")
    assert scaled.ename == "CheckFailed" and "sqrt(d)" in scaled.label
    for exercise in summary.max_scores:
        (blank,) = mistakes_of(summary, exercise, "blank")
        assert (blank.ename, blank.count) == ("NotImplementedError", 1)
    for correct in ("solution", "alternative", "solution-again-0"):
        assert not any(
            correct in m.students for ms in summary.mistakes.values() for m in ms
        )
    # the submissions with notes: a cell that looped, a kernel that died
    notes = {r.student: r.note for r in summary.results if r.note}
    assert "interrupted" in notes["loops"]
    assert "kernel" in notes["kills-kernel"]
    assert "solution" not in notes


def hostile_copy(course, assignment, folder):
    """A copy of the grading folder's grades and autograded notebooks, with
    a message, a note and a student name that carry HTML, and a student
    whose autograded notebook is missing."""
    shutil.copytree(course.grading_dir / "autograded", folder / "autograded")
    grades = json.loads((course.grading_dir / f"grades-{assignment}.json").read_text())
    ghost = dict(grades[0], student=f"<b>ghost</b>{HOSTILE}", note=HOSTILE)
    (folder / f"grades-{assignment}.json").write_text(json.dumps([*grades, ghost]))
    path = folder / "autograded" / "dot-scaled" / assignment
    path = path / course.notebook_name(assignment)
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                output["evalue"] += f"\n{HOSTILE}"
    path.write_text(json.dumps(notebook))
    return Course(root=course.root, grading_dir=folder)


def test_page_is_self_contained_and_escapes_submissions(graded_class, tmp_path):
    course, assignment, _ = graded_class
    copy = hostile_copy(course, assignment, tmp_path / "grading")

    page = write_report(copy, assignment)

    assert page == copy.grading_dir / f"report-{assignment}.html"
    text = page.read_text(encoding="utf-8")
    assert f"<title>Grading report: {assignment}</title>" in text
    assert "How to read this" in text
    assert "<script" not in text and "<b>ghost" not in text
    assert "&lt;script&gt;alert(&#39;mistake&#39;)&lt;/script&gt;" in text
    assert "http://" not in text and "https://" not in text
    assert text.count('src="data:image/png;base64,') == 3
    # The student with no autograded notebook is reported, not a crash.
    assert summarise(copy, assignment).unread == {
        f"<b>ghost</b>{HOSTILE}": "no autograded notebook"
    }


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no /usr/bin/chromium (tools/system-packages.sh)"
)
def test_page_renders_in_chromium(graded_class, tmp_path):
    from playwright.sync_api import sync_playwright

    course, assignment, _ = graded_class
    page_path = write_report(course, assignment, out=tmp_path / "report.html")
    shot = ROOT / "build" / "test-artifacts" / f"report-{assignment}.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    errors, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"]
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on(
                "console",
                lambda m: errors.append(m.text) if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            response = page.goto(page_path.as_uri(), wait_until="load")
            images = page.evaluate(
                "() => Array.from(document.images, i => [i.complete, i.naturalWidth])"
            )
            title = page.title()
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()

    assert response is None or response.ok
    assert title == f"Grading report: {assignment}"
    assert len(images) == 3  # totals, exercises, timing
    assert all(complete and width > 0 for complete, width in images), images
    assert errors == []
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
    assert shot.stat().st_size > 0
