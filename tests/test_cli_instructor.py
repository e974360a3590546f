"""The instructor's commands on a graded class, as typed: `autograder report`,
`autograder roster import` and `autograder export` (their contents are
tested in test_report.py and test_gradesheet.py)."""

import csv
import shutil

from autograder.cli import main


def test_report_roster_and_export_commands(graded_class, tmp_path, capsys):
    course, assignment, results = graded_class
    grading = tmp_path / "grading"
    shutil.copytree(course.grading_dir, grading)
    assert main(["report", assignment, "--grading", str(grading)]) == 0
    page = grading / f"report-{assignment}.html"
    assert page.exists() and "<img" in page.read_text(encoding="utf-8")

    roster = tmp_path / "roster.csv"
    rows = [["id", "first_name", "last_name", "email"]]
    rows += [[name, name.title(), "Kim", f"{name}@example.org"] for name in results]
    rows.append(["late-joiner", "Ji-woo", "Park", "jw@example.org"])
    with open(roster, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    assert main(["roster", "import", str(roster), "--grading", str(grading)]) == 0

    out = tmp_path / "canvas.csv"
    command = ["export", assignment, "--format", "canvas", "--out", str(out)]
    assert main([*command, "--grading", str(grading)]) == 0
    with open(out, encoding="utf-8") as f:
        sheet = list(csv.reader(f))
    assert sheet[1][0] == "Points Possible" and sheet[1][-1] == "17"
    totals = {row[3]: row[-1] for row in sheet[2:]}
    assert totals["solution"] == "17" and totals["blank"] == "0"
    assert totals["late-joiner"] == ""  # no submission: no grade

    # an unknown assignment is refused with a message, not a traceback
    assert main(["report", "no_such", "--grading", str(grading)]) == 2
    assert "Unknown assignment" in capsys.readouterr().err
