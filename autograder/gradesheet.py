"""A class roster into the gradebook, and grades out as CSV for Canvas and Moodle.

```python
from autograder.gradesheet import export_grades, import_roster
from autograder.pipeline import Course

course = Course()                                  # build/grading/gradebook.db
import_roster(course, "roster.csv")                # -> ["s001", "s002", ...]
export_grades(course, "01_attention_seq2seq", "canvas", "canvas.csv")
export_grades(course, None, "moodle", "moodle.csv")  # every assignment
```

or, from the course root, with nbgrader's own exporter command (the plain
format below; `--assignment` and `--student` filter as for nbgrader's CSV):

```
nbgrader export --to=grades.csv \
    --exporter=autograder.gradesheet.ExercisePointsExportPlugin
```

The roster
----------
A CSV file in UTF-8 (with or without the BOM that Excel writes), a header
row, then one student per line; `,`, `;` or a tab between fields. Columns,
named in any case, with spaces, `_` or `-`:

* `id` (required): the student's nbgrader id, the name their submission is
  filed under; also read from `student_id`, `student_number`, `username`,
  `login`, `login_id`, `net_id`;
* `first_name` (`first`, `given_name`, `forename`), `last_name` (`last`,
  `surname`, `family_name`), `email` (`e-mail`, `email_address`, `mail`),
  `lms_user_id` (`lms_id`, `canvas_user_id`, `canvas_id`, `moodle_id`,
  `id_number`): optional; other columns are ignored.

Each student is created, or updated, in the course's gradebook. Only the
columns the roster has are written (a roster of ids alone keeps the names
already known), and an empty cell clears that field. The roster is checked
whole before anything is written: a missing id column, an empty or repeated
id, or an id nbgrader cannot use (it is a folder name and a file glob to
nbgrader: no `/` or `\\`, no leading `.`, no spaces, commas or `*?[]`) is
refused with a `PipelineError` naming its line.

The grade sheets
----------------
One row per student of the gradebook (the roster's and every student who
was graded), sorted by id. Points are nbgrader's: each grade's `score`
(the manual score where a grader gave one, else the autograder's, plus any
extra credit), summed per exercise (`test_x` and `hidden_x` count for
exercise `x`); an assignment's total is nbgrader's submission score minus
its late-submission penalty, never below 0 (as `nbgrader export` computes
it), so without a penalty it is the sum of the exercise columns. A student
who did not submit gets **empty** cells, not 0: Canvas and Moodle read an
empty cell as "no grade", which keeps "did not submit" apart from "submitted
and scored 0" (give the missing ones 0 in the LMS, by its missing-submission
policy, if that is the rule). Numbers are written without trailing zeros
(`2`, `1.5`). Files are UTF-8 without a BOM, comma-separated.

`plain`, one assignment:
    `student_id,first_name,last_name,email,<exercise>...,total,max_total,
    late_penalty,submitted_at` (one column per exercise, in notebook order;
    `submitted_at` in UTC, ISO 8601: `2026-01-31T09:05:00Z`).
`plain`, every assignment (`assignment=None`):
    `student_id,first_name,last_name,email,<assignment>...,total,max_total,
    late_penalty,submitted_at`: each assignment's total, then their sum, the
    sum of their maxima, the sum of the penalties and the last submission.
`canvas` (Canvas's Grades > Import): `Student,ID,SIS User ID,SIS Login ID,
    Section,<assignment>...`: one column per assignment holding its total
    (Canvas grades assignments, not exercises), then a second row
    `Points Possible,,,,,<max>...` as Canvas's own export has. `Student` is
    "Last, First" (Canvas matches it against its sortable names), `ID` the
    roster's `lms_user_id` when it is a Canvas user id (digits), `SIS Login
    ID` the nbgrader id; `SIS User ID` and `Section` stay empty. Canvas finds
    each student by `ID`, else by SIS id or login, else by name. A column
    header is the assignment's name: Canvas puts grades into the assignment
    of that name, or creates it with the Points Possible given. (A header
    `Name (digits)` would be read by Canvas as the assignment with Canvas id
    `digits`; pass `titles={"01_attention_seq2seq": "Attention (123456)"}`
    to aim at an existing Canvas assignment by its id.)
`moodle` (Moodle's Grades > Import > CSV file): `First name,Last name,
    ID number,Email address,Username,<assignment>[,<assignment>: <exercise>
    ...]`: `ID number` is the roster's `lms_user_id`, `Username` the nbgrader
    id. In Moodle, "Identify user by" maps one of these columns (Map from) to
    the user field of that name (Map to); every row must have it (Moodle
    stops the whole import at a row whose identifier is empty or unknown).
    Then each grade column is mapped to a grade item, or to "new grade
    item", or ignored. The exercise columns are written for one assignment
    (`exercises=False` leaves them out); every assignment gives one column
    each.
"""

