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

The wheel requires ranges, not pins (`REQUIRES`): installed where TensorFlow
already is (Colab, a JupyterHub GPU image), it uses that TensorFlow and Keras
instead of replacing them. tensorflow-text, which requires one TensorFlow
release exactly, is not a requirement: Assignment 3's translation part says
which version to install when it is missing (`autograder.data.wordpiece`).
The first cell of each notebook says the command that installs the kit when
it is missing: `%pip install URL` with `wheel_url` (where the instructor puts
the wheel), else `%pip install <the wheel's file name>` after an upload.

`tests/test_bundle.py` builds it, checks it holds no reference code, no
solution and no hidden case, and runs the visible checks with it alone, with
the grader's TensorFlow and with an older one (`make compat`).
"""

import base64
import csv
import hashlib
import io
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

import nbformat

from autograder import __version__, judge, trusted
from autograder.checks import store
from autograder.notebooks import normalized_json

__all__ = ["REQUIRES", "STUDENT_MODULES", "build_bundle", "install_command"]

DIST = "attention_course_kit_student"
# Files of the package a student's notebook needs, relative to autograder/.
STUDENT_MODULES = (
    "__init__.py",
    "quiet.py",
    "lesson.py",
    "lesson_attention.py",
    "lesson_experiments.py",
    "lesson_seq2seq.py",
    "lesson_transformer.py",
    "checks/__init__.py",
    "checks/attention.py",
    "checks/core.py",
    "checks/crash.py",
    "checks/evidence.py",
    "checks/integrity.py",
    "checks/layers.py",
    "checks/seq2seq.py",
    "checks/sources.py",
    "checks/store.py",
    "checks/taps.py",
    "checks/transformer.py",
    "checks/verdict.py",
    "checks/watch.py",
)
DATA_FILES = (
    "__init__.py",
    "dates.py",
    "lookup.py",
    "pronouns.py",
    "translation.py",
    "wordpiece.py",
    "README.md",
)
# Ranges whose lower bounds are tested (`make compat`: TensorFlow 2.16 with
# Keras 3.3, numpy 1.26, matplotlib 3.9, sacrebleu 2.4, nbgrader 0.9) and
# which the grader's pins satisfy (tests/test_packaging.py). No upper bounds:
# one would make pip replace a runtime's newer TensorFlow with an older one.
# matplotlib 3.9 is the first to work with IPython 9's plotting backends.
# nbgrader brings JupyterLab and its "Validate" button.
REQUIRES = (
    "tensorflow>=2.16",
    "keras>=3.3",
    "numpy>=1.26",
    "matplotlib>=3.9",
    "sacrebleu>=2.4",
    "nbgrader>=0.9",
)

README = """# Attention course kit: student package

1. Install the kit into the Python your notebooks run on. It uses the
   TensorFlow (2.16 or newer) and Keras 3 already there (Colab's, your
   JupyterHub's) and installs them only where they are missing. In a
   notebook cell (Colab, Jupyter):

       %pip install {target}

   or in a terminal: `python -m pip install {target}`.{upload}

   Assignment 3's translation part also needs tensorflow-text built for
   your TensorFlow, e.g. `%pip install "tensorflow-text==2.17.*"` for
   TensorFlow 2.17; the notebook gives the exact command when it is missing.

2. Open the notebooks in `assignments/` (Jupyter, JupyterLab or Colab). The
   first cell prints the versions of Python, TensorFlow, Keras and the rest:
   quote that line when you ask for help.

Each exercise has a check cell you can run as often as you like; it compares
your layer with the expected outputs of the visible cases and names the
likely mistake. Hidden tests run only when your notebook is graded.

Before you hand in a notebook, "Validate" in the notebook toolbar of Jupyter
(nbgrader's extension, installed with the kit) runs every cell and reports
the failing checks; in a terminal, `nbgrader validate NOTEBOOK.ipynb` does
the same.
"""
_UPLOAD = """

   Upload the file `{wheel}` beside the notebooks first (on Colab: the
   Files panel, Upload)."""


def install_command(wheel_name, wheel_url=None):
    """What the first cell of a notebook says to run when the kit is missing.

    The notebooks' sources say it for the wheel's file name; the bundle says
    it for `wheel_url` instead when there is one.
    """
    if wheel_url:
        return f"%pip install {wheel_url}"
    upload = "(upload that file from your instructor beside this notebook first)"
    return f"%pip install {wheel_name}   {upload}"


def _wheel_url(wheel_url, wheel_name):
    """`wheel_url` as pip needs it: ending with the wheel's file name."""
    if not wheel_url:
        return None
    if wheel_url.endswith("/"):  # the folder the instructor puts the wheel in
        return wheel_url + wheel_name
    if not wheel_url.endswith(".whl") or any(c.isspace() for c in wheel_url):
        raise ValueError(
            "Received an invalid value for argument `wheel_url`, expected the URL "
            f"of the wheel (ending with {wheel_name}) or of its folder (ending "
            f"with '/'). Received: wheel_url={wheel_url!r}"
        )
    return wheel_url


def _point_to_wheel(path, wheel_name, wheel_url):
    """Make the first code cell of the notebook at `path` say `wheel_url`."""
    notebook = nbformat.read(path, as_version=4)
    first = next(cell for cell in notebook.cells if cell.cell_type == "code")
    default = json.dumps(install_command(wheel_name))
    if first.source.count(default) != 1:
        raise ValueError(
            f"{path.name}: the first code cell should say once, as a string, "
            f"{default}: update the notebook's source in solutions/ to say it"
        )
    if wheel_url:
        first.source = first.source.replace(
            default, json.dumps(install_command(wheel_name, wheel_url))
        )
        path.write_text(normalized_json(notebook), encoding="utf-8")


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


def build_bundle(course, out, wheel_url=None):
    """Write the student bundle into `out` (replaced); return the wheel's path.

    Args:
        course: the `Course`.
        out: the folder to write.
        wheel_url: where the instructor puts the wheel: its URL, or its
            folder's ending with `/`. The notebooks' first cells then say
            `%pip install URL`; without it, the wheel's file name.
    """
    out = Path(out)
    wheel_name = f"{DIST}-{__version__}-py3-none-any.whl"
    wheel_url = _wheel_url(wheel_url, wheel_name)
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
    for notebook in sorted(release.rglob("*.ipynb")):
        _point_to_wheel(notebook, wheel.name, wheel_url)
    readme = README.format(
        target=wheel_url or wheel.name,
        upload="" if wheel_url else _UPLOAD.format(wheel=wheel.name),
    )
    (out / "README.md").write_text(readme, encoding="utf-8")
    return wheel
