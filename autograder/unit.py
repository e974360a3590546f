"""The grading unit: one submission in; its points, notes and feedback out.

`grade_submission` places the notebook where nbgrader reads it, makes a run
folder of the submission's own (`autograder.runs`: the cases, the kernel's
sockets and working folder, the verdict journal), runs `nbgrader autograde`
for that one student in its own process, and reads the points from the
gradebook. It knows nothing of batches or of where it runs, so any engine
can call it, as many at a time as the machine holds: units never share a
socket or a file.

No point a submission earned is lost to a failure of the machinery:

* inside nbgrader, `TrustedExecute` restarts a kernel that died, grades the
  rest of the notebook, stops at the notebook's time budget with the tests
  it reached decided, and writes each verdict to the run's journal as soon
  as it is decided;
* if nbgrader itself fails or has to be killed (the hard limit, a little
  past the budget), the unit writes the journal's verdicts into the
  gradebook itself (tests it had not decided score 0) and writes a feedback
  page from them, with a note saying what happened.
"""

import contextlib
import dataclasses
import html
import os
import re
import time
from pathlib import Path

from autograder import runs, safefs

__all__ = ["NOTEBOOK_TIMEOUT", "GradeResult", "grade_submission"]

#: The whole notebook's time budget, seconds (beside nbgrader's per-cell
#: `Execute.timeout`). nbgrader is killed this long after it, as a backstop.
NOTEBOOK_TIMEOUT = 900
HARD_LIMIT_GRACE = 120


def notebook_timeout():
    """The whole notebook's budget: `KIT_NOTEBOOK_TIMEOUT`, default 900 s."""
    return int(os.environ.get("KIT_NOTEBOOK_TIMEOUT", NOTEBOOK_TIMEOUT))


@dataclasses.dataclass
class GradeResult:
    student: str
    scores: dict  # exercise -> points
    max_scores: dict
    note: str = ""
    seconds: float = 0.0
    digest: str = ""  # sha256 of the submitted file: a rerun skips unchanged ones

    @property
    def total(self):
        return sum(self.scores.values())


def exercise_of(grade_id):
    """`test_dot_score` and `hidden_dot_score` both belong to `dot_score`."""
    for prefix in ("test_", "hidden_"):
        if grade_id.startswith(prefix):
            return grade_id[len(prefix) :]
    return grade_id


def test_points(notebook):
    """grade_id -> points of each graded test cell of a released notebook."""
    points = {}
    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            points[meta["grade_id"]] = float(meta.get("points", 0))
    return points


def grade_submission(
    course, assignment, student, notebook, timeout=None, in_process=False
):
    """Grade one notebook (a NotebookNode, already inspected) of `student`,
    within `timeout` seconds (default `notebook_timeout()`).

    `in_process`: run nbgrader in this process (a warm grading worker, which
    pays nbgrader's start-up once; the notebook's time budget is enforced by
    `TrustedExecute`), and write the student's feedback page too. Otherwise
    nbgrader runs as its own process, killed at the hard limit.

    Returns:
        A `GradeResult` whose scores are what the gradebook now holds.
    """
    timeout = timeout or notebook_timeout()
    course.submit(assignment, student, notebook)
    course.forget(assignment, student)  # a failed regrade must not keep old scores
    run = runs.RunFolder.create()
    started = time.monotonic()
    env = {runs.RUN_ENV: str(run.path), "KIT_NOTEBOOK_TIMEOUT": str(timeout)}
    log = course.grading_dir / "logs" / f"autograde-{student}.log"
    try:
        if in_process:
            code, output = nbgrader_in_process(
                course, "autograde", assignment, student, env, log
            )
        else:
            code, output = course.nbgrader(
                "autograde",
                assignment,
                "--student",
                student,
                "--force",
                timeout=timeout + HARD_LIMIT_GRACE,
                log=log,
                env=env,
            )
        journal = run.read_journal()
    finally:
        run.remove()
    seconds = time.monotonic() - started
    max_scores = course.exercises(assignment)
    failed = failure_note(code, output, timeout + HARD_LIMIT_GRACE)
    if failed:
        _keep_decided(course, assignment, student, journal)
    scores = dict.fromkeys(max_scores, 0.0)
    for grade_id, score in course.grades(assignment, student).items():
        name = exercise_of(grade_id)
        scores[name] = scores.get(name, 0.0) + (score or 0.0)
    notes = list(journal["notes"])
    if failed:
        decided = len(journal["tests"])
        notes.append(
            f"{failed}; the {decided} test(s) decided before that keep their "
            "points, the others score 0"
            if decided
            else f"{failed}; no test was decided, so it scores 0"
        )
        _write_fallback_feedback(course, assignment, student, journal, notes)
    else:
        notes.append(interruption_note(output))
        if in_process:
            code, output = nbgrader_in_process(
                course, "generate_feedback", assignment, student, {}, None
            )
            if code != 0:
                notes.append("the feedback page could not be written")
    note = "; ".join(filter(None, notes))
    result = GradeResult(student, scores, max_scores, note, seconds)
    result.cell_seconds = journal.get("seconds", [])  # not kept: for benchmarks
    return result


