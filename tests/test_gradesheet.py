"""Roster import and grade sheets (autograder/gradesheet.py) on a graded class.

Each test works on a copy of the session's graded class (Assignment 1's
sample submissions graded through the real pipeline), so the fixture's
gradebook stays as it was graded.
"""

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from nbgrader.api import MissingEntry

from autograder.gradesheet import export_grades, import_roster
from autograder.pipeline import Course, PipelineError
from autograder.unit import exercise_of

# Excel's "CSV UTF-8": a BOM and CRLF line ends. Names with accents and
# Hangul; a comma inside a quoted name; a student who never submitted.
ROSTER = (
    "Student ID,First Name,Surname,Email address,LMS User ID\r\n"
    "solution,Zoë,Ångström,zoe@example.edu,1001\r\n"
    "blank,민준,김,minjun@example.edu,1002\r\n"
    'no-show,Sébastien,"O\'Brien, Jr.",seb@example.edu,1003\r\n'
)
NO_SHOW = "no-show"


@pytest.fixture
def graded(graded_class, tmp_path):
    """(course on a copy of the graded folder, assignment, results)."""
    course, assignment, results = graded_class
    grading = tmp_path / "grading"
    shutil.copytree(course.grading_dir, grading, symlinks=True)
    copy = Course(
        root=course.root,
        grading_dir=grading,
        gradebook_url=f"sqlite:///{grading / 'gradebook.db'}",
    )
    return copy, assignment, results


@pytest.fixture
def rostered(graded, tmp_path):
    course, assignment, results = graded
    roster = tmp_path / "roster.csv"
    roster.write_bytes(ROSTER.encode("utf-8-sig"))
    import_roster(course, roster)
    return course, assignment, results


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def as_dicts(rows, key):
    header, *body = rows
    return {row[header.index(key)]: dict(zip(header, row, strict=True)) for row in body}


# ----------------------------------------------------------------- roster


def test_roster_import_creates_and_updates_students(graded, tmp_path):
    course, assignment, results = graded
    roster = tmp_path / "roster.csv"
    roster.write_bytes(ROSTER.encode("utf-8-sig"))

    assert import_roster(course, roster) == ["solution", "blank", NO_SHOW]

    with course.gradebook() as gb:
        assert {s.id for s in gb.students} == {*results, NO_SHOW}
        blank = gb.find_student("blank")
        assert (blank.first_name, blank.last_name) == ("민준", "김")
        assert (blank.email, blank.lms_user_id) == ("minjun@example.edu", "1002")
        assert gb.find_student("solution").last_name == "Ångström"
        assert gb.find_student(NO_SHOW).last_name == "O'Brien, Jr."
        assert gb.find_submission(assignment, "blank").score == 0

    # A later roster updates what it has columns for and keeps the rest
    # (semicolons, as a European Excel writes; `username` as the id column).
    again = tmp_path / "again.csv"
    again.write_text("username;E-Mail\nblank;kim@example.edu\n", encoding="utf-8")
    assert import_roster(course, again) == ["blank"]
    with course.gradebook() as gb:
        blank = gb.find_student("blank")
        assert blank.email == "kim@example.edu"
        assert (blank.first_name, blank.lms_user_id) == ("민준", "1002")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "id,first_name\nnew-one,A\nb,B\nnew-one,C\n",
            "line 4: student id 'new-one' is repeated (first on line 2)",
        ),
        ("name,email\nnew-one,a@example.edu\n", "line 1: no student id column"),
        ("id,first_name\nnew-one,A\n ,B\n", "line 3: empty student id"),
        ("id\nnew-one\nx/y\n", "line 3: student id 'x/y' contains '/'"),
        ("id\nnew-one\n.hidden\n", "line 3: student id '.hidden' starts with '.'"),
        ("id\nnew-one\nan id\n", "line 3: student id 'an id' contains ' '"),
        ("id\nnew-one\nall*\n", "line 3: student id 'all*' contains '*'"),
        ("id,first_name\nnew-one,Kim, Minjun\n", "line 2: 3 fields"),
        (b"id,first_name\nnew-one,Zo\xeb\n", "is not UTF-8 (byte 0xeb"),
    ],
    ids=[
        "duplicate",
        "no-id-column",
        "empty-id",
        "slash",
        "dot",
        "space",
        "glob",
        "unquoted-comma",
        "latin-1",
    ],
)
def test_roster_rejections_name_the_line_and_write_nothing(
    graded, tmp_path, text, message
):
    course, _, _ = graded
    roster = tmp_path / "bad.csv"
    if isinstance(text, bytes):
        roster.write_bytes(text)
    else:
        roster.write_text(text, encoding="utf-8")

    with pytest.raises(PipelineError, match=re.escape(message)):
        import_roster(course, roster)
    with course.gradebook() as gb, pytest.raises(MissingEntry):
        gb.find_student("new-one")


