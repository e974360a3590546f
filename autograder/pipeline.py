"""The instructor's pipeline: build, release, sample submissions, autograde.

Everything goes through nbgrader's own command line, run from the course
root (where `nbgrader_config.py` is), one process per step. Autograding runs
one `nbgrader autograde --student` process per submission with a wall-clock
limit for the whole notebook, so one looping or crashing submission costs
its own grade only, and the batch goes on.
"""

import contextlib
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import nbformat

from autograder.notebooks import (
    build_source,
    find_sources,
    normalized_json,
    write_notebook,
)
from autograder.quiet import TF_QUIET_ENV

__all__ = [
    "Course",
    "GradeResult",
    "Sample",
]

#: The whole notebook's limit (beside nbgrader's per-cell `Execute.timeout`).
NOTEBOOK_TIMEOUT = 900


class PipelineError(RuntimeError):
    """A step of the pipeline failed; the message says which and why."""


def find_root(start=None):
    """The course root: the nearest folder holding nbgrader_config.py and solutions/."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "nbgrader_config.py").is_file() and (
            folder / "solutions"
        ).is_dir():
            return folder
    raise PipelineError(
        f"No course found at or above {here}: run this inside the kit's folder "
        "(the one with nbgrader_config.py and solutions/)."
    )


@dataclasses.dataclass
class Sample:
    """A sample submission: the solution with patches, and its expected score."""

    name: str
    description: str
    base: str  # "solution" or "student"
    patches: list
    expected: dict  # exercise -> points


@dataclasses.dataclass
class GradeResult:
    student: str
    scores: dict  # exercise -> points
    max_scores: dict
    note: str = ""
    seconds: float = 0.0

    @property
    def total(self):
        return sum(self.scores.values())


class Course:
    """One course folder: its assignments, notebooks and grading directory."""

    def __init__(self, root=None, grading_dir=None):
        self.root = find_root(root)
        self.grading_dir = Path(
            grading_dir or self.root / "build" / "grading"
        ).resolve()

    # ------------------------------------------------------------- layout

    @property
    def solutions_dir(self):
        return self.root / "solutions"

    @property
    def release_dir(self):
        return self.root / "assignments"

    def assignments(self):
        return sorted({p.parent.name for p in find_sources(self.solutions_dir)})

    def check_assignment(self, assignment):
        known = self.assignments()
        if assignment not in known:
            raise PipelineError(
                f"Unknown assignment {assignment!r}; "
                f"the course has: {', '.join(known)}."
            )

    def sources(self, assignment):
        return [
            p for p in find_sources(self.solutions_dir) if p.parent.name == assignment
        ]

    def notebook_name(self, assignment):
        sources = self.sources(assignment)
        if len(sources) != 1:
            raise PipelineError(
                f"{assignment}: expected one notebook source, found {len(sources)}"
            )
        return sources[0].stem + ".ipynb"

    # ------------------------------------------------------------- nbgrader

    def env(self):
        env = dict(os.environ)
        env.update(TF_QUIET_ENV)
        env["KIT_GRADING_DIR"] = str(self.grading_dir)
        # nbgrader runs `alembic` and kernels by name: this environment's first.
        env["PATH"] = os.pathsep.join(
            [str(Path(sys.executable).parent), env.get("PATH", "")]
        )
        env.setdefault("PYTHONHASHSEED", "0")
        return env

    def nbgrader(self, *args, timeout=None, log=None):
        """Run `nbgrader ARGS` in the course root; return (exit code, output)."""
        executable = Path(sys.executable).with_name("nbgrader")
        command = [str(executable) if executable.exists() else "nbgrader", *args]
        try:
            done = subprocess.run(
                command,
                cwd=self.root,
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=timeout,
                start_new_session=True,
            )
            code, output = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as expired:
            code = None
            output = (
                (expired.stdout or b"").decode(errors="replace")
                if isinstance(expired.stdout, bytes)
                else (expired.stdout or "")
            )
            output += (
                f"\n[autograder] stopped after {timeout} s (whole-notebook limit)\n"
            )
        if log is not None:
            Path(log).parent.mkdir(parents=True, exist_ok=True)
            Path(log).write_text(output, encoding="utf-8")
        return code, output

    # ------------------------------------------------------------- building

    def build_solutions(self):
        """Write each jupytext source's instructor notebook beside it."""
        built = []
        for source in find_sources(self.solutions_dir):
            built.append(
                write_notebook(build_source(source), source.with_suffix(".ipynb"))
            )
        return built

    def _generate_assignments(self, release, log_dir=None):
        """Build the solutions; run nbgrader's generate_assignment into `release`."""
        self.build_solutions()
        for assignment in self.assignments():
            code, output = self.nbgrader(
                "generate_assignment",
                assignment,
                "--force",
                f"--CourseDirectory.release_directory={release}",
                log=log_dir and Path(log_dir) / f"generate-{assignment}.log",
            )
            if code != 0:
                raise PipelineError(
                    f"generate_assignment {assignment} failed:\n{output}"
                )

    def generate(self, release_dir=None):
        """Build the solutions and generate the student versions into `release_dir`."""
        release = Path(release_dir or self.release_dir).resolve()
        self._generate_assignments(release)
        for path in release.glob("*/*.ipynb"):
            notebook = nbformat.read(path, as_version=4)
            path.write_text(normalized_json(notebook), encoding="utf-8")
        return release

    def check_sync(self):
        """Compare `assignments/` with freshly generated student versions.

        Returns:
            A list of differences (empty when in sync).
        """
        with tempfile.TemporaryDirectory() as scratch:
            fresh = self.generate(Path(scratch) / "release")
            problems = []
            names = {p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file()}
            committed = {
                p.relative_to(self.release_dir)
                for p in self.release_dir.rglob("*")
                if p.is_file() and ".ipynb_checkpoints" not in p.parts
            }
            for name in sorted(names - committed):
                problems.append(f"missing from assignments/: {name}")
            for name in sorted(committed - names):
                problems.append(f"not generated from solutions/: assignments/{name}")
            for name in sorted(names & committed):
                if (fresh / name).read_bytes() != (
                    self.release_dir / name
                ).read_bytes():
                    problems.append(f"out of date: assignments/{name}")
            return problems

    # ------------------------------------------------------------- samples

    def samples(self, assignment):
        path = self.solutions_dir / assignment / "samples.toml"
        if not path.exists():
            return []
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return [
            Sample(
                name=s["name"],
                description=s["description"],
                base=s.get("base", "solution"),
                patches=s.get("patch", []),
                expected=s.get("expected", {}),
            )
            for s in data["sample"]
        ]

    def exercises(self, assignment):
        """Exercise name -> points, from the test cells of the source notebook."""
        points = {}
        for source in self.sources(assignment):
            for cell in build_source(source).cells:
                meta = cell.metadata.get("nbgrader", {})
                if meta.get("grade"):
                    name = exercise_of(meta["grade_id"])
                    points[name] = points.get(name, 0) + meta["points"]
        return points

    def expected_scores(self, assignment, sample):
        full = self.exercises(assignment)
        if sample.expected == "full" or sample.expected == {}:
            return dict(full)
        if sample.expected == "zero":
            return dict.fromkeys(full, 0)
        unknown = set(sample.expected) - set(full) - {"default"}
        if unknown:
            raise PipelineError(
                f"sample {sample.name}: unknown exercises {sorted(unknown)}"
            )
        default = sample.expected.get("default", "full")
        out = {}
        for name, points in full.items():
            value = sample.expected.get(name, default)
            out[name] = points if value == "full" else float(value)
        return out

    def make_submission(self, assignment, sample):
        """The notebook a student with this sample's code would hand in."""
        release = self.release_dir / assignment / self.notebook_name(assignment)
        notebook = nbformat.read(release, as_version=4)
        if sample.base == "student":
            pass
        elif sample.base == "solution":
            answers = solution_answers(build_source(self.sources(assignment)[0]))
            for cell in notebook.cells:
                meta = cell.metadata.get("nbgrader", {})
                if meta.get("solution") and meta["grade_id"] in answers:
                    cell.source = answers[meta["grade_id"]]
        else:
            raise PipelineError(f"sample {sample.name}: unknown base {sample.base!r}")
        for patch in sample.patches:
            apply_patch(notebook, patch, sample.name)
        return notebook

    # ------------------------------------------------------------- grading

    def prepare_grading(self):
        """Fresh grading folder with the assignments in its gradebook."""
        self.grading_dir.mkdir(parents=True, exist_ok=True)
        self._generate_assignments(
            self.grading_dir / "release", self.grading_dir / "logs"
        )

    def submit(self, assignment, student, notebook_path):
        target = self.grading_dir / "submitted" / student / assignment
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        shutil.copyfile(notebook_path, target / self.notebook_name(assignment))
        (target / "timestamp.txt").write_text(
            time.strftime("%Y-%m-%d %H:%M:%S UTC\n", time.gmtime())
        )

    def autograde(self, assignment, student, timeout=NOTEBOOK_TIMEOUT):
        """Grade one submitted notebook in its own nbgrader process."""
        self._forget(assignment, student)  # a failed regrade must not keep old scores
        started = time.monotonic()
        code, output = self.nbgrader(
            "autograde",
            assignment,
            "--student",
            student,
            "--force",
            timeout=timeout,
            log=self.grading_dir / "logs" / f"autograde-{student}.log",
        )
        seconds = time.monotonic() - started
        max_scores = self.exercises(assignment)
        scores = dict.fromkeys(max_scores, 0.0)
        note = failure_note(code, output, timeout)
        if not note:
            for grade_id, score in self._grades(assignment, student).items():
                name = exercise_of(grade_id)
                scores[name] = scores.get(name, 0.0) + (score or 0.0)
            note = interruption_note(output)
        return GradeResult(student, scores, max_scores, note, seconds)

    def _gradebook(self):
        from nbgrader.api import Gradebook

        url = os.environ.get("KIT_GRADEBOOK_URL") or (
            "sqlite:///" + str(self.grading_dir / "gradebook.db")
        )
        return Gradebook(url)

    def _forget(self, assignment, student):
        from nbgrader.api import MissingEntry

        with self._gradebook() as gradebook, contextlib.suppress(MissingEntry):
            gradebook.remove_submission(assignment, student)

    def _grades(self, assignment, student):
        from nbgrader.api import MissingEntry

        out = {}
        with self._gradebook() as gradebook:
            try:
                submission = gradebook.find_submission(assignment, student)
            except MissingEntry:
                return out
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    out[grade.name] = grade.score
        return out

    def feedback(self, assignment):
        code, output = self.nbgrader(
            "generate_feedback",
            assignment,
            "--force",
            log=self.grading_dir / "logs" / f"feedback-{assignment}.log",
        )
        if code != 0:
            raise PipelineError(f"generate_feedback failed:\n{output}")
        return self.grading_dir / "feedback"


