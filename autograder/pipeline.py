"""The instructor's pipeline: build, release, sample submissions, autograde.

Everything goes through nbgrader's own command line, run from the course
root (where `nbgrader_config.py` is), one process per step. Each submission
is graded by the grading unit (`autograder.unit`): its own
`nbgrader autograde --student` process and its own run folder, with a
wall-clock limit for the whole notebook, so one looping or crashing
submission costs its own grade only, and the batch goes on.
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import nbformat

from autograder import safefs, sandbox, trusted
from autograder.notebooks import (
    build_source,
    find_sources,
    normalized_json,
    write_notebook,
)
from autograder.quiet import TF_QUIET_ENV
from autograder.unit import (
    NOTEBOOK_TIMEOUT,
    GradeResult,
    environment,
    exercise_of,
    failure_note,
    grade_submission,
    interruption_note,
)

__all__ = [
    "NOTEBOOK_TIMEOUT",
    "Course",
    "GradeResult",
    "Sample",
    "exercise_of",
    "failure_note",
    "interruption_note",
]


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
    verdicts: dict = dataclasses.field(default_factory=dict)  # exercise -> error name
    # What finds the verdicts: "scan" (the code as written), "runtime" (only
    # what runs: the scan must not see it), or "mixed".
    found_by: str = "scan"


class Course:
    """One course folder: its assignments, notebooks and grading directory."""

    def __init__(self, root=None, grading_dir=None, gradebook_url=None):
        self.root = find_root(root)
        self.grading_dir = Path(
            grading_dir or self.root / "build" / "grading"
        ).resolve()
        self._gradebook_url = gradebook_url
        self.kept = []  # notebooks the last `generate` left alone

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

    def released_notebook(self, assignment):
        """The student version as released (from `assignments/`)."""
        path = self.release_dir / assignment / self.notebook_name(assignment)
        return nbformat.read(path, as_version=4)

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
        env["KIT_GRADEBOOK_URL"] = self.gradebook_url()
        env["KIT_COURSE_ROOT"] = str(self.root)
        env[trusted.TRUSTED_ENV] = str(self.grading_dir / "trusted")
        # nbgrader runs `alembic` and kernels by name: this environment's first.
        env["PATH"] = os.pathsep.join(
            [str(Path(sys.executable).parent), env.get("PATH", "")]
        )
        env.setdefault("PYTHONHASHSEED", "0")
        kernels = self.grading_dir / "jupyter"
        if (kernels / "kernels" / sandbox.KERNEL_NAME).is_dir():
            env["JUPYTER_PATH"] = os.pathsep.join(
                filter(None, [str(kernels), env.get("JUPYTER_PATH")])
            )
            env["KIT_KERNEL"] = sandbox.KERNEL_NAME  # read by nbgrader_config.py
        return env

    def nbgrader_config(self):
        """The course's nbgrader configuration, as nbgrader reads it
        (`nbgrader_config.py` run in the current environment)."""
        import runpy

        from traitlets.config import Config

        config = Config()
        runpy.run_path(
            str(self.root / "nbgrader_config.py"),
            init_globals={"get_config": lambda: config},
            run_name="nbgrader_config",
        )
        return config

    def late_plugin(self):
        """The course's late-submission plugin (`c.AssignLatePenalties.
        plugin_class`, `c.LateSubmissionPlugin.penalty_method`)."""
        from nbgrader.preprocessors import AssignLatePenalties

        with environment(self.env()):
            processor = AssignLatePenalties(config=self.nbgrader_config())
        processor.init_plugin()
        return processor.plugin_inst

    def nbgrader(self, *args, timeout=None, log=None, env=None):
        """Run `nbgrader ARGS` in the course root; return (exit code, output).

        nbgrader runs in a session of its own; when the time limit is reached
        the whole session is killed (the grading kernel dies with nbgrader:
        see `autograder.sandbox`).
        """
        executable = Path(sys.executable).with_name("nbgrader")
        command = [str(executable) if executable.exists() else "nbgrader", *args]
        process = subprocess.Popen(
            command,
            cwd=self.root,
            env={**self.env(), **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        try:
            output, _ = process.communicate(timeout=timeout)
            code = process.returncode
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            code = None
            output += f"\n[autograder] stopped after {timeout} s (hard limit)\n"
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

    def _generate_assignments(
        self, release, log_dir=None, assignments=None, stamps=None
    ):
        """Build the solutions; run nbgrader's generate_assignment into `release`.

        With `stamps` (a folder), an assignment whose source, configuration
        and gradebook entry have not changed since the last run is skipped.
        """
        for assignment in assignments or self.assignments():
            digest = hashlib.sha256()
            for source in self.sources(assignment):
                write_notebook(build_source(source), source.with_suffix(".ipynb"))
                digest.update(source.read_bytes())
            digest.update((self.root / "nbgrader_config.py").read_bytes())
            digest.update(str(release).encode())
            stamp = stamps and Path(stamps) / f"generated-{assignment}.sha256"
            if stamp and self._generated(stamp, digest.hexdigest(), assignment):
                continue
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
            if stamp:
                stamp.parent.mkdir(parents=True, exist_ok=True)
                stamp.write_text(digest.hexdigest())

    def _generated(self, stamp, digest, assignment):
        """Whether `assignment` was generated from this very source and is in
        the gradebook."""
        from nbgrader.api import MissingEntry

        try:
            if stamp.read_text() != digest:
                return False
        except OSError:
            return False
        try:
            with self.gradebook() as gradebook:
                gradebook.find_assignment(assignment)
        except MissingEntry:
            return False
        return True

    def generate(self, release_dir=None):
        """Build the solutions and generate the student versions into
        `release_dir` (default `assignments/`).

        nbgrader generates into a scratch folder; from there a file is
        written only where it is missing or still as the kit generated it
        (`install_release`): a notebook someone worked in, and any file of
        their own, are left alone. `self.kept` lists the notebooks kept."""
        release = Path(release_dir or self.release_dir).resolve()
        with tempfile.TemporaryDirectory() as scratch:
            fresh = Path(scratch) / "release"
            self._generate_assignments(fresh)
            for path in fresh.glob("*/*.ipynb"):
                notebook = nbformat.read(path, as_version=4)
                path.write_text(normalized_json(notebook), encoding="utf-8")
            self.kept = install_release(fresh, release)
        for path in self.kept:
            print(
                f"Not replaced: {path} was changed after it was generated (your "
                "work?). Work in a copy (`autograder workspace`), then move or "
                "delete this file to get the new version."
            )
        return release

    def check_sync(self):
        """Compare `assignments/` with freshly generated student versions,
        notebooks by content (nbgrader's own JSON layout is as good as the
        kit's), other files byte for byte.

        Returns:
            A list of differences (empty when in sync).
        """
        with tempfile.TemporaryDirectory() as scratch:
            fresh = self.generate(Path(scratch) / "release")
            problems = []
            names = set(_release_files(fresh))
            committed = set(_release_files(self.release_dir))
            for name in sorted(names - committed):
                problems.append(f"missing from assignments/: {name}")
            for name in sorted(committed - names):
                problems.append(f"not generated from solutions/: assignments/{name}")
            for name in sorted(names & committed):
                if content_digest(fresh / name) != content_digest(
                    self.release_dir / name
                ):
                    problems.append(f"out of date: assignments/{name}")
            return problems

    def workspace(self, folder):
        """Copy the student versions into `folder` where a file is missing:
        a student's own copy to work in, which no build replaces.

        Returns:
            `(copied, kept)`: the files written and those already there."""
        folder = Path(folder)
        copied, kept = [], []
        for name in _release_files(self.release_dir):
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with open(target, "xb") as out:  # never replaces a file
                    out.write((self.release_dir / name).read_bytes())
            except FileExistsError:
                kept.append(target)
                continue
            copied.append(target)
        return copied, kept

    # ------------------------------------------------------------- samples

    def samples(self, assignment, catalog="samples"):
        """The sample submissions of `samples.toml` (or `<catalog>.toml`)."""
        path = self.solutions_dir / assignment / f"{catalog}.toml"
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
                verdicts=s.get("verdicts", {}),
                found_by=s.get("found_by", "scan"),
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

    def prepare_grading(self, assignments=None):
        """Grading folder, sandbox kernel and the assignments (all, or those
        given) in the gradebook, with their trusted facts and expected
        outputs; what is already current is kept.

        `KIT_SANDBOX=0` grades with the plain Python kernel instead.
        """
        self.write_kernel()
        self._generate_assignments(
            self.grading_dir / "release",
            self.grading_dir / "logs",
            assignments,
            stamps=self.grading_dir / "trusted",
        )
        for assignment in assignments or self.assignments():
            for source in self.sources(assignment):
                trusted.prepare(
                    source.with_suffix(".ipynb"),
                    assignment,
                    self.grading_dir / "trusted",
                )

    def write_kernel(self):
        """The grading kernel's spec, with the sandbox's current settings
        (`KIT_SANDBOX=0`: the plain Python kernel instead)."""
        self.grading_dir.mkdir(parents=True, exist_ok=True)
        kernels = self.grading_dir / "jupyter"
        if os.environ.get("KIT_SANDBOX", "1") != "0":
            sandbox.write_kernelspec(
                kernels, sandbox.hidden_paths(self.root, self.grading_dir)
            )
        elif kernels.exists():
            shutil.rmtree(kernels)

    def submitted_dir(self, assignment, student):
        """nbgrader's folder of a student's submission (what `nbgrader
        collect` fills)."""
        return self.grading_dir / "submitted" / student / assignment

    def is_collected(self, assignment, student, path):
        """Whether `path` is the notebook nbgrader collected for `student`:
        the submission's own folder, which grading reads and never writes."""
        folder = self.submitted_dir(assignment, student)
        return Path(os.path.abspath(path)).parent == Path(os.path.abspath(folder))

    def submit(self, assignment, student, notebook, files=None):
        """Place a notebook (a NotebookNode) where nbgrader reads it, with
        the submission's own `files` ({name: bytes}: its `timestamp.txt` and
        `submission_secret.txt`, as `nbgrader submit` wrote them); without a
        timestamp of its own, it is stamped now."""
        target = self.submitted_dir(assignment, student)
        if target.exists() or target.is_symlink():
            safefs.remove_path(target)
        target.mkdir(parents=True)
        if isinstance(notebook, str | Path):  # a path the instructor gave
            notebook = nbformat.read(notebook, as_version=4)
        nbformat.write(notebook, target / self.notebook_name(assignment))
        files = dict(files or {})
        files.setdefault(
            "timestamp.txt",
            time.strftime("%Y-%m-%d %H:%M:%S UTC\n", time.gmtime()).encode(),
        )
        for name, data in files.items():
            (target / name).write_bytes(data)

    def grade_one(self, assignment, student, notebook, timeout=None):
        """Grade one submission with the grading unit, here, in its own
        nbgrader process (`autograder.unit`; batches go through the engine)."""
        return grade_submission(self, assignment, student, notebook, timeout)

    def gradebook_url(self):
        """nbgrader's gradebook: `KIT_GRADEBOOK_URL` (any SQLAlchemy URL, e.g.
        PostgreSQL), by default SQLite in the grading folder."""
        return (
            self._gradebook_url
            or os.environ.get("KIT_GRADEBOOK_URL")
            or ("sqlite:///" + str(self.grading_dir / "gradebook.db"))
        )

    def gradebook(self):
        from nbgrader.api import Gradebook

        return Gradebook(self.gradebook_url())

    @contextlib.contextmanager
    def _opened(self, gradebook):
        """`gradebook` if one is open already, else the course's, closed after."""
        if gradebook is not None:
            yield gradebook
        else:
            with self.gradebook() as opened:
                yield opened

    def forget(self, assignment, student, gradebook=None):
        from nbgrader.api import MissingEntry

        with self._opened(gradebook) as opened, contextlib.suppress(MissingEntry):
            opened.remove_submission(assignment, student)

    def grades(self, assignment, student, gradebook=None):
        """grade_id -> score of a student's submission, from the gradebook."""
        from nbgrader.api import MissingEntry

        with self._opened(gradebook) as opened:
            try:
                submission = opened.find_submission(assignment, student)
            except MissingEntry:
                return {}
            return {
                grade.name: grade.score
                for notebook in submission.notebooks
                for grade in notebook.grades
            }


#: Beside the student versions: the content digest of each file as the
#: kit last generated it, so a later build knows which files it may replace.
MANIFEST = ".generated.json"


def _release_files(folder):
    """Relative paths of a release folder's files (not the manifest, not
    Jupyter's checkpoints)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(
        p.relative_to(folder)
        for p in folder.rglob("*")
        if p.is_file() and ".ipynb_checkpoints" not in p.parts and p.name != MANIFEST
    )


def content_digest(path):
    """sha256 of a file's content: a notebook's JSON whatever its layout
    (key order, indentation), any other file's bytes."""
    path = Path(path)
    data = path.read_bytes()
    if path.suffix == ".ipynb":
        with contextlib.suppress(Exception):  # not a notebook: its bytes
            notebook = nbformat.reads(data.decode("utf-8"), as_version=4)
            data = normalized_json(notebook).encode()
    return hashlib.sha256(data).hexdigest()


def install_release(fresh, release):
    """Copy a freshly generated release into `release`: each file goes where
    it is missing, differs from the new one only in layout, or is still as
    the kit generated it last (`MANIFEST`); a file changed since (a
    student's work) is left alone, as is every file the kit did not
    generate. Returns the paths left alone that the release would change."""
    fresh, release = Path(fresh), Path(release)
    manifest_path = release / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = {}
    kept = []
    for name in _release_files(fresh):
        source, target, key = fresh / name, release / name, str(name)
        wanted = content_digest(source)
        if target.exists():
            found = content_digest(target)
            if found != wanted and found != manifest.get(key):
                kept.append(target)
                continue
        if not target.exists() or target.read_bytes() != source.read_bytes():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        manifest[key] = wanted
    release.mkdir(parents=True, exist_ok=True)
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    if not manifest_path.exists() or manifest_path.read_text() != text:
        manifest_path.write_text(text, encoding="utf-8")
    return kept


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
    """Change the cell whose grade_id is `cell`.

    Kinds of patch: `old`/`new` (replace `old`, which must occur exactly once,
    by `new`), `source` (the whole source), `insert_before` (a new cell, with
    no nbgrader metadata, before it, as a student adds one) and `metadata`
    (merged into the cell's nbgrader metadata, as a student could forge it).
    """
    for index, cell in enumerate(notebook.cells):
        if cell.metadata.get("nbgrader", {}).get("grade_id") != patch["cell"]:
            continue
        if "insert_before" in patch:
            added = nbformat.v4.new_code_cell(patch["insert_before"])
            if "metadata" in patch:  # a cell whose metadata the student forged
                added.metadata["nbgrader"] = dict(patch["metadata"])
            notebook.cells.insert(index, added)
        elif "metadata" in patch:
            cell.metadata["nbgrader"] = {
                **cell.metadata["nbgrader"],
                **patch["metadata"],
            }
        elif "source" in patch:
            cell.source = patch["source"]
        else:
            count = cell.source.count(patch["old"])
            if count != 1:
                raise PipelineError(
                    f"sample {sample_name}: {patch['old']!r} occurs {count} times "
                    f"in cell {patch['cell']}, expected once"
                )
            cell.source = cell.source.replace(patch["old"], patch["new"])
        return
    if patch.get("delete"):
        return
    raise PipelineError(f"sample {sample_name}: no cell {patch['cell']!r}")


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


#: Largest notebook accepted, after its outputs are removed.
MAX_SUBMISSION_BYTES = 5_000_000
#: Largest file read at all (outputs included).
MAX_FILE_BYTES = 200_000_000


def read_submission(path, root=None):
    """The bytes of a submitted file, or why it cannot be read: `(bytes or
    None, problem)`. No link is followed (below `root`, the folder the
    instructor named, not at any level), no FIFO or device is opened, and
    nothing over `MAX_FILE_BYTES` is read."""
    path = Path(path)
    try:
        if root is not None:
            relative = os.path.relpath(path, root)  # by name: nothing resolved
            return safefs.read_beneath(root, relative, MAX_FILE_BYTES), ""
        parent = safefs.open_dir(path.parent)
        try:
            return safefs.read_regular(path.name, MAX_FILE_BYTES, dir_fd=parent), ""
        finally:
            os.close(parent)
    except safefs.UnsafePath as error:
        return None, f"cannot read the file ({error.strerror})"
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        return None, f"cannot read the file ({reason})"


def inspect_submission(source, released=None):
    """Read a submitted file as a gradable notebook, or say why it is not one.

    `source` is the file's bytes (`read_submission`) or its path. Outputs
    are removed (grading runs every cell again, and a huge output would only
    slow nbgrader down) and a notebook saved with another kernel is graded
    with Python 3, with a note. With `released` (the notebook the students
    received), nbgrader metadata is put back as released: metadata with an
    unknown or repeated grade_id is removed (the cell is graded as the
    student's own code), and changed metadata of a known cell is restored,
    each with a note.

    Returns:
        `(notebook, notes, problem)`: the notebook to grade and notes about
        it, or `None`, `[]` and a one-line reason it cannot be graded.
    """
    if isinstance(source, bytes | bytearray):
        raw = bytes(source)
    else:
        raw, problem = read_submission(source)
        if problem:
            return None, [], problem
    if not raw.strip():
        return None, [], "the file is empty"
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, [], "not a notebook: the file is not UTF-8 text"
    except json.JSONDecodeError as error:
        return (
            None,
            [],
            (
                f"not a notebook: invalid JSON at line {error.lineno}, "
                f"column {error.colno}"
            ),
        )
    if not isinstance(data, dict) or "cells" not in data:
        return None, [], "not a notebook: the JSON has no cells"
    try:
        notebook = nbformat.reads(json.dumps(data), as_version=4)
        nbformat.validate(notebook)
    except Exception as error:  # nbformat raises several types
        first = str(error).strip().splitlines()[0][:160] if str(error).strip() else ""
        return None, [], f"not a valid notebook ({type(error).__name__}: {first})"
    notes = []
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    if released is not None:
        notes += restore_metadata(notebook, released)
    kernel = notebook.metadata.get("kernelspec", {}).get("name", "python3")
    if kernel != "python3":
        notes.append(f"saved with the kernel {kernel!r}; graded with Python 3")
        notebook.metadata["kernelspec"] = {
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
            "name": "python3",
        }
    size = len(nbformat.writes(notebook).encode("utf-8"))
    if size > MAX_SUBMISSION_BYTES:
        return (
            None,
            [],
            (
                f"too large: {size / 1e6:.1f} MB of cells without outputs "
                f"(limit {MAX_SUBMISSION_BYTES / 1e6:.0f} MB)"
            ),
        )
    return notebook, notes, ""


def restore_metadata(notebook, released):
    """Make every cell's nbgrader metadata what the students received."""
    known = {}
    for cell in released.cells:
        meta = cell.metadata.get("nbgrader")
        if meta and "grade_id" in meta:
            known[meta["grade_id"]] = (cell.cell_type, meta)
    removed, restored, seen = [], [], set()
    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader")
        if meta is None:
            continue
        grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
        if (
            grade_id not in known
            or grade_id in seen
            or cell.cell_type != known[grade_id][0]
        ):
            del cell.metadata["nbgrader"]
            removed.append(str(grade_id))
            continue
        seen.add(grade_id)
        original = known[grade_id][1]
        if meta != original:
            cell.metadata["nbgrader"] = dict(original)
            restored.append(grade_id)
    notes = []
    if removed:
        notes.append(
            f"nbgrader metadata removed from {len(removed)} cell(s) not in the "
            f"assignment ({', '.join(removed[:3])}): graded as the student's code"
        )
    if restored:
        notes.append(
            f"nbgrader metadata of {', '.join(restored[:3])} restored as released"
        )
    return notes


#: The files of an nbgrader submission that travel with its notebook: when
#: it was submitted (late penalties) and the secret under which the
#: student's `fetch_feedback` finds the feedback.
SUBMISSION_FILES = ("timestamp.txt", "submission_secret.txt")


def submission_files(path, root=None):
    """`{name: bytes}` of the `SUBMISSION_FILES` beside a submitted notebook
    (read like the notebook: no link followed, small files only)."""
    found = {}
    for name in SUBMISSION_FILES:
        sibling = Path(path).with_name(name)
        if not os.path.lexists(sibling):
            continue
        raw, problem = read_submission(sibling, root)
        if not problem and raw is not None and len(raw) <= 4096:
            found[name] = raw
    return found


def file_digest(path):
    raw, problem = read_submission(path)
    if problem:
        raise OSError(problem)
    return hashlib.sha256(raw).hexdigest()