# ----------------------------------------------------------------- export


def test_plain_export_round_trips_the_graded_points(rostered, tmp_path):
    course, assignment, results = rostered
    exercises = list(course.exercises(assignment))
    out = tmp_path / "plain.csv"

    written = export_grades(course, assignment, "plain", out)

    assert written == sorted([*results, NO_SHOW])
    rows = read_csv(out)
    assert rows[0] == [
        "student_id",
        "first_name",
        "last_name",
        "email",
        *exercises,
        "total",
        "max_total",
        "late_penalty",
        "submitted_at",
    ]
    sheet = as_dicts(rows, "student_id")
    assert [row[0] for row in rows[1:]] == written
    for student, result in results.items():
        row = sheet[student]
        assert {x: float(row[x]) for x in exercises} == result.scores, student
        assert float(row["total"]) == result.total
        assert row["max_total"] == "17"
        assert row["late_penalty"] == "0"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["submitted_at"])
    assert sheet["blank"]["first_name"] == "민준"
    assert sheet["solution"]["total"] == "17"
    # No submission: empty cells ("no grade"), not 0.
    no_show = sheet[NO_SHOW]
    assert [no_show[x] for x in [*exercises, "total", "late_penalty"]] == [""] * (
        len(exercises) + 2
    )
    assert no_show["last_name"] == "O'Brien, Jr."


def test_canvas_export_one_column_per_assignment_and_points_possible(
    rostered, tmp_path
):
    course, assignment, results = rostered
    out = tmp_path / "canvas.csv"

    export_grades(course, assignment, "canvas", out)

    rows = read_csv(out)
    assert rows[0] == [
        "Student",
        "ID",
        "SIS User ID",
        "SIS Login ID",
        "Section",
        assignment,
    ]
    assert rows[1] == ["Points Possible", "", "", "", "", "17"]
    sheet = as_dicts([rows[0], *rows[2:]], "SIS Login ID")
    assert set(sheet) == {*results, NO_SHOW}
    for student, result in results.items():
        assert float(sheet[student][assignment]) == result.total
    assert sheet["blank"]["Student"] == "김, 민준"
    assert sheet["blank"]["ID"] == "1002"
    assert sheet[NO_SHOW][assignment] == ""
    # Students not on the roster: their id as the name, no Canvas id.
    assert (sheet["dot-scaled"]["Student"], sheet["dot-scaled"]["ID"]) == (
        "dot-scaled",
        "",
    )

    # `Title (digits)` is how Canvas names an existing assignment by its id.
    titled = tmp_path / "titled.csv"
    export_grades(
        course, assignment, "canvas", titled, titles={assignment: "Attention (42)"}
    )
    assert read_csv(titled)[0][-1] == "Attention (42)"


def test_moodle_export_identifiers_total_and_exercises(rostered, tmp_path):
    course, assignment, results = rostered
    exercises = list(course.exercises(assignment))
    out = tmp_path / "moodle.csv"

    export_grades(course, assignment, "moodle", out)

    rows = read_csv(out)
    identifiers = ["First name", "Last name", "ID number", "Email address", "Username"]
    assert rows[0] == [
        *identifiers,
        assignment,
        *(f"{assignment}: {x}" for x in exercises),
    ]
    sheet = as_dicts(rows, "Username")
    for student, result in results.items():
        row = sheet[student]
        assert float(row[assignment]) == result.total
        assert {x: float(row[f"{assignment}: {x}"]) for x in exercises} == (
            result.scores
        )
    assert [sheet["blank"][k] for k in identifiers] == [
        "민준",
        "김",
        "1002",
        "minjun@example.edu",
        "blank",
    ]
    assert sheet[NO_SHOW][assignment] == ""

    totals_only = tmp_path / "totals.csv"
    export_grades(course, assignment, "moodle", totals_only, exercises=False)
    assert read_csv(totals_only)[0] == [*identifiers, assignment]


