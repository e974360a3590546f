"""The gradebook's room: what the coordinator keeps of each graded submission.

Workers grade in folders of their own and return what they found; only the
coordinator writes the course's record, so the gradebook has one writer per
grading run whatever the number of workers, and any SQLAlchemy database
nbgrader supports (SQLite by default, PostgreSQL with `KIT_GRADEBOOK_URL`)
serves. For each submission, as its result arrives:

* the notebook as submitted goes to `submitted/<student>/<assignment>/`,
  with its own timestamp and secret when it has them (a submission that
  `nbgrader collect` put there is left exactly as it is: its timestamp
  decides the late penalty, its secret lets the student's
  `fetch_feedback` find the feedback);
* the points go into the gradebook through nbgrader's own
  `SaveAutoGrades`, run on the autograded notebook (scores, the "needs
  manual grade" flags and the "No response." comments, as `nbgrader
  autograde` writes them), then nbgrader's late penalty (the course's
  `LateSubmissionPlugin`, from the submission's timestamp and the
  assignment's due date); when the worker could only keep the verdicts it
  had decided, those are written directly;
* the autograded notebook, the feedback page and the log go to
  `autograded/`, `feedback/` and `logs/`, the first two with the
  submission's timestamp and secret, as nbgrader's own steps copy them;
* a small state file records the submission's digest, so that a run that
  is interrupted (or repeated) keeps what was graded and grades the rest.

Two runs on one gradebook at once (two instructors, or a run started again
while the first still goes) never mix their results: a student's result
(gradebook rows, files, state) is written whole under a lock, a file lock
in the grading folder and, for a PostgreSQL gradebook shared by grading
folders on several machines, an advisory lock in the database. The last
result written is the one kept, whole.

After a run the grading folder is an ordinary nbgrader course layout:
`nbgrader formgrader`, `generate_feedback` and `export` work on it.
"""

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
from pathlib import Path

import nbformat

from autograder import safefs
from autograder.unit import GradeResult, exercise_of

__all__ = ["Records"]