import contextlib
import csv
import datetime
import io
import os
import re
from pathlib import Path

from nbgrader.api import MissingEntry
from nbgrader.plugins import ExportPlugin

from autograder.pipeline import Course, PipelineError
from autograder.unit import exercise_of

__all__ = [
    "FORMATS",
    "ExercisePointsExportPlugin",
    "export_grades",
    "import_roster",
    "read_roster",
]

FORMATS = ("plain", "canvas", "moodle")

# Roster columns: field -> accepted header spellings, compared without case,
# spaces, `_`, `-` or `.` (so "First Name", "first_name" and "FIRSTNAME" are
# one).
ROSTER_COLUMNS = {
    "id": (
        "id",
        "student_id",
        "student_number",
        "username",
        "user_name",
        "login",
        "login_id",
        "net_id",
    ),
    "first_name": ("first_name", "first", "given_name", "forename"),
    "last_name": ("last_name", "last", "surname", "family_name"),
    "email": ("email", "email_address", "mail"),
    "lms_user_id": (
        "lms_user_id",
        "lms_id",
        "canvas_user_id",
        "canvas_id",
        "moodle_id",
        "id_number",
    ),
}

# nbgrader's Student columns are String(128) (PostgreSQL enforces it).
MAX_FIELD = 128

# A student id is a folder name and a file glob to nbgrader
# (`CourseDirectory.student_id`), and `--student a,b` splits on commas.
_BAD_ID_CHARACTERS = re.compile(r"[/\\*?\[\],\s\x00-\x1f\x7f]")


def _normalized(header):
    return re.sub(r"[\W_]+", "", header.casefold())


_HEADER_FIELD = {
    _normalized(spelling): field
    for field, spellings in ROSTER_COLUMNS.items()
    for spelling in spellings
}


# ----------------------------------------------------------------- roster


def import_roster(course, csv_path):
    """Create or update each student of a CSV roster in the course's gradebook.

    Args:
        course: the `Course` whose gradebook receives the students.
        csv_path: the roster (see the module's docstring for its columns).

    Returns:
        The student ids, in the roster's order.

    Raises:
        PipelineError: the roster is not UTF-8, has no id column, or a line
            has an empty, repeated or unusable id (nothing is written then).
    """
    from autograder.records import grading_lock

    students = read_roster(csv_path)
    with grading_lock(course.grading_dir, "gradebook"), course.gradebook() as gb:
        for student_id, fields in students:
            gb.update_or_create_student(student_id, **fields)
    return [student_id for student_id, _ in students]


def read_roster(csv_path):
    """The roster's students as `[(id, {field: value or None})]`, checked
    whole (see `import_roster`); only the fields the roster has a column for."""
    path = Path(csv_path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise PipelineError(f"Cannot read the roster {path}: {error}") from error
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise PipelineError(
            f"{path} is not UTF-8 (byte 0x{raw[error.start]:02x} at offset "
            f"{error.start}): save the roster as CSV UTF-8."
        ) from None
    first_line = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)

    header = None
    for row in reader:
        if any(cell.strip() for cell in row):
            header = row
            break
    if header is None:
        raise PipelineError(f"{path}: the roster is empty (no header row).")
    header_line = reader.line_num
    columns = {}  # field -> column index
    for index, name in enumerate(header):
        field = _HEADER_FIELD.get(_normalized(name))
        if field is None:
            continue
        if field in columns:
            raise PipelineError(
                f"{path}, line {header_line}: columns "
                f"{header[columns[field]]!r} and {name!r} both give the "
                f"{field}; keep one."
            )
        columns[field] = index
    if "id" not in columns:
        raise PipelineError(
            f"{path}, line {header_line}: no student id column; the header has "
            f"{', '.join(repr(h) for h in header)}. Name the column of nbgrader "
            "student ids `id` (or student_id, username)."
        )

    students = []
    first_seen = {}  # id -> line
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(header) and any(c.strip() for c in row[len(header) :]):
            raise PipelineError(
                f"{path}, line {line}: {len(row)} fields where the header has "
                f"{len(header)}; a field holding a comma must be quoted."
            )
        cells = [cell.strip() for cell in row] + [""] * (len(header) - len(row))
        student_id = cells[columns["id"]]
        problem = id_problem(student_id)
        if problem:
            raise PipelineError(f"{path}, line {line}: {problem}")
        if student_id in first_seen:
            raise PipelineError(
                f"{path}, line {line}: student id {student_id!r} is repeated "
                f"(first on line {first_seen[student_id]})."
            )
        first_seen[student_id] = line
        fields = {}
        for field, index in columns.items():
            if field == "id":
                continue
            value = cells[index]
            if len(value) > MAX_FIELD:
                raise PipelineError(
                    f"{path}, line {line}: {header[index]!r} is longer than "
                    f"{MAX_FIELD} characters."
                )
            fields[field] = value or None
        students.append((student_id, fields))
    return students


