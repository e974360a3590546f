"""Verdicts decided outside the student's kernel.

nbgrader runs the tests in the same kernel as the student's code, so a
submission can replace `np.allclose`, the checks, or IPython's traceback
display and pass. Here the kernel only *records*: during grading each check
runs the student's code on cases the grader wrote, just before the test
cell, into the run's `cases/` folder (the grader's, read-only to the kernel,
see `autograder.runs`), and sends the outputs back as one output of the
cell (`autograder.checks.sources`). `TrustedExecute`, which replaces
nbgrader's `Execute` preprocessor and runs in the grader's process, then
decides each graded test cell:

1. the one record the cell's check sent during that cell, carrying the
   token the grader wrote with this cell's cases (so a record made earlier,
   or a second record from elsewhere, is refused), is compared with
   expected outputs computed by the reference in a process that never ran
   student code (cached per batch under `$KIT_TRUSTED_DIR`), on cases drawn
   afresh for the grading folder (`case_draw`);
2. every code cell the student wrote is read, not run (`autograder.scan`):
   tampering before the test, or an answer that delegates to a library's
   attention, fails the test;
3. the kernel's own report of replaced functions (`checks.integrity`) fails
   the test, as does a test cell that produced a value (nbgrader would read
   it as partial credit) or left no record.

A failing verdict is written into the cell as an error output, so nbgrader's
own scoring (an error means 0) and feedback carry it; a passing verdict adds
one line to the cell's output.
"""

import base64
import binascii
import contextlib
import copy
import functools
import hashlib
import json
import os
import secrets
import time
from pathlib import Path

import nbformat
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import Execute

from autograder import runs, scan
from autograder.checks import sources, store
from autograder.checks.core import CheckFailed, decide
from autograder.checks.layers import borrowed_message

__all__ = [
    "TRUSTED_ENV",
    "TrustedExecute",
    "assignment_facts",
    "expectations",
    "prepare",
]

TRUSTED_ENV = "KIT_TRUSTED_DIR"
_PACKAGE = Path(__file__).resolve().parent