def collect(course, assignment, student, result):
    """Everything the coordinator keeps of a graded submission, read from
    this (worker's) grading folder, which is then cleared of it."""
    notebook = course.notebook_name(assignment)
    folders = {
        kind: course.grading_dir / kind / student / assignment
        for kind in ("submitted", "autograded", "feedback")
    }

    def text(path):
        try:
            return Path(path).read_text(encoding="utf-8")
        except OSError:
            return None

    kept = {
        "student": student,
        "scores": result.scores,
        "max_scores": result.max_scores,
        "note": result.note,
        "seconds": result.seconds,
        "grades": course.grades(assignment, student),
        "autograded": text(folders["autograded"] / notebook),
        "feedback": text(folders["feedback"] / Path(notebook).with_suffix(".html")),
        "log": text(course.grading_dir / "logs" / f"autograde-{student}.log") or "",
        "cell_seconds": getattr(result, "cell_seconds", []),
    }
    course.forget(assignment, student)
    for folder in folders.values():
        with contextlib.suppress(OSError):
            safefs.remove_path(folder)
    with contextlib.suppress(OSError):
        (course.grading_dir / "logs" / f"autograde-{student}.log").unlink()
    return kept


@contextlib.contextmanager
def environment(env):
    """`os.environ` as `env` for a while (a worker grades one at a time)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def nbgrader_in_process(course, command, assignment, student, env, log=None):
    """`nbgrader autograde|generate_feedback ASSIGNMENT --student S --force`,
    run in this process with the course's `nbgrader_config.py` read afresh
    (it reads the run's environment). Returns `(exit code, log text)`."""
    from nbgrader.converters import Autograde, GenerateFeedback
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.utils import capture_log

    converter = {"autograde": Autograde, "generate_feedback": GenerateFeedback}[command]
    with environment({**course.env(), **env}):
        config = course.nbgrader_config()
        coursedir = CourseDirectory(config=config)
        coursedir.assignment_id = assignment
        coursedir.student_id = student
        app = converter(coursedir=coursedir, config=config)
        app.force = True
        out = capture_log(app)
    text = out.get("log", "") + (out.get("error") or "")
    if log is not None:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        Path(log).write_text(text, encoding="utf-8")
    return (0 if out.get("success") else 1), text


def _keep_decided(course, assignment, student, journal):
    """nbgrader failed: put the verdicts it had decided into the gradebook."""
    from nbgrader.api import MissingEntry

    released = course.released_notebook(assignment)
    points = test_points(released)
    notebook = Path(course.notebook_name(assignment)).stem
    with course.gradebook() as gradebook:
        gradebook.update_or_create_student(student)
        with gradebook.db.no_autoflush:  # nbgrader builds the rows, then adds them
            gradebook.update_or_create_submission(assignment, student)
        for grade_id, full in points.items():
            try:
                grade = gradebook.find_grade(grade_id, notebook, assignment, student)
            except MissingEntry:
                continue
            verdict = journal["tests"].get(grade_id)
            grade.auto_score = full if verdict and verdict.get("passed") else 0.0
        gradebook.db.commit()
    # nbgrader's own feedback must not be made from a half-written notebook
    with contextlib.suppress(OSError):
        safefs.remove_path(course.grading_dir / "autograded" / student / assignment)


_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}
td,th{{border:1px solid #ccc;padding:.3em .6em;vertical-align:top}}
table{{border-collapse:collapse}} pre{{white-space:pre-wrap;margin:0}}</style>
</head><body><h1>{title}</h1><p>{note}</p>
<table><tr><th>test</th><th>points</th><th>result</th></tr>{rows}</table>
</body></html>
"""


def _write_fallback_feedback(course, assignment, student, journal, notes):
    """A feedback page from the journal, when nbgrader could not write one."""
    points = test_points(course.released_notebook(assignment))
    rows = []
    for grade_id, full in points.items():
        verdict = journal["tests"].get(grade_id)
        if verdict is None:
            got, text = 0, "not graded (see the note above)"
        elif verdict.get("passed"):
            got, text = full, "passed"
        else:
            got = 0
            text = f"{verdict.get('ename', '')}: {verdict.get('message', '')}"
        rows.append(
            f"<tr><td>{html.escape(grade_id)}</td><td>{got:g} / {full:g}</td>"
            f"<td><pre>{html.escape(text)}</pre></td></tr>"
        )
    page = _PAGE.format(
        title=html.escape(f"{assignment}: {student}"),
        note=html.escape("; ".join(notes)),
        rows="".join(rows),
    )
    folder = course.grading_dir / "feedback" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    name = Path(course.notebook_name(assignment)).with_suffix(".html").name
    (folder / name).write_text(page, encoding="utf-8")


def failure_note(code, output, timeout):
    """A one-line note when nbgrader could not finish grading a submission."""
    if code is None:
        return f"nbgrader was stopped after {timeout} s"
    if code != 0:
        last = [line for line in output.splitlines() if line.strip()][-1:] or ["?"]
        return f"nbgrader failed ({last[0][:160]})"
    return ""


def interruption_note(output):
    """A note when nbgrader interrupted cells that ran past the per-cell limit."""
    count = output.count("Timeout waiting for execute reply")
    if not count:
        return ""
    limit = re.search(r"Timeout waiting for execute reply \((\d+)s\)", output)
    seconds = f" {limit.group(1)} s" if limit else ""
    cells, verb = ("a cell", "was") if count == 1 else (f"{count} cells", "were")
    return (
        f"{cells} ran past the{seconds} per-cell limit and {verb} interrupted; "
        "the rest was graded"
    )