def id_problem(student_id):
    """Why `student_id` cannot be an nbgrader student id, or "" if it can."""
    if not student_id:
        return "empty student id."
    if len(student_id) > MAX_FIELD:
        return f"student id longer than {MAX_FIELD} characters."
    if student_id.startswith("."):
        return (
            f"student id {student_id!r} starts with '.': nbgrader files each "
            "student under a folder of that name, and hides dot folders."
        )
    bad = _BAD_ID_CHARACTERS.search(student_id)
    if bad:
        return (
            f"student id {student_id!r} contains {bad.group()!r}: an nbgrader "
            "student id is a folder name and a file pattern (no '/', '\\', "
            "spaces, commas or '*?[]')."
        )
    return ""


# ----------------------------------------------------------------- export


def export_grades(
    course, assignment, fmt, out_path, *, titles=None, exercises=True, students=None
):
    """Write the gradebook's points as a CSV grade sheet.

    Args:
        course: the `Course` (its gradebook and its notebooks' exercises).
        assignment: one assignment's name, or `None` for every assignment of
            the gradebook (one column each).
        fmt: `"plain"`, `"canvas"` or `"moodle"` (columns: see the module's
            docstring).
        out_path: the CSV file to write (replaced whole).
        titles: assignment -> column header for `canvas` and `moodle` (by
            default the assignment's name).
        exercises: `moodle` with one assignment: also a column per exercise.
        students: only these student ids (default: every student).

    Returns:
        The student ids written, in order.
    """
    if fmt not in FORMATS:  # before opening anything
        raise PipelineError(
            f"Unknown grade sheet format {fmt!r}; expected one of {', '.join(FORMATS)}."
        )
    with course.gradebook() as gb:
        rows, ids = _sheet(
            course,
            gb,
            None if assignment is None else [assignment],
            fmt,
            titles=titles,
            exercises=exercises,
            students=students,
        )
    _write_csv(out_path, rows)
    return ids


def grade_sheet(
    course, gradebook, assignments, fmt, *, titles=None, exercises=True, students=None
):
    """The grade sheet's rows (header first) from an open nbgrader gradebook.

    `assignments`: a list of names (one: its exercise columns where the
    format has them), or `None` for every assignment in the gradebook; the
    other arguments as for `export_grades`.
    """
    return _sheet(
        course,
        gradebook,
        assignments,
        fmt,
        titles=titles,
        exercises=exercises,
        students=students,
    )[0]


def _sheet(course, gradebook, assignments, fmt, *, titles, exercises, students):
    if fmt not in FORMATS:
        raise PipelineError(
            f"Unknown grade sheet format {fmt!r}; expected one of {', '.join(FORMATS)}."
        )
    known = {a.name: a for a in gradebook.assignments}
    if assignments is None:
        names = list(known)
        per_exercise = False
    else:
        names = list(assignments)
        per_exercise = len(names) == 1
        for name in names:
            if name not in known and name not in course.assignments():
                raise PipelineError(
                    f"Unknown assignment {name!r}; the gradebook has: "
                    f"{', '.join(known) or 'none'}; the course has: "
                    f"{', '.join(course.assignments())}."
                )
    points = {name: course.exercises(name) for name in names}
    maxima = {  # the notebook's points; the gradebook's for one it does not have
        name: sum(points[name].values())
        if points[name] or name not in known
        else known[name].max_score
        for name in names
    }
    people = sorted(gradebook.students, key=lambda s: s.id)
    if students:
        wanted = {str(s) for s in students}
        people = [s for s in people if s.id in wanted]
    results = {
        (name, person.id): _result(course, gradebook, name, person.id)
        for name in names
        for person in people
    }
    titles = titles or {}
    if fmt == "plain":
        rows = _plain(names, points, maxima, people, results, per_exercise)
    elif fmt == "canvas":
        rows = _canvas(names, maxima, people, results, titles)
    else:
        with_exercises = per_exercise and exercises
        rows = _moodle(names, points, people, results, titles, with_exercises)
    return rows, [person.id for person in people]