@functools.cache
def fingerprint():
    """A digest of the code that defines verdicts: a new one invalidates caches.

    Computed once per process (a grader process grades one submission)."""
    digest = hashlib.sha256()
    for folder in ("judge", "reference", "checks"):
        for path in sorted((_PACKAGE / folder).glob("*.py")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def trusted_dir(base=None):
    folder = base or os.environ.get(TRUSTED_ENV)
    if not folder:
        grading = os.environ.get("KIT_GRADING_DIR", os.path.join("build", "grading"))
        folder = os.path.join(grading, "trusted")
    return Path(folder).resolve() / fingerprint()


DRAW_ENV = "KIT_CASE_DRAW"


def case_draw(base=None):
    """The draw of this grading folder's cases: visible and hidden tests are
    graded on cases drawn afresh (the same shapes and kinds as the shipped
    ones, other values), so an answer that memorises the student bundle's
    expected outputs earns nothing. `KIT_CASE_DRAW` fixes it (the tests do);
    otherwise it is drawn once per grading folder and kept in
    `trusted/draw`, so a regrade sees the same cases."""
    value = os.environ.get(DRAW_ENV)
    if value:
        return int(value)
    folder = trusted_dir(base).parent
    path = folder / "draw"
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        pass
    folder.mkdir(parents=True, exist_ok=True)
    draw = secrets.randbelow(2**31 - 2) + 1
    tmp = path.with_name(f"draw.{os.getpid()}")
    tmp.write_text(f"{draw}\n")
    try:
        os.link(tmp, path)  # the first writer wins; the others read its draw
    except FileExistsError:
        draw = int(path.read_text().strip())
    finally:
        tmp.unlink()
    return draw


def expectations(check_name, which, base=None, draw=None):
    """`(cases, expectations, generic hint)` of this grading folder's draw,
    computed once and cached (on disk for the batch, in memory for this
    process). `draw=0` gives the cases the student bundle ships."""
    draw = case_draw(base) if draw is None else draw
    path = trusted_dir(base) / f"draw-{draw}" / f"{check_name}--{which}.npz"
    return _load(path, check_name, which, draw)


@functools.cache
def _load(path, check_name, which, draw):
    if not path.exists():
        from autograder import judge

        spec = judge.spec(check_name)
        cases = spec.cases(which, draw=draw)
        path.parent.mkdir(parents=True, exist_ok=True)
        store.save_expectations(
            path, cases, spec.expectations(cases), spec.generic_hint
        )
    return store.load_expectations(path)


def _is_test(cell):
    meta = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and meta.get("grade") and not meta.get("solution")


def assignment_facts(instructor_notebook):
    """What the grader trusts about a notebook, from the instructor's version.

    Returns:
        `{"tests": {grade_id: [[check, cases, target], ...]},
          "lesson": [source of every code cell that is neither an answer nor
                     a test], "protected": [names the lesson imports]}`.
    """
    notebook = instructor_notebook
    if not isinstance(notebook, nbformat.NotebookNode):
        notebook = nbformat.read(str(instructor_notebook), as_version=4)
    tests, lesson, protected = {}, [], set()
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        if _is_test(cell):
            tests[meta["grade_id"]] = [list(c) for c in scan.check_calls(cell.source)]
        elif not meta.get("solution"):
            lesson.append(cell.source)
            tree = scan.parse(cell.source)
            if tree is not None:
                protected |= scan.imported_names(tree)
    for calls in tests.values():
        protected |= {check for check, _, _ in calls}
    return {"tests": tests, "lesson": lesson, "protected": sorted(protected)}


def standalone_kernels():
    """The folder of the sandbox kernel's spec, for an nbgrader started
    without the grading unit (the formgrader's Autograde button, `nbgrader
    autograde` typed by hand), or None when the plain kernel is wanted
    (`KIT_SANDBOX=0`) or the configuration already names the kernel.

    The spec is written afresh for the course (`KIT_COURSE_ROOT`, which
    `nbgrader_config.py` sets) and its grading folder, so the kernel hides
    both, as it does under the grading unit."""
    if os.environ.get("KIT_SANDBOX", "1") == "0" or os.environ.get("KIT_KERNEL"):
        return None
    from autograder.pipeline import Course

    course = Course(
        os.environ.get("KIT_COURSE_ROOT") or None,
        os.environ.get("KIT_GRADING_DIR") or None,
    )
    course.write_kernel()
    return course.grading_dir / "jupyter" / "kernels"


def _facts_path(assignment, notebook, base=None):
    return trusted_dir(base) / f"{assignment}--{notebook}.json"


def prepare(instructor_notebook, assignment, base=None):
    """Cache the facts and every expected output of one notebook (the pipeline
    calls this once per batch, so each submission's grader only reads files)."""
    facts = assignment_facts(instructor_notebook)
    path = _facts_path(assignment, Path(instructor_notebook).stem, base)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(facts), encoding="utf-8")
    for calls in facts["tests"].values():
        for check_name, which, _ in calls:
            expectations(check_name, which, base)
    return facts


def _facts(assignment, notebook):
    path = _facts_path(assignment, notebook)
    if not path.exists():
        root = Path(os.environ.get("KIT_COURSE_ROOT", os.getcwd()))
        source = root / "solutions" / assignment / f"{notebook}.ipynb"
        if not source.exists():  # not built yet: built from its jupytext source
            from autograder.notebooks import build_source, write_notebook

            write_notebook(build_source(source.with_suffix(".py")), source)
        return prepare(source, assignment)
    return json.loads(path.read_text(encoding="utf-8"))


def _error(ename, message):
    return NotebookNode(
        output_type="error",
        ename=ename,
        evalue=message,
        traceback=[f"{ename}: {message}"],
    )


_RAN = sources.RAN_NOTE
#: How much of a student's own error message a hidden test's feedback shows.
HIDDEN_MESSAGE_CHARS = 160
#: Largest record accepted (base64 text), per check call.
MAX_RECORD_CHARS = 64 * 2**20


def _kept_streams(outputs, hidden=False):
    """The cell's printed lines, without the kernel's own "cases ran" lines
    (the verdict line replaces them). What a hidden test's code printed is
    not shown (it could hold the hidden inputs): a labelled line says how
    much there was."""
    kept = []
    for output in outputs:
        if output.output_type != "stream":
            continue
        text = "".join(
            line for line in output.text.splitlines(keepends=True) if _RAN not in line
        )
        if text:
            # All on stdout: nbgrader zeroes a test cell with any stderr
            # output, and the verdict here is the grade.
            kept.append(_stdout(text))
    if hidden and kept:
        size = sum(len(o.text) for o in kept)
        return [
            _stdout(
                f"(your code printed {size} characters during this hidden test; "
                "they are not shown, as they could hold the hidden inputs)\n"
            )
        ]
    return kept


