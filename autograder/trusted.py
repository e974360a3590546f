"""Verdicts decided outside the student's kernel.

nbgrader runs the tests in the same kernel as the student's code, so a
submission can replace `np.allclose`, the checks, or IPython's traceback
display and pass. Here the kernel only *records*: during grading each check
runs the student's code on cases the grader wrote to a file and saves the
outputs (`autograder.checks.sources`). `TrustedExecute`, which replaces
nbgrader's `Execute` preprocessor and runs in the grader's process, then
decides each graded test cell:

1. the record the cell's check wrote during that cell (records are deleted
   before each test cell runs) is compared with expected outputs computed
   by the reference in a process that never ran student code (cached per
   batch under `$KIT_TRUSTED_DIR`);
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

import functools
import hashlib
import json
import os
import shutil
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import Execute

from autograder import scan
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


def expectations(check_name, which, base=None):
    """`(cases, expectations, generic hint)`, computed once and cached (on disk
    for the batch, in memory for this process)."""
    return _load(trusted_dir(base) / f"{check_name}--{which}.npz", check_name, which)


@functools.cache
def _load(path, check_name, which):
    if not path.exists():
        from autograder import judge

        spec = judge.spec(check_name)
        cases = spec.cases(which)
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


def _kept_streams(outputs):
    """The cell's printed lines, without the kernel's own "cases ran" lines
    (the verdict line replaces them)."""
    kept = []
    for output in outputs:
        if output.output_type != "stream":
            continue
        text = "".join(
            line for line in output.text.splitlines(keepends=True) if _RAN not in line
        )
        if text:
            kept.append(NotebookNode(output_type="stream", name=output.name, text=text))
    return kept


def _stdout(text):
    return NotebookNode(output_type="stream", name="stdout", text=text)


class _Submission:
    """The student's code, read once per notebook."""

    def __init__(self, nb, facts):
        self.facts = facts
        lesson = set(facts["lesson"])
        protected = set(facts["protected"])
        self.cells = {}  # index -> (tree or None, tamper findings)
        self.labels = {}  # index -> how the feedback names the cell
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or self.is_test(cell):
                continue
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
        found = [
            (i, f) for i, node in chosen.values() for f in scan.borrowing(node, policy)
        ]
        found.sort(key=lambda item: (item[0], item[1].line, item[1].reason))
        return [(self.labels[i], f) for i, f in found]


def _label(cell, index):
    """An answer cell by its name; another cell by its number and first line."""
    meta = cell.metadata.get("nbgrader", {})
    if meta.get("solution") and meta.get("grade_id"):
        return f"answer cell `{meta['grade_id']}`"
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


class TrustedExecute(Execute):
    """nbgrader's `Execute`, with every graded test decided in this process."""

    def preprocess(self, nb, resources, km=None):
        meta = resources.get("nbgrader", {})
        self._facts = _facts(meta.get("assignment", ""), meta.get("notebook", ""))
        self._submission = _Submission(nb, self._facts)
        path = Path(resources.get("metadata", {}).get("path") or ".").resolve()
        self._kit = path / ".kit"
        shutil.rmtree(self._kit, ignore_errors=True)
        (self._kit / "cases").mkdir(parents=True)
        (self._kit / "records").mkdir()
        # The kernel may run as an unprivileged user: it writes records here.
        os.chmod(self._kit, 0o755)
        os.chmod(self._kit / "cases", 0o755)
        os.chmod(self._kit / "records", 0o777)
        for calls in self._facts["tests"].values():
            for check_name, which, _ in calls:
                cases, _, _ = expectations(check_name, which)
                target = sources.cases_path(str(self._kit), check_name, which)
                store.save_cases(target, cases)
                os.chmod(target, 0o644)
        previous = os.environ.get(sources.GRADING_ENV)
        os.environ[sources.GRADING_ENV] = str(self._kit)  # the kernel inherits it
        try:
            return super().preprocess(nb, resources, km=km)
        finally:
            if previous is None:
                os.environ.pop(sources.GRADING_ENV, None)
            else:
                os.environ[sources.GRADING_ENV] = previous

    def preprocess_cell(self, cell, resources, index):
        if not self._submission.is_test(cell):
            return super().preprocess_cell(cell, resources, index)
        records = self._kit / "records"
        for old in records.iterdir():  # only this cell's own records count
            old.unlink()
        cell, resources = super().preprocess_cell(cell, resources, index)
        self._decide(cell, index)
        return cell, resources

    def _decide(self, cell, index):
        from autograder import judge

        calls = self._facts["tests"][cell.metadata["nbgrader"]["grade_id"]]
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
        if any(o.output_type == "error" for o in cell.outputs):
            # The student's code failed in this cell: 0, and their message stays.
            if verdict is not None:
                cell.outputs.append(verdict)
            return
        problem, passed = None, []
        if verdict is None:
            for check_name, which, _ in calls:
                kind, message = self._check(check_name, which, integrity)
                if kind == "passed":
                    passed.append(message)
                elif kind and problem is None:
                    problem = _error(kind, message)
            verdict = _integrity(integrity) if integrity else problem
        kept = _kept_streams(cell.outputs)
        if verdict is not None:
            cell.outputs = [*kept, verdict]
        else:
            cell.outputs = [*kept, _stdout("".join(passed))]

    def _check(self, check_name, which, integrity):
        """`(kind, message)` for one check call; integrity problems are appended
        to `integrity` (and give `(None, None)`)."""
        path = sources.record_path(str(self._kit), check_name, which)
        if not os.path.exists(path):
            integrity.append(
                f"{check_name} recorded no results during this cell (was the "
                "check replaced, or its output hidden?)"
            )
            return None, None
        try:
            observations, meta = store.load_record(path)
        except ValueError as error:
            integrity.append(f"{check_name}: {error}")
            return None, None
        if meta.get("check") != check_name or meta.get("which") != which:
            integrity.append(f"{check_name}: the record is for another check")
            return None, None
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
        cases, expected, hint = expectations(check_name, which)
        try:
            count = decide(check_name, cases, observations, expected, None, hint)
        except CheckFailed as failure:
            return "CheckFailed", failure.message
        return (
            "passed",
            f"{check_name}: all {count} cases passed (decided by the grader).\n",
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