def _result(course, gradebook, assignment, student):
    """A student's points for one assignment, or None if nothing was submitted:
    {exercise: points}, total (after the penalty), penalty, timestamp."""
    try:
        submission = gradebook.find_submission(assignment, student)
    except MissingEntry:
        return None
    by_exercise = {}
    for grade_id, score in course.grades(assignment, student, gradebook).items():
        name = exercise_of(grade_id)
        by_exercise[name] = by_exercise.get(name, 0.0) + float(score or 0.0)
    penalty = float(submission.late_submission_penalty or 0.0)
    return {
        "exercises": by_exercise,
        "total": max(0.0, float(submission.score or 0.0) - penalty),
        "penalty": penalty,
        "timestamp": submission.timestamp,
    }


def _plain(names, points, maxima, people, results, per_exercise):
    columns = list(points[names[0]]) if per_exercise else list(names)
    fixed = ["student_id", "first_name", "last_name", "email"]
    tail = ["total", "max_total", "late_penalty", "submitted_at"]
    clash = set(columns) & set(fixed + tail)
    if clash:
        raise PipelineError(
            f"Column name {sorted(clash)[0]!r} would appear twice in the grade "
            "sheet (an exercise or assignment of that name)."
        )
    rows = [fixed + columns + tail]
    max_total = sum(maxima[name] for name in names)
    for person in people:
        got = [results[name, person.id] for name in names]
        submitted = [r for r in got if r is not None]
        if per_exercise:
            result = got[0]
            cells = [
                "" if result is None else _number(result["exercises"].get(x, 0.0))
                for x in columns
            ]
        else:
            cells = ["" if r is None else _number(r["total"]) for r in got]
        if submitted:
            total = _number(sum(r["total"] for r in submitted))
            penalty = _number(sum(r["penalty"] for r in submitted))
            stamps = [r["timestamp"] for r in submitted if r["timestamp"]]
            when = _utc(max(stamps)) if stamps else ""
        else:
            total = penalty = when = ""
        rows.append(
            [
                person.id,
                person.first_name or "",
                person.last_name or "",
                person.email or "",
                *cells,
                total,
                _number(max_total),
                penalty,
                when,
            ]
        )
    return rows


def _canvas(names, maxima, people, results, titles):
    header = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    rows = [
        header + [titles.get(name, name) for name in names],
        ["Points Possible", "", "", "", ""] + [_number(maxima[n]) for n in names],
    ]
    for person in people:
        lms = person.lms_user_id or ""
        rows.append(
            [
                _sortable_name(person),
                lms if lms.isdigit() else "",
                "",
                person.id,
                "",
            ]
            + [_total_cell(results[name, person.id]) for name in names]
        )
    return rows


def _moodle(names, points, people, results, titles, with_exercises):
    header = ["First name", "Last name", "ID number", "Email address", "Username"]
    header += [titles.get(name, name) for name in names]
    exercise_names = list(points[names[0]]) if with_exercises else []
    title = titles.get(names[0], names[0]) if names else ""
    header += [f"{title}: {x}" for x in exercise_names]
    rows = [header]
    for person in people:
        row = [
            person.first_name or "",
            person.last_name or "",
            person.lms_user_id or "",
            person.email or "",
            person.id,
        ]
        row += [_total_cell(results[name, person.id]) for name in names]
        if exercise_names:
            result = results[names[0], person.id]
            row += [
                "" if result is None else _number(result["exercises"].get(x, 0.0))
                for x in exercise_names
            ]
        rows.append(row)
    return rows


def _total_cell(result):
    return "" if result is None else _number(result["total"])


def _sortable_name(person):
    if person.last_name and person.first_name:
        return f"{person.last_name}, {person.first_name}"
    return person.last_name or person.first_name or person.id


def _number(value):
    """2.0 -> "2", 1.25 -> "1.25" (four decimals at most)."""
    text = f"{round(float(value), 4):.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _utc(moment):
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_csv(out_path, rows):
    """Write the rows to `out_path` whole (a reader never sees half a file)."""
    target = Path(out_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        with partial.open("w", encoding="utf-8", newline="") as handle:
            csv.writer(handle).writerows(rows)
        os.replace(partial, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


# ------------------------------------------------------- nbgrader export


class ExercisePointsExportPlugin(ExportPlugin):
    """`nbgrader export` in the plain grade-sheet format (see the module's
    docstring): per-exercise points with one `--assignment`, one column per
    assignment otherwise; `--to` (default `grades.csv`), `--student`."""

    def export(self, gradebook):
        dest = self.to or "grades.csv"
        coursedir = getattr(self.parent, "coursedir", None)
        course = Course(root=getattr(coursedir, "root", None) or None)
        assignments = [str(a) for a in self.assignment] or None
        students = [str(s) for s in self.student] or None
        self.log.info("Exporting exercise points to %s", dest)
        rows = grade_sheet(course, gradebook, assignments, "plain", students=students)
        _write_csv(dest, rows)
