"""The grading job: a batch of submissions in, one result per submission out.

`GradingJob.run({student: path})` reads every file safely (no link
followed, `safefs`), inspects it as a notebook, keeps the result of an
unchanged submission graded before (unless asked to regrade), sends the
rest to the engine (`autograder.engine`), and records each result as it
arrives (`autograder.records`), with a progress bar. Exactly one result per
submission: a worker that dies takes its task elsewhere; a coordinator that
dies leaves every result recorded so far, and the same command run again
grades only the rest.
"""

import hashlib
import os
import sys
import time

import nbformat

from autograder.engine import GradingTask
from autograder.records import Records, grading_lock
from autograder.unit import notebook_timeout

__all__ = ["GradingJob"]


class GradingJob:
    """Grade one assignment's submissions on an engine (or on the engine a
    callable returns, started only if something needs grading)."""

    def __init__(
        self,
        course,
        assignment,
        engine,
        log=print,
        regrade=False,
        only=None,
        feedback=True,
        progress=False,
    ):
        self.course = course
        self.assignment = assignment
        self.engine = engine
        self.log = log
        self.regrade = regrade
        self.only = set(only or ())
        self.feedback = feedback
        self.progress = progress
        self.records = Records(course, assignment)
        self.workers_seen = set()

    def run(self, submissions, root=None):
        """Grade `{student: path}`; return the results in the same order."""
        from autograder.pipeline import (
            inspect_submission,
            read_submission,
            submission_files,
        )

        course, assignment = self.course, self.assignment
        with grading_lock(course.grading_dir, "prepare"):  # one run at a time
            course.prepare_grading([assignment])
        earlier = {} if self.regrade else self.records.earlier()
        released = course.released_notebook(assignment)
        results, waiting, tasks = {}, {}, []
        for student, path in submissions.items():
            raw, problem = read_submission(path, root)
            digest = hashlib.sha256(raw).hexdigest() if raw is not None else ""
            previous = earlier.get(student)
            if self.only and student not in self.only:
                if previous is not None:  # not asked for: left as it was
                    results[student] = previous
                continue
            if (
                not self.only
                and previous is not None
                and digest
                and previous.digest == digest
            ):
                self.log(
                    f"  kept {student}: {previous.total:g} (graded before, unchanged)"
                )
                results[student] = previous
                continue
            notes = []
            if not problem:
                notebook, notes, problem = inspect_submission(raw, released)
            if problem:
                results[student] = self.records.not_graded(
                    student, f"not graded: {problem}; graded 0", digest
                )
                self._line(results[student])
                continue
            # A submission nbgrader collected is graded where it lies, and
            # keeps its own timestamp and secret (late penalties, feedback).
            waiting[student] = (
                notebook,
                notes,
                digest,
                submission_files(path, root),
                course.is_collected(assignment, student, path),
            )
            tasks.append(
                GradingTask(
                    assignment, student, nbformat.writes(notebook), notebook_timeout()
                )
            )
        if tasks:
            if callable(self.engine):  # started only when there is work
                self.engine = self.engine()
            key = self.engine.prepare(course, assignment)
            # A worker on this machine hides this course and grading folder
            # from its kernels too (elsewhere the paths do not exist).
            from autograder import sandbox

            hide = sandbox.hidden_paths(course.root, course.grading_dir)
            for task in tasks:
                task.course_key = key
                extra = task.settings.get("KIT_SANDBOX_HIDE", "")
                task.settings["KIT_SANDBOX_HIDE"] = os.pathsep.join(
                    filter(None, [extra, *hide])
                )
            self._grade(tasks, waiting, results)
        self.records.close()
        self.records.summary()
        return [results[student] for student in submissions if student in results]

    def _grade(self, tasks, waiting, results):
        bar = _bar(len(tasks), self.progress)
        log = self.log
        if bar is not None and self.log is print:  # lines above the bar
            self.log = lambda line: bar.write(line, file=sys.stdout)
        failed = 0
        started = time.monotonic()
        try:
            for task, found, error in self.engine.grade(tasks):
                notebook, notes, digest, files, in_place = waiting[task.student]
                if error is not None:
                    failed += 1
                    results[task.student] = self.records.not_graded(
                        task.student, _failure(error), digest
                    )
                else:
                    self._first_from(found)
                    results[task.student] = self.records.write(
                        task.student,
                        notebook,
                        digest,
                        found,
                        notes,
                        self.feedback,
                        files=files,
                        in_place=in_place,
                    )
                self._line(results[task.student])
                if bar is not None:
                    bar.set_postfix(failed=failed, refresh=False)
                    bar.update(1)
        finally:
            self.records.close()
            self.log = log
            if bar is not None:
                bar.close()
        if tasks:
            rate = len(tasks) / max(time.monotonic() - started, 1e-9) * 60
            self.log(
                f"  {len(tasks)} graded in {time.monotonic() - started:.0f} s "
                f"({rate:.1f} per minute), {failed} failed"
            )

    def _first_from(self, found):
        """Say once per worker where it grades and how its kernels are
        confined (a worker without root isolates less: see the guide)."""
        worker = found.get("worker", "")
        if worker and worker not in self.workers_seen:
            self.workers_seen.add(worker)
            self.log(f"  worker {worker}: {found.get('sandbox', '')}")

    def _line(self, result):
        self.log(
            f"  graded {result.student}: {result.total:g}/"
            f"{sum(result.max_scores.values()):g} in {result.seconds:.1f} s"
            + (f"  ({result.note})" if result.note else "")
        )


def _failure(error):
    name = type(error).__name__
    if name == "KilledWorker":
        return (
            "not graded: grading this submission stopped its worker "
            "again and again (it ran past the hard limit or crashed the "
            "grader); graded 0"
        )
    text = (str(error).strip().splitlines() or [""])[0][:160]
    return f"not graded: the grader failed ({name}: {text}); graded 0"


def _bar(total, enabled):
    if not enabled or not total:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="submission", file=sys.stderr, dynamic_ncols=True)