class Records:
    """The coordinator's record of one assignment's grading."""

    def __init__(self, course, assignment):
        self.course = course
        self.assignment = assignment
        self.state = course.grading_dir / "state" / assignment
        self._gradebook = None
        self._late = None  # the late-submission plugin, once a submission is late

    def gradebook(self):
        """The gradebook, opened once for the whole run (each opening costs
        tens of milliseconds: an engine, a schema check)."""
        if self._gradebook is None:
            self._gradebook = self.course.gradebook()
        return self._gradebook

    def close(self):
        if self._gradebook is not None:
            self._gradebook.close()
            self._gradebook = None

    # ------------------------------------------------------------ resume

    def earlier(self):
        """student -> the `GradeResult` kept from an earlier run."""
        found = {}
        if not self.state.is_dir():
            return found
        for path in self.state.glob("*.json"):
            try:
                row = json.loads(path.read_text(encoding="utf-8"))
                found[row["student"]] = GradeResult(**row)
            except (OSError, ValueError, TypeError, KeyError):
                continue
        return found

    def keep(self, result):
        """Remember a result (atomically: a reader never sees half of it)."""
        self.state.mkdir(parents=True, exist_ok=True)
        target = self.state / f"{result.student}.json"
        partial = target.with_name(f".{result.student}.{os.getpid()}.partial")
        partial.write_text(json.dumps(dataclasses.asdict(result)), encoding="utf-8")
        os.replace(partial, target)

    def summary(self, path=None):
        """Write `grades-<assignment>.json`: every result kept so far."""
        rows = sorted(
            (dataclasses.asdict(r) for r in self.earlier().values()),
            key=lambda row: row["student"],
        )
        target = Path(
            path or self.course.grading_dir / f"grades-{self.assignment}.json"
        )
        partial = target.with_name(target.name + f".{os.getpid()}.partial")
        partial.write_text(json.dumps(rows, indent=1), encoding="utf-8")
        os.replace(partial, target)
        return target

    # ------------------------------------------------------------ writing

    @contextlib.contextmanager
    def lock(self):
        """Hold this gradebook's write lock (see the module's docstring) and
        give the gradebook; what was written is committed at once, and no
        transaction stays open between two results."""
        with grading_lock(self.course.grading_dir, "gradebook"):
            gradebook = self.gradebook()
            with _database_lock(gradebook.engine, self.assignment):
                try:
                    yield gradebook
                    gradebook.db.commit()
                except BaseException:
                    gradebook.db.rollback()
                    raise
                finally:
                    gradebook.db.close()

    def not_graded(self, student, reason, digest):
        """A submission that could not be graded: 0, with the reason."""
        with self.lock() as gradebook:
            return self._not_graded(gradebook, student, reason, digest)

    def _not_graded(self, gradebook, student, reason, digest):
        self.course.forget(self.assignment, student, gradebook)
        max_scores = self.course.exercises(self.assignment)
        result = GradeResult(
            student,
            dict.fromkeys(max_scores, 0.0),
            max_scores,
            reason,
            0.0,
            digest,
        )
        self.keep(result)
        return result

    def write(
        self,
        student,
        notebook,
        digest,
        found,
        notes=(),
        feedback=True,
        files=None,
        in_place=False,
    ):
        """Keep what a worker found for `student`: gradebook, files, state.

        `files`: the submission's own files (`pipeline.SUBMISSION_FILES`);
        `in_place`: the notebook is the one nbgrader collected, in
        `submitted/`, which is then left as it is."""
        with self.lock() as gradebook:
            return self._write(
                gradebook,
                student,
                notebook,
                digest,
                found,
                notes,
                feedback,
                dict(files or {}),
                in_place,
            )

    def _write(
        self,
        gradebook,
        student,
        notebook,
        digest,
        found,
        notes,
        feedback,
        files,
        in_place,
    ):
        course, assignment = self.course, self.assignment
        if not in_place:
            course.submit(assignment, student, notebook, files)
        if "timestamp.txt" not in files:  # stamped by `submit` just now
            files["timestamp.txt"] = self._timestamp_file(student)
        self.course.forget(self.assignment, student, gradebook)
        name = course.notebook_name(assignment)
        autograded = found.get("autograded")
        if autograded:
            self._save_auto_grades(
                gradebook, student, nbformat.reads(autograded, as_version=4)
            )
        else:
            self._save_grades(gradebook, student, found.get("grades") or {})
        folders = {
            kind: course.grading_dir / kind / student / assignment
            for kind in ("autograded", "feedback")
        }
        for folder in folders.values():
            _clear(folder)
        if autograded:
            folders["autograded"].mkdir(parents=True)
            (folders["autograded"] / name).write_text(autograded, encoding="utf-8")
            _write_files(folders["autograded"], files)
        if feedback and found.get("feedback"):
            folders["feedback"].mkdir(parents=True)
            page = folders["feedback"] / Path(name).with_suffix(".html").name
            page.write_text(found["feedback"], encoding="utf-8")
            _write_files(folders["feedback"], files)
        logs = course.grading_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        (logs / f"autograde-{student}.log").write_text(
            found.get("log") or "", encoding="utf-8"
        )
        max_scores = course.exercises(assignment)
        scores = dict.fromkeys(max_scores, 0.0)
        for grade_id, score in course.grades(assignment, student, gradebook).items():
            scores[exercise_of(grade_id)] += score or 0.0
        note = "; ".join(filter(None, [*notes, found.get("note", "")]))
        if scores != found.get("scores", scores):
            note = "; ".join(
                filter(None, [note, f"the worker found {found['scores']}"])
            )
        result = GradeResult(
            student, scores, max_scores, note, found.get("seconds", 0.0), digest
        )
        self.keep(result)
        return result

    def _timestamp_file(self, student):
        """The submission's `timestamp.txt` as it lies in `submitted/`."""
        folder = self.course.submitted_dir(self.assignment, student)
        try:
            return safefs.read_beneath(folder, "timestamp.txt", 4096)
        except (OSError, ValueError):
            return b""

    def _submission(self, gradebook, student):
        gradebook.update_or_create_student(student)
        timestamp = None
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            from nbgrader.utils import parse_utc

            text = self._timestamp_file(student).decode("utf-8").strip()
            timestamp = parse_utc(text) if text else None
        with gradebook.db.no_autoflush:  # nbgrader builds the rows, then adds them
            gradebook.update_or_create_submission(
                self.assignment, student, timestamp=timestamp
            )

    def _save_auto_grades(self, gradebook, student, notebook):
        """nbgrader's own `SaveAutoGrades`, on the worker's autograded
        notebook, into this course's open gradebook (one commit, by `lock`,
        instead of one per cell)."""
        self._submission(gradebook, student)
        resources = {
            "nbgrader": {
                "notebook": Path(self.course.notebook_name(self.assignment)).stem,
                "assignment": self.assignment,
                "student": student,
                "db_url": self.course.gradebook_url(),
            }
        }
        _save_auto_grades_into(gradebook, notebook, resources)
        self._late_penalty(gradebook, student)

    def _plugin(self):
        """The course's late-submission plugin, read once per run (reading
        nbgrader's configuration runs `nbgrader_config.py`)."""
        if self._late is None:
            self._late = self.course.late_plugin()
        return self._late

    def _late_penalty(self, gradebook, student):
        """nbgrader's `AssignLatePenalties`: the course's late-submission
        plugin decides each notebook's penalty from how late the submission
        was (none when it was on time or the assignment has no due date)."""
        gradebook.db.flush()
        submission = gradebook.find_submission(self.assignment, student)
        late = submission.total_seconds_late
        plugin = self._plugin() if late > 0 else None
        for notebook in submission.notebooks:
            notebook.late_submission_penalty = None
            if plugin is None:
                continue
            penalty = plugin.late_submission_penalty(student, notebook.score, late)
            if penalty is not None:
                notebook.late_submission_penalty = min(max(penalty, 0), notebook.score)

    def _save_grades(self, gradebook, student, grades):
        """The verdicts a worker kept when nbgrader could not finish."""
        from nbgrader.api import MissingEntry

        notebook = Path(self.course.notebook_name(self.assignment)).stem
        self._submission(gradebook, student)
        for grade_id, score in grades.items():
            try:
                grade = gradebook.find_grade(
                    grade_id, notebook, self.assignment, student
                )
            except MissingEntry:
                continue
            grade.auto_score = score if score is not None else 0.0
            grade.needs_manual_grade = False


