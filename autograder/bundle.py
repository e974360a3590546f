"""The student bundle: what students receive, with no solutions in it.

`autograder bundle [--out DIR]` writes:

* `assignments/`: the student notebooks (nbgrader's release: answers
  replaced by `raise NotImplementedError()`, hidden tests removed);
* `attention_course_kit_student-<version>-py3-none-any.whl`: the part of
  the `autograder` package a notebook imports (the lesson helpers, the
  dataset and the kernel side of the checks), plus the visible cases with
  their expected outputs and mistake variants as `.npz` arrays. Not in it:
  the reference layers, the judge (hidden cases, mistakes as code), the
  grading pipeline;
* `README.md`: how to install it and work through the notebooks.

`tests/test_bundle.py` builds it, checks it holds no reference code, no
solution and no hidden case, and runs the visible checks with it alone.
"""

import base64
import csv
import hashlib
import io
import shutil
import tempfile
import zipfile
from pathlib import Path

from autograder import __version__, judge, trusted
from autograder.checks import store

__all__ = ["STUDENT_MODULES", "build_bundle"]

DIST = "attention_course_kit_student"
# Files of the package a student's notebook needs, relative to autograder/.
STUDENT_MODULES = (
    "__init__.py",
    "quiet.py",
    "lesson.py",
    "lesson_attention.py",
    "lesson_transformer.py",
    "checks/__init__.py",
    "checks/attention.py",
    "checks/core.py",
    "checks/integrity.py",
    "checks/layers.py",
    "checks/seq2seq.py",
    "checks/sources.py",
    "checks/store.py",
    "checks/transformer.py",
    "checks/verdict.py",
    "checks/watch.py",
)
DATA_FILES = (
    "__init__.py",
    "dates.py",
    "lookup.py",
    "translation.py",
    "wordpiece.py",
    "README.md",
)
REQUIRES = (
    "tensorflow==2.21.0",
    "keras==3.15.1",
    "tensorflow-text==2.21.1",
    "sacrebleu==2.6.0",
    "numpy==2.4.6",
    "matplotlib==3.11.2",
    "jupyterlab==4.6.6",
)

README = """# Attention course kit: student package

1. Install (Python 3.11):

       python -m pip install {wheel}

2. Open the notebooks:

       jupyter lab assignments/

Each exercise has a check cell you can run as often as you like; it compares
your layer with the expected outputs of the visible cases and names the
likely mistake. Hidden tests run only when your notebook is graded.
"""


def _visible_expectations(folder):
    """One `.npz` per check: the visible cases, expected outputs, variants."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in judge.names():
        spec = judge.spec(name)
        cases = spec.cases("visible")
        store.save_expectations(
            folder / f"{name}.npz", cases, spec.expectations(cases), spec.generic_hint
        )


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return [path, f"sha256={digest.decode()}", str(len(data))]


def _wheel(files, out_dir):
    """Write a pure-Python wheel holding `files` ({archive path: bytes})."""
    info = f"{DIST}-{__version__}.dist-info"
    metadata = "\n".join(
        [
            "Metadata-Version: 2.1",
            f"Name: {DIST.replace('_', '-')}",
            f"Version: {__version__}",
            "Summary: The student side of the attention course kit (no solutions)",
            "Requires-Python: >=3.11",
            *[f"Requires-Dist: {r}" for r in REQUIRES],
            "",
        ]
    )
    wheel = "Wheel-Version: 1.0\nGenerator: autograder.bundle\n"
    wheel += "Root-Is-Purelib: true\nTag: py3-none-any\n"
    files = {
        **files,
        f"{info}/METADATA": metadata.encode(),
        f"{info}/WHEEL": wheel.encode(),
    }
    rows = [_record_line(path, data) for path, data in sorted(files.items())]
    rows.append([f"{info}/RECORD", "", ""])
    record = io.StringIO()
    csv.writer(record, lineterminator="\n").writerows(rows)
    files[f"{info}/RECORD"] = record.getvalue().encode()
    path = Path(out_dir) / f"{DIST}-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(files.items()):
            info_entry = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info_entry.external_attr = 0o644 << 16
            archive.writestr(info_entry, data)
    return path


def build_bundle(course, out):
    """Write the student bundle into `out` (replaced); return the wheel's path."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    package = Path(trusted.__file__).resolve().parent
    from autograder import data

    data_dir = Path(next(iter(data.__path__))).resolve()
    files = {}
    for name in STUDENT_MODULES:
        files[f"autograder/{name}"] = (package / name).read_bytes()
    for name in DATA_FILES:
        files[f"autograder/data/{name}"] = (data_dir / name).read_bytes()
    with tempfile.TemporaryDirectory() as scratch:
        _visible_expectations(Path(scratch))
        for path in sorted(Path(scratch).glob("*.npz")):
            files[f"autograder/checks/expected/{path.name}"] = path.read_bytes()
    wheel = _wheel(files, out)
    release = course.generate(out / "assignments")
    for extra in release.rglob("*"):
        if extra.is_file() and extra.suffix != ".ipynb":
            extra.unlink()  # only the notebooks: nbgrader's release has no more
    (out / "README.md").write_text(README.format(wheel=wheel.name), encoding="utf-8")
    return wheel