def test_every_assignment_gives_one_column_each(rostered, tmp_path):
    course, assignment, results = rostered
    with course.gradebook() as gb:
        names = [a.name for a in gb.assignments]
    assert assignment in names

    export_grades(course, None, "plain", tmp_path / "plain.csv")
    export_grades(course, None, "canvas", tmp_path / "canvas.csv")
    export_grades(course, None, "moodle", tmp_path / "moodle.csv")

    plain = read_csv(tmp_path / "plain.csv")
    tail = ["total", "max_total", "late_penalty", "submitted_at"]
    assert plain[0][4:] == [*names, *tail]
    assert float(as_dicts(plain, "student_id")["dot-scaled"][assignment]) == (
        results["dot-scaled"].total
    )
    canvas = read_csv(tmp_path / "canvas.csv")
    assert canvas[0][5:] == names
    assert canvas[1][0] == "Points Possible"
    assert read_csv(tmp_path / "moodle.csv")[0][5:] == names


def test_manual_grade_and_late_penalty_reach_the_totals(rostered, tmp_path):
    course, assignment, results = rostered
    with course.gradebook() as gb:
        # A grader gives back the luong_attention points the autograder took.
        submission = gb.find_submission(assignment, "luong-no-mask")
        regraded = [
            grade
            for notebook in submission.notebooks
            for grade in notebook.grades
            if exercise_of(grade.name) == "luong_attention"
            and grade.score < grade.max_score
        ]
        assert regraded
        raised = 0.0
        for grade in regraded:
            raised += grade.max_score - grade.score
            grade.manual_score = grade.max_score
        # The solution was handed in late: nbgrader's penalty, 2.5 points.
        late = gb.find_submission(assignment, "solution")
        late.notebooks[0].late_submission_penalty = 2.5
        gb.db.commit()
        nbgrader_scores = {
            student: gb.find_submission(assignment, student).score
            - gb.find_submission(assignment, student).late_submission_penalty
            for student in ("luong-no-mask", "solution")
        }

    export_grades(course, assignment, "plain", tmp_path / "plain.csv")
    export_grades(course, assignment, "canvas", tmp_path / "canvas.csv")
    export_grades(course, assignment, "moodle", tmp_path / "moodle.csv")

    plain = as_dicts(read_csv(tmp_path / "plain.csv"), "student_id")
    exercises = list(course.exercises(assignment))
    regraded_row = plain["luong-no-mask"]
    assert float(regraded_row["luong_attention"]) == (
        results["luong-no-mask"].scores["luong_attention"] + raised
    )
    assert float(regraded_row["total"]) == results["luong-no-mask"].total + raised
    assert float(regraded_row["total"]) == sum(
        float(regraded_row[x]) for x in exercises
    )
    late_row = plain["solution"]
    assert (late_row["total"], late_row["late_penalty"]) == ("14.5", "2.5")
    assert sum(float(late_row[x]) for x in exercises) == 17  # points before it
    for student, total in nbgrader_scores.items():
        assert float(plain[student]["total"]) == total

    canvas = read_csv(tmp_path / "canvas.csv")
    canvas_totals = as_dicts([canvas[0], *canvas[2:]], "SIS Login ID")
    moodle = as_dicts(read_csv(tmp_path / "moodle.csv"), "Username")
    for student in nbgrader_scores:
        assert canvas_totals[student][assignment] == plain[student]["total"]
        assert moodle[student][assignment] == plain[student]["total"]


def test_unknown_format_or_assignment_is_refused(graded, tmp_path):
    course, assignment, _ = graded
    with pytest.raises(PipelineError, match="Unknown grade sheet format 'xlsx'"):
        export_grades(course, assignment, "xlsx", tmp_path / "out.csv")
    with pytest.raises(PipelineError, match="Unknown assignment '99_nothing'"):
        export_grades(course, "99_nothing", "plain", tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_nbgrader_export_with_the_plugin_writes_the_plain_sheet(rostered, tmp_path):
    course, assignment, _ = rostered
    nbgrader = Path(sys.executable).parent / "nbgrader"
    env = {k: v for k, v in os.environ.items() if k != "KIT_GRADEBOOK_URL"}
    env["KIT_GRADING_DIR"] = str(course.grading_dir)

    def nbgrader_export(out, *args):
        subprocess.run(
            [
                str(nbgrader),
                "export",
                "--exporter=autograder.gradesheet.ExercisePointsExportPlugin",
                f"--to={out}",
                *args,
            ],
            cwd=course.root,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        return read_csv(out)

    one = nbgrader_export(tmp_path / "one.csv", f"--assignment={assignment}")
    export_grades(course, assignment, "plain", tmp_path / "ours.csv")
    assert one == read_csv(tmp_path / "ours.csv")
    assert one[0][4] == "dot_score"

    every = nbgrader_export(tmp_path / "every.csv")
    export_grades(course, None, "plain", tmp_path / "ours-every.csv")
    assert every == read_csv(tmp_path / "ours-every.csv")
