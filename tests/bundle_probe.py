"""Run the visible checks from the student bundle alone, in any Python.

`tests/test_bundle.py` runs this script with the grader's Python (started
with `-S`, so the instructor's editable install is invisible) and with the
older TensorFlow of `.venv-compat` (`make compat`), then compares the two.
It uses only the bundle and the libraries of the Python that runs it: no
pytest, nothing of the instructor's package.

    python bundle_probe.py SITE PAYLOAD [PATH ...]

SITE holds the installed wheel; PAYLOAD is the JSON that the test writes:
per assignment, the import statements of the notebook's lesson cells, the
visible test cells and, per sample (the solution, other correct answers,
typical mistakes), its answer cells and the test cells to run. Any PATH is
appended to `sys.path` (the grader's site-packages under `-S`). Prints one
JSON line: where `autograder` came from, the versions, the wheel's
requirements against what is installed, and per sample and test cell either
"passed" with the check's notes, or the failure message.
"""

import contextlib
import importlib.metadata
import io
import json
import os
import sys
import time
from pathlib import Path

site, payload_path, *extra = sys.argv[1:]
sys.path.insert(0, site)
sys.path.extend(extra)
os.environ.setdefault("MPLBACKEND", "Agg")
started = time.perf_counter()

import autograder  # noqa: E402  (from the bundle: the path is set above)


def private_modules():
    """The instructor's modules that must not be importable from the bundle."""
    found = []
    for name in ("autograder.judge", "autograder.reference.seq2seq"):
        try:
            __import__(name)
        except ImportError:
            continue
        found.append(name)
    return found


def installed_version(name):
    if name == "tensorflow":  # `tensorflow-cpu` is the same TensorFlow
        import tensorflow as tf

        return tf.__version__
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def requirements():
    """Each `Requires-Dist` of the wheel with the installed version, and
    whether that version satisfies it (pip would then leave it alone)."""
    from packaging.requirements import Requirement

    [metadata] = Path(site).glob("*.dist-info/METADATA")
    rows = []
    for line in metadata.read_text().splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        requirement = Requirement(line.split(":", 1)[1].strip())
        if requirement.marker is not None:
            continue  # an extra: not installed by default
        version = installed_version(requirement.name)
        satisfied = version is not None and requirement.specifier.contains(
            version, prereleases=True
        )
        rows.append([str(requirement), version, satisfied])
    return rows


def run_cells(space, sources):
    """Exec each test cell; "passed" and its output, or the failure."""
    from autograder.checks import CheckFailed

    results = {}
    for grade_id, source in sources.items():
        output = io.StringIO()
        try:
            with contextlib.redirect_stdout(output):
                exec(source, space)
        except CheckFailed as failure:
            results[grade_id] = {"passed": False, "message": str(failure)}
        else:
            results[grade_id] = {"passed": True, "output": output.getvalue()}
    return results


def main():
    payload = json.loads(Path(payload_path).read_text())
    from autograder.data import wordpiece

    report = {
        "autograder": autograder.__file__,
        "private_importable": private_modules(),
        "runs": {},
    }
    for assignment, data in payload.items():
        for sample, run in data["samples"].items():
            space = {"__name__": "__main__"}
            with contextlib.redirect_stdout(io.StringIO()):
                exec("\n".join(data["imports"]), space)  # the notebook's imports
                for source in run["answers"].values():
                    exec(source, space)
            tests = {t: data["tests"][t] for t in run["tests"]}
            report["runs"][f"{assignment}/{sample}"] = run_cells(space, tests)
    # An instructor-only case set is refused with a message, not a crash.
    from autograder import checks

    try:
        checks.check_dot_score(object, cases="hidden")
    except checks.CheckFailed as refused:
        report["hidden"] = str(refused)
    else:
        report["hidden"] = None
    try:
        wordpiece.Tokenizer(wordpiece.RESERVED)
    except wordpiece.TensorFlowTextMissing as missing:
        report["tensorflow_text"] = str(missing)
    else:
        report["tensorflow_text"] = None
    from autograder import lesson

    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        lesson.show_versions()
    report["show_versions"] = shown.getvalue().strip()
    report["versions"] = {
        name: installed_version(name)
        for name in ("tensorflow", "keras", "numpy", "matplotlib", "nbgrader")
    }
    report["requires"] = requirements()
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report))


main()