def exercise_of(grade_id):
    """`test_dot_score` and `hidden_dot_score` both belong to `dot_score`."""
    for prefix in ("test_", "hidden_"):
        if grade_id.startswith(prefix):
            return grade_id[len(prefix) :]
    return grade_id


_SOLUTION_BLOCK = re.compile(
    r"^[ \t]*### BEGIN SOLUTION\n(.*?)^[ \t]*### END SOLUTION\n?", re.S | re.M
)


def solution_answers(instructor_notebook):
    """grade_id -> the answer cell's source with the solution markers removed."""
    answers = {}
    for cell in instructor_notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            answers[meta["grade_id"]] = _SOLUTION_BLOCK.sub(
                lambda m: m.group(1), cell.source
            )
    return answers


def apply_patch(notebook, patch, sample_name):
    """Replace `old` by `new` in the answer cell `cell` (exactly once)."""
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == patch["cell"]:
            if "source" in patch:
                cell.source = patch["source"]
                return
            count = cell.source.count(patch["old"])
            if count != 1:
                raise PipelineError(
                    f"sample {sample_name}: {patch['old']!r} occurs {count} times in "
                    f"cell {patch['cell']}, expected once"
                )
            cell.source = cell.source.replace(patch["old"], patch["new"])
            return
    if patch.get("delete"):
        return
    raise PipelineError(f"sample {sample_name}: no cell {patch['cell']!r}")