def _stdout(text):
    return NotebookNode(output_type="stream", name="stdout", text=text)


def _shortened(output):
    """A student's error in a hidden test: its first line, at most
    `HIDDEN_MESSAGE_CHARS` characters, labelled."""
    first = (str(output.get("evalue", "")).strip().splitlines() or [""])[0]
    if len(first) > HIDDEN_MESSAGE_CHARS:
        first = first[: HIDDEN_MESSAGE_CHARS - 3] + "..."
    message = f"{first} (shortened: hidden test)" if first else "(hidden test)"
    return _error(output.get("ename", "Error"), message)


class _Submission:
    """The student's code, read once per notebook."""

    def __init__(self, nb, facts):
        self.facts = facts
        lesson = set(facts["lesson"])
        protected = set(facts["protected"])
        self.cells = {}  # index -> (tree or None, tamper findings)
        self.labels = {}  # index -> how the feedback names the cell
        # Every lesson and student code cell, in order: which names are bound
        # to library objects (keras, ops, ...) when a test runs.
        self.ordered = []
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or self.is_test(cell):
                continue
            self.ordered.append((index, scan.parse(cell.source)))
            if cell.source in lesson:
                continue
            tree = scan.parse(cell.source)
            findings = (
                [scan.Finding(0, "is not valid Python")]
                if tree is None
                else scan.tampering(tree, protected)
            )
            self.cells[index] = (tree, findings)
            self.labels[index] = _label(cell, index)

    def is_test(self, cell):
        meta = cell.metadata.get("nbgrader", {})
        return _is_test(cell) and meta.get("grade_id") in self.facts["tests"]

    def tampering_before(self, index):
        return [
            (self.labels[i], f)
            for i, (_, findings) in sorted(self.cells.items())
            if i < index
            for f in findings
        ]

    def borrowing_for(self, index, target, policy="attention"):
        """Borrowing in the statements that define `target` and, transitively,
        in those defining the names they use (a helper in another cell counts;
        a scratch cell that nothing uses does not)."""
        defines = {}
        for i, (tree, _) in sorted(self.cells.items()):
            if i >= index or tree is None:
                continue
            for node in tree.body:
                for name in scan.node_defines(node):
                    defines.setdefault(name, []).append((i, node))
        chosen, queue, seen = {}, [target], set()
        while queue:
            name = queue.pop()
            if name in seen:
                continue
            seen.add(name)
            for i, node in defines.get(name, []):
                if id(node) not in chosen:
                    chosen[id(node)] = (i, node)
                    queue.extend(scan.used_names(node) - seen)
        libraries = scan.library_names(
            tree for i, tree in self.ordered if i < index and tree is not None
        )
        found = [
            (i, f)
            for i, node in chosen.values()
            for f in scan.borrowing(node, policy, libraries=libraries)
        ]
        found.sort(key=lambda item: (item[0], item[1].line, item[1].reason))
        return [(self.labels[i], f) for i, f in found]


def _label(cell, index):
    """An answer cell by its name; another cell by its number and first line."""
    meta = cell.metadata.get("nbgrader", {})
    if meta.get("solution") and meta.get("grade_id"):
        return f"answer cell `{meta['grade_id']}`"
    if _is_test(cell) and meta.get("grade_id"):
        return f"test cell `{meta['grade_id']}`"
    first = next((ln.strip() for ln in cell.source.splitlines() if ln.strip()), "")
    first = first if len(first) <= 40 else first[:37] + "..."
    return f"cell {index + 1} (`{first}`)"


def _where(findings, limit=4):
    """`answer cell `x`: line 1: imports `os`, line 5: calls `open()`; ...`."""
    by_cell = {}
    for label, finding in findings:
        by_cell.setdefault(label, []).append(finding)
    parts = []
    for label, found in by_cell.items():
        shown = ", ".join(str(f) for f in found[:limit])
        more = f" and {len(found) - limit} more" if len(found) > limit else ""
        parts.append(f"{label}: {shown}{more}")
    return "; ".join(parts)