def _save_auto_grades_into(gradebook, notebook, resources):
    """nbgrader's `SaveAutoGrades` (its rules for scores, "needs manual
    grade" and "No response."), writing into `gradebook` without a commit
    per cell."""
    from nbgrader.preprocessors import SaveAutoGrades

    class Session:
        def __init__(self, db):
            self._db = db

        def commit(self):
            self._db.flush()

        def __getattr__(self, name):
            return getattr(self._db, name)

    class OneCommit:
        def __init__(self, gradebook):
            self._gradebook = gradebook
            self.db = Session(gradebook.db)

        def __getattr__(self, name):
            return getattr(self._gradebook, name)

    class IntoOpenGradebook(SaveAutoGrades):
        def preprocess(self, nb, resources):
            meta = resources["nbgrader"]
            self.notebook_id = meta["notebook"]
            self.assignment_id = meta["assignment"]
            self.student_id = meta["student"]
            self.db_url = meta["db_url"]
            self.gradebook = OneCommit(gradebook)
            return super(SaveAutoGrades, self).preprocess(nb, resources)

    IntoOpenGradebook().preprocess(notebook, resources)


@contextlib.contextmanager
def grading_lock(grading_dir, name):
    """An exclusive lock on one of the grading folder's locks (a file lock:
    released when its holder exits, however it exits)."""
    folder = Path(grading_dir) / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    handle = os.open(
        folder / f"{name}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600
    )
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)


@contextlib.contextmanager
def _database_lock(engine, assignment):
    """A PostgreSQL session's advisory lock for this assignment's writes
    (other databases: nothing; SQLite lives in the locked grading folder)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    import sqlalchemy

    key = int.from_bytes(
        hashlib.sha256(f"attention-kit:{assignment}".encode()).digest()[:8],
        "big",
        signed=True,
    )
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        try:
            yield
        finally:
            connection.execute(
                sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key}
            )


def _write_files(folder, files):
    """The submission's own small files (timestamp, secret) into `folder`."""
    for name, data in files.items():
        if data:
            (folder / name).write_bytes(data)


def _clear(folder):
    """Remove one of the coordinator's own folders (no link followed)."""
    safefs.remove_path(folder)