def failure_note(code, output, timeout):
    """A one-line note when nbgrader could not grade a submission."""
    if code is None:
        return f"stopped: the notebook ran longer than {timeout} s; graded 0"
    if "Kernel died" in output or "DeadKernelError" in output:
        return "the kernel died (crash, os._exit or out of memory); graded 0"
    if code != 0:
        last = [line for line in output.splitlines() if line.strip()][-1:] or ["?"]
        return f"nbgrader failed ({last[0][:160]}); graded 0"
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


def format_table(results, expected=None):
    """The grade table: submission x exercise, points, total (and expectation)."""
    if not results:
        return "(no submissions)"
    exercises = list(results[0].max_scores)
    header = ["submission", *exercises, "total"]
    if expected is not None:
        header.append("expected")
    rows = [header]
    for result in results:
        row = [result.student]
        row += [f"{result.scores.get(e, 0):g}" for e in exercises]
        row.append(f"{result.total:g}/{sum(result.max_scores.values()):g}")
        if expected is not None:
            wanted = expected.get(result.student)
            row.append("ok" if wanted == result.scores else f"MISMATCH {wanted}")
        rows.append(row)
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  {r.student}: {r.note}" for r in results if r.note]
    if notes:
        lines += ["", "notes:", *notes]
    return "\n".join(lines)


def results_json(results):
    return json.dumps([dataclasses.asdict(r) for r in results], indent=1)