def _records(outputs):
    """Split a cell's outputs: `(records by (check, which), other outputs)`.

    A record is the one display output a check sends when it has run the
    student's code (`sources.RECORD_MIME`); whatever else sent one is
    counted too, and more than one for a call is an integrity failure."""
    found, kept = {}, []
    for output in outputs:
        data = output.get("data") if isinstance(output.get("data"), dict) else {}
        if sources.RECORD_MIME not in data:
            kept.append(output)
            continue
        payload = data[sources.RECORD_MIME]
        key = (
            (payload.get("check"), payload.get("which"))
            if isinstance(payload, dict)
            else (None, None)
        )
        found.setdefault(key, []).append(payload)
    return found, kept


def take_record(check_name, which, integrity, records, nonce):
    """The one record of this call: `(observations, meta)`, or None with
    the problem appended to `integrity`."""
    sent = records.get((check_name, which), [])
    if not sent:
        integrity.append(
            f"{check_name} recorded no results during this cell (was the "
            "check replaced, or its output hidden?)"
        )
        return None
    if len(sent) > 1:
        integrity.append(
            f"{check_name}: {len(sent)} records arrived for one check call "
            "(something besides the check sent one)"
        )
        return None
    text = sent[0].get("npz") if isinstance(sent[0], dict) else None
    if not isinstance(text, str) or len(text) > MAX_RECORD_CHARS:
        integrity.append(f"{check_name}: the record is not one")
        return None
    try:
        observations, meta = store.load_record(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error) as error:
        integrity.append(f"{check_name}: {error}")
        return None
    if meta.get("check") != check_name or meta.get("which") != which:
        integrity.append(f"{check_name}: the record is for another check")
        return None
    if meta.get("nonce") != nonce:
        integrity.append(f"{check_name}: the record was not made on this test's cases")
        return None
    return observations, meta


class TrustedExecute(Execute):
    """nbgrader's `Execute`, with every graded test decided in this process.

    Besides deciding verdicts (see the module's docstring), it keeps every
    point a submission earned when something goes wrong:

    * the kernel works in the grading run's folder (`autograder.runs`), never
      in nbgrader's: nothing it writes is in a folder the grader touches;
    * a kernel that dies (a native crash, `os._exit`, out of memory) or stops
      answering costs the cell it was running: the kernel is restarted, the
      cells before it (answers and lesson, not tests, not the crashing
      cell) run again, and the rest of the notebook is graded;
    * the whole notebook has a time budget (`KIT_NOTEBOOK_TIMEOUT`); tests
      it did not reach score 0 with a note, those decided before keep their
      points;
    * every verdict is written to the run's journal as soon as it is decided,
      so even if nbgrader itself fails afterwards, the grading unit keeps it.
    """

    #: Kernel restarts allowed in one notebook.
    max_restarts = 3
    #: The sandbox kernel's spec folder when nbgrader runs without the unit.
    _kernels = None

    def preprocess(self, nb, resources, km=None):
        meta = resources.get("nbgrader", {})
        self._facts = _facts(meta.get("assignment", ""), meta.get("notebook", ""))
        self._submission = _Submission(nb, self._facts)
        self._draw = case_draw()
        self._run = runs.RunFolder.from_env()
        own_run = self._run is None
        self._kernels = None
        if own_run:  # nbgrader started without the grading unit
            self._run = runs.RunFolder.create()
            self._kernels = standalone_kernels()
        self._journal = {"tests": {}, "notes": []}
        self._dead = set()  # cells that killed the kernel: not run again
        self._restarts = 0
        self._stopped = ""  # why the rest of the notebook is not run
        self._budget = float(os.environ.get("KIT_NOTEBOOK_TIMEOUT", "900"))
        self._deadline = time.monotonic() + self._budget
        metadata = resources.setdefault("metadata", {})
        path_before = metadata.get("path")
        metadata["path"] = str(self._run.work)  # the kernel's working folder
        previous = os.environ.get(sources.GRADING_ENV)
        os.environ[sources.GRADING_ENV] = str(self._run.cases)  # the kernel inherits it
        if own_run:  # the sandbox finds the run folder through it
            os.environ[runs.RUN_ENV] = str(self._run.path)
        self._borrowed = {}  # exercise -> the BorrowedAnswer found in one of its tests
        try:
            nb, resources = super().preprocess(nb, resources, km=km)
            self._borrowed_everywhere(nb)
            return nb, resources
        finally:
            self._run.clear_cases()
            self._save_journal()
            metadata["path"] = path_before
            if previous is None:
                os.environ.pop(sources.GRADING_ENV, None)
            else:
                os.environ[sources.GRADING_ENV] = previous
            if own_run:
                os.environ.pop(runs.RUN_ENV, None)
                self._run.remove()

    def create_kernel_manager(self):
        """nbgrader's kernel, or, when nbgrader was started without the
        grading unit, the kit's sandbox kernel on this run's own sockets."""
        if self._kernels is None:
            return super().create_kernel_manager()
        from jupyter_client.kernelspec import KernelSpecManager

        from autograder import sandbox

        self.kernel_name = sandbox.KERNEL_NAME
        self.km = self.kernel_manager_class(
            kernel_name=sandbox.KERNEL_NAME,
            config=self.config,
            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(self._kernels)]),
            transport="ipc",
            ip=str(self._run.ipc / "kernel"),
        )
        return self.km

    # ------------------------------------------------------------ time

    def _remaining(self):
        return self._deadline - time.monotonic()

    def _get_timeout(self, cell):
        timeout = super()._get_timeout(cell)
        remaining = max(1, int(self._remaining()))
        return remaining if timeout is None else min(timeout, remaining)

    # ------------------------------------------------------------ cells

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        test = self._submission.is_test(cell)
        if not self._stopped and self._remaining() < 1:
            self._stopped = (
                f"the notebook ran past its time limit of {self._budget:g} s"
            )
            self._note(f"{self._stopped}; the tests after that point were not run")
        if self._stopped:
            cell.outputs = []
            if test:
                self._set_verdict(
                    cell,
                    [_error("NotGraded", f"Not run: {self._stopped}. 0 points.")],
                )
            return cell, resources
        nonce = secrets.token_hex(16) if test else ""
        started = time.monotonic()
        if test:
            self._write_cases(cell, nonce)
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except (DeadKernelError, CellTimeoutError) as error:
            cell = self._kernel_lost(cell, index, error)
        finally:
            if test:
                self._run.clear_cases()
        records, cell.outputs = _records(cell.outputs)
        if test:
            self._decide(cell, index, records, nonce)
        # where the time goes (benchmarks/class_scale.py reads it)
        self._journal.setdefault("seconds", []).append(
            [_label(cell, index), round(time.monotonic() - started, 3)]
        )
        return cell, resources

    def _write_cases(self, cell, nonce):
        """The cases of this test cell's checks, in the run's `cases/`, until
        the cell ends (the kernel sees a hidden case only while its test
        runs)."""
        mode, gid = self._run.case_mode()
        calls = self._facts["tests"][cell.metadata["nbgrader"]["grade_id"]]
        for check_name, which, _ in calls:
            cases, _, _ = expectations(check_name, which, draw=self._draw)
            target = sources.cases_path(str(self._run.cases), check_name, which)
            store.save_cases(target, cases, nonce=nonce, mode=mode)
            if gid is not None:
                os.chown(target, 0, gid)

    # ------------------------------------------------------------ the kernel

    def _kernel_lost(self, cell, index, error):
        """The kernel died or stopped answering while `cell` ran."""
        test = self._submission.is_test(cell)
        what = (
            "stopped answering (it ran past the time limit and did not stop "
            "when interrupted)"
            if isinstance(error, CellTimeoutError)
            else "died (a crash, `os._exit` or running out of memory)"
        )
        if not test:
            self._dead.add(index)
        label = _label(cell, index)
        message = f"The kernel {what} while {label} ran."
        self._note(f"the kernel {what.split(' (')[0]} in {label}")
        cell.outputs.append(_error("KernelDied", message))
        self._restart(index)
        return cell

    def _restart(self, upto):
        """A new kernel, with every cell before `upto` run again (answers and
        lesson cells; not the tests, not cells that killed the kernel)."""
        while not self._stopped:
            if self._restarts >= self.max_restarts:
                self._stopped = (
                    f"the kernel died {self._restarts + 1} times, "
                    "so the rest of the notebook was not run"
                )
                self._note(self._stopped)
                return
            self._restarts += 1
            with contextlib.suppress(Exception):
                self._cleanup_kernel()
            self.km = self.create_kernel_manager()
            self.start_new_kernel()
            self.start_new_kernel_client()
            if self._replay(upto):
                self._note(
                    "the kernel was restarted and the cells before it run again; "
                    "the tests after it were graded"
                )
                return

    def _replay(self, upto):
        """Run the cells before `upto` again, keeping their recorded outputs.
        Return False when the kernel died again (the culprit is marked)."""
        for index, cell in enumerate(self.nb.cells[:upto]):
            if (
                cell.cell_type != "code"
                or index in self._dead
                or self._submission.is_test(cell)
                or not cell.source.strip()
            ):
                continue
            if self._remaining() < 1:
                return True  # the next cell notices the time limit
            original = self.nb.cells[index]
            try:
                self.execute_cell(copy.deepcopy(cell), index, store_history=False)
            except (DeadKernelError, CellTimeoutError):
                self._dead.add(index)
                self._note(f"the kernel died again in {_label(cell, index)}")
                return False
            finally:
                self.nb.cells[index] = original
        return True

    # ------------------------------------------------------------ journal

    def _note(self, text):
        if text not in self._journal["notes"]:
            self._journal["notes"].append(text)
        self._save_journal()

    def _save_journal(self):
        self._run.write_journal(self._journal)

    def _set_verdict(self, cell, outputs):
        cell.outputs = outputs
        errors = [o for o in outputs if o.output_type == "error"]
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        self._journal["tests"][grade_id] = {
            "passed": not errors,
            "ename": errors[-1].ename if errors else "",
            "message": errors[-1].evalue if errors else "",
        }
        self._save_journal()

    # ------------------------------------------------------------ verdicts

    def _borrowed_everywhere(self, nb):
        """A borrowed answer found by one test (what runs differs between
        cases: a fused op called only on 4-D inputs) costs every test of
        that exercise."""
        from autograder.unit import exercise_of

        for cell in nb.cells:
            if not self._submission.is_test(cell):
                continue
            grade_id = cell.metadata["nbgrader"]["grade_id"]
            found = self._borrowed.get(exercise_of(grade_id))
            if found is None or any(o.output_type == "error" for o in cell.outputs):
                continue
            printed = [
                o
                for o in cell.outputs
                if o.output_type == "stream" and "(decided by the grader)" not in o.text
            ]
            self._set_verdict(
                cell,
                [
                    *printed,
                    _error(
                        "BorrowedAnswer",
                        f"{found} (found by another test of this exercise: a "
                        "borrowed answer scores 0 for the whole exercise)",
                    ),
                ],
            )

    def _decide(self, cell, index, records, nonce):
        from autograder import judge

        calls = self._facts["tests"][cell.metadata["nbgrader"]["grade_id"]]
        hidden = any(which == "hidden" for _, which, _ in calls)
        integrity = []
        if any(o.output_type == "execute_result" for o in cell.outputs):
            integrity.append("the test cell produced a value, which checks never do")
        tampering = self._submission.tampering_before(index)
        if tampering:
            integrity.append(f"code before this test {_where(tampering)}")
        borrowed = [
            (check_name, target, found)
            for check_name, _, target in calls
            if target and scan.policy_of(judge.spec(check_name).borrowing)
            for found in [
                self._submission.borrowing_for(
                    index, target, scan.policy_of(judge.spec(check_name).borrowing)
                )
            ]
            if found
        ]
        verdict = None
        if integrity:
            verdict = _integrity(integrity)
        elif borrowed:
            check_name, target, found = borrowed[0]
            verdict = _borrowed(
                f"{check_name}: `{target}` uses a library's ready-made answer "
                f"({_where(found)})",
                scan.policy_of(judge.spec(check_name).borrowing),
            )
        kept = _kept_streams(cell.outputs, hidden)
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if errors and verdict is None:
            # a case decided before the failing one may already name the
            # mistake (the grader's own message, with its diagnosis)
            earlier = self._earlier_failure(calls, records, nonce)
            if earlier is not None:
                self._set_verdict(cell, [*kept, earlier])
                return
        if errors:
            # The student's code failed in this cell (or the kernel died): 0,
            # and their message stays (shortened in a hidden test).
            if hidden:
                errors = [
                    e if e.ename == "KernelDied" else _shortened(e) for e in errors
                ]
            self._set_verdict(cell, [*kept, *errors, *([verdict] if verdict else [])])
            return
        problem, passed = None, []
        if verdict is None:
            for check_name, which, _ in calls:
                kind, message = self._check(
                    check_name, which, integrity, records, nonce
                )
                if kind == "passed":
                    passed.append(message)
                elif kind and problem is None:
                    problem = _error(kind, message)
            verdict = _integrity(integrity) if integrity else problem
        if verdict is not None:
            if verdict.ename == "BorrowedAnswer":
                from autograder.unit import exercise_of

                grade_id = cell.metadata["nbgrader"]["grade_id"]
                self._borrowed.setdefault(exercise_of(grade_id), verdict.evalue)
            self._set_verdict(cell, [*kept, verdict])
        else:
            self._set_verdict(cell, [*kept, _stdout("".join(passed))])

    def _earlier_failure(self, calls, records, nonce):
        """The grader's verdict on the cases that ran before the student's
        code failed, when one of them already differs; else None."""
        for check_name, which, _ in calls:
            sent = records.get((check_name, which), [])
            if len(sent) != 1:
                continue
            record = take_record(check_name, which, [], records, nonce)
            if record is None:
                continue
            observations, meta = record
            if not meta.get("failure") or not observations or meta.get("tampered"):
                continue
            from autograder import judge
            from autograder.judge import wiring

            cases, expected, hint = expectations(check_name, which, draw=self._draw)
            try:
                decide(
                    check_name,
                    cases[: len(observations)],
                    observations,
                    expected[: len(observations)],
                    None,
                    hint,
                    diagnose=judge.spec(check_name).diagnose,
                    wiring=wiring.judge(check_name),
                    notes=[],
                )
            except CheckFailed as failure:
                return _error("CheckFailed", failure.message)
        return None

    def _check(self, check_name, which, integrity, records, nonce):
        """`(kind, message)` for one check call; integrity problems are appended
        to `integrity` (and give `(None, None)`)."""
        record = take_record(check_name, which, integrity, records, nonce)
        if record is None:
            return None, None
        observations, meta = record
        if meta.get("failure"):
            integrity.append(f"{check_name} failed but the cell showed no error")
            return None, None
        if meta.get("tampered"):
            names = ", ".join(f"`{n}`" for n in meta["tampered"][:6])
            integrity.append(f"replaced while the notebook ran: {names}")
            return None, None
        from autograder import judge

        policy = scan.policy_of(judge.spec(check_name).borrowing)
        if policy:
            message = borrowed_message(check_name, meta.get("sublayers", []), policy)
            if message:
                return "BorrowedAnswer", message
        cases, expected, hint = expectations(check_name, which, draw=self._draw)
        from autograder.judge import wiring

        notes = []
        try:
            count = decide(
                check_name,
                cases,
                observations,
                expected,
                None,
                hint,
                diagnose=judge.spec(check_name).diagnose,
                wiring=wiring.judge(check_name),
                notes=notes,
                plain_notes=which == "hidden",
            )
        except CheckFailed as failure:
            return "CheckFailed", failure.message
        return (
            "passed",
            f"{check_name}: all {count} cases passed (decided by the grader).\n"
            + "".join(f"Note: {note}\n" for note in notes),
        )


def _integrity(problems):
    return _error(
        "IntegrityError",
        "Integrity check failed: "
        + "; ".join(problems)
        + ". Graded tests must run unchanged code (see the notebook's rules); "
        "this test scores 0.",
    )


def _borrowed(where, policy="attention"):
    if policy == "blocks":
        why = (
            "This exercise is to build the block yourself from keras.layers "
            "(MultiHeadAttention, Dense, LayerNormalization, ...); keras-hub's "
            "ready-made blocks score no points for it."
        )
    else:
        why = (
            "This exercise is to write the attention yourself; an answer that "
            "delegates to Keras's or keras-hub's attention scores no points for it."
        )
    return _error("BorrowedAnswer", f"{where}. {why}")
