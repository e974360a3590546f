"""The student bundle holds no solution and still checks a student's work.

`autograder bundle` is what students receive. Here it is built, searched
for the reference layers, the answers of the solution notebooks and the
hidden cases and tests, and then installed on its own (without the
instructor's package) to run every visible check (`bundle_probe.py`): right
answers pass, a typical mistake is named, hidden cases are refused. It runs
with the grader's TensorFlow and, installed beside an older TensorFlow and
Keras (`make compat`), says the same there. The wheel requires ranges that
keep a runtime's own TensorFlow, and each notebook's first cell says how to
install the kit where it is missing.
"""

import ast
import json
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from autograder import judge, scan
from autograder.bundle import _point_to_wheel, _wheel_url, build_bundle, install_command
from autograder.notebooks import build_source
from autograder.pipeline import Course, exercise_of

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    course = Course()
    wheel = build_bundle(course, out)
    files = {}
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            files[f"wheel:{name}"] = archive.read(name)
    for path in out.rglob("*"):
        if path.is_file() and path.suffix != ".whl":
            files[str(path.relative_to(out))] = path.read_bytes()
    return course, out, wheel, files


def _solution_lines(course):
    """Lines only the solution blocks have (not also in given code)."""
    lines = set()
    for assignment in course.assignments():
        notebook = build_source(course.sources(assignment)[0])
        inside, outside = set(), []
        for cell in notebook.cells:
            in_block = False
            for line in cell.source.splitlines():
                if "### BEGIN SOLUTION" in line:
                    in_block = True
                elif "### END SOLUTION" in line:
                    in_block = False
                elif in_block and len(line.strip()) > 24:  # shorter: generic Python
                    inside.add(line.strip())
                elif not in_block:
                    outside.append(line)
        given = "\n".join(outside)  # code and lesson text (which may quote a line)
        lines |= {
            line
            for line in inside
            if line not in given and not re.fullmatch(r"\w+=\w+,?", line)
        }  # a lone keyword argument (`return_attention_scores=True,`) is generic
    return lines


def _hidden_markers(course):
    markers = set()
    for name in judge.names():
        for case in judge.spec(name).cases("hidden"):
            markers.add(case.title)
    for assignment in course.assignments():
        for cell in build_source(course.sources(assignment)[0]).cells:
            if "BEGIN HIDDEN TESTS" in cell.source:
                hidden = cell.source.split("### BEGIN HIDDEN TESTS", 1)[1]
                hidden = hidden.split("### END HIDDEN TESTS", 1)[0]
                markers |= {ln.strip() for ln in hidden.splitlines() if ln.strip()}
    return {m for m in markers if len(m) > 18}  # short ones occur in the lesson


def test_no_reference_judge_or_pipeline_module(bundle):
    _, _, _, files = bundle
    names = [n for n in files if n.startswith("wheel:autograder/")]
    for forbidden in ("reference/", "judge/", "pipeline", "trusted", "scan", "jail"):
        assert not [n for n in names if forbidden in n], forbidden


def test_no_reference_code_solution_or_hidden_case(bundle):
    course, _, _, files = bundle
    text = "\n".join(data.decode("utf-8", "replace") for data in files.values())
    reference = (ROOT / "autograder" / "reference" / "seq2seq.py").read_text()
    code = {
        line.strip()
        for line in reference.splitlines()
        if "ops." in line and len(line.strip()) > 20
    }
    assert code and not [line for line in code if line in text]
    solution = _solution_lines(course)
    assert len(solution) > 20
    assert not [line for line in solution if line in text]
    hidden = _hidden_markers(course)
    assert len(hidden) > 10
    assert not [marker for marker in hidden if marker in text]


PROBE = ROOT / "tests" / "bundle_probe.py"
COMPAT = ROOT / ".venv-compat"


def _probe_payload(course):
    """What `bundle_probe.py` runs, per assignment: the notebook's first cell
    and imports, its visible test cells, and per sample with a patch of the
    solution (correct variants and typical mistakes; not the borrowed ones,
    which the grader's scan refuses) its answers and the tests of the
    exercises it should lose (every test for a correct one)."""
    payload = {}
    for assignment in course.assignments():
        notebook = build_source(course.sources(assignment)[0])
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        imports, tests = [code[0].source], {}
        for cell in code[1:]:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
            if grade_id.startswith("test_"):
                tests[grade_id] = cell.source
            elif not grade_id:
                tree = ast.parse(cell.source)
                imports += [
                    ast.get_source_segment(cell.source, node)
                    for node in tree.body
                    if isinstance(node, ast.Import | ast.ImportFrom)
                ]
        full = course.exercises(assignment)
        samples = {}
        for sample in course.samples(assignment):
            if sample.base != "solution" or sample.verdicts:
                continue
            submission = course.make_submission(assignment, sample)
            expected = course.expected_scores(assignment, sample)
            lost = {name for name, points in full.items() if expected[name] < points}
            samples[sample.name] = {
                "answers": {
                    cell.metadata["nbgrader"]["grade_id"]: cell.source
                    for cell in submission.cells
                    if cell.metadata.get("nbgrader", {}).get("solution")
                },
                "tests": [t for t in tests if not lost or exercise_of(t) in lost],
            }
        payload[assignment] = {"imports": imports, "tests": tests, "samples": samples}
    return payload


def _probe(python, site, payload, *args, extra_path=()):
    done = subprocess.run(
        [str(python), *args, str(PROBE), str(site), str(payload), *extra_path],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=payload.parent,
        env={**os.environ, "MPLBACKEND": "Agg", "KIT_DATA_CACHE": str(payload.parent)},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def payload(bundle, tmp_path_factory):
    course, _, _, _ = bundle
    path = tmp_path_factory.mktemp("probe") / "payload.json"
    path.write_text(json.dumps(_probe_payload(course)))
    return path


@pytest.fixture(scope="module")
def grader_report(bundle, payload):
    """The probe with the grader's TensorFlow, from the bundle alone: started
    with -S (no .pth files, so the instructor's editable install of
    `autograder` is invisible), the libraries from site-packages."""
    _, _, wheel, _ = bundle
    site = payload.parent / "grader-site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    purelib = sysconfig.get_paths()["purelib"]
    return _probe(sys.executable, site, payload, "-S", extra_path=[purelib])


def _hints(report):
    """Per sample and test: passed, or the hint line of the failure."""
    hints = {}
    for run, results in report["runs"].items():
        for test, result in results.items():
            if result["passed"]:
                hints[run, test] = "passed"
            else:
                lines = result["message"].splitlines()
                hints[run, test] = next(
                    (ln for ln in lines if ln.startswith("Hint:")), lines[0]
                )
    return hints


def test_visible_checks_run_from_the_bundle_alone(bundle, grader_report):
    course, _, _, _ = bundle
    report = grader_report
    assert "grader-site" in report["autograder"], report["autograder"]
    assert report["private_importable"] == []
    runs = report["runs"]
    for assignment in course.assignments():
        solution = runs[f"{assignment}/solution"]
        assert solution and all(r["passed"] for r in solution.values()), solution
        assert all("cases passed" in r["output"] for r in solution.values())
    assert len(runs["01_attention_seq2seq/solution"]) == 7
    scaled = runs["01_attention_seq2seq/dot-scaled"]["test_dot_score"]
    assert "case 1 of 2 failed" in scaled["message"]
    no_mask = runs["01_attention_seq2seq/luong-no-mask"]["test_luong_attention"]
    assert "pass `values_mask` to your masked softmax" in no_mask["message"]
    assert "hidden tests run when your notebook is graded" in report["hidden"]
    assert all(satisfied for _, _, satisfied in report["requires"]), report


def test_visible_checks_on_an_older_tensorflow(bundle, payload, grader_report):
    """The bundle installed beside an older TensorFlow and Keras (`make
    compat`): its requirements are already met there (pip would replace
    nothing), and every visible check says what it says with the grader's:
    the solutions and other correct answers pass, each mistake gets the same
    verdict and hint."""
    python = COMPAT / "bin" / "python"
    if not (COMPAT / ".installed").exists() or not python.exists():
        pytest.skip(
            "no older TensorFlow to test the bundle with: `make compat` "
            "installs it in .venv-compat"
        )
    _, _, wheel, _ = bundle
    site = payload.parent / "compat-site"  # the compat venv stays as installed
    install = ["install", "--quiet", "--no-deps", "--no-index", "--target", str(site)]
    subprocess.run(
        [python, "-m", "pip", *install, str(wheel)], check=True, capture_output=True
    )
    report = _probe(python, site, payload)
    versions, grader = report["versions"], grader_report["versions"]
    for name in ("tensorflow", "keras"):
        assert Version(versions[name]) < Version(grader[name]), (versions, grader)
    assert report["requires"] and all(ok for _, _, ok in report["requires"]), report
    assert report["private_importable"] == []
    shown = f"tensorflow {versions['tensorflow']} | keras {versions['keras']}"
    assert shown in report["show_versions"]
    assert _hints(report) == _hints(grader_report)
    for run, results in report["runs"].items():
        for result in results.values():  # Keras's own warnings stay out
            assert "Note, a warning" not in result.get("output", ""), run
    failed = {
        run
        for run, r in report["runs"].items()
        if not all(x["passed"] for x in r.values())
    }
    assert len(failed) >= 10, failed
    release = ".".join(versions["tensorflow"].split(".")[:2])
    assert f'%pip install "tensorflow-text=={release}.*"' in report["tensorflow_text"]
    print(f"compat probe: {report['seconds']} s; {versions}")


def _metadata(wheel):
    with zipfile.ZipFile(wheel) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        text = archive.read(name).decode()
    return [
        Requirement(line.split(":", 1)[1].strip())
        for line in text.splitlines()
        if line.startswith("Requires-Dist:")
    ]


def test_wheel_requires_ranges_that_keep_the_runtimes_tensorflow(bundle):
    _, _, wheel, _ = bundle
    requires = {r.name: r for r in _metadata(wheel)}
    for name in ("tensorflow", "keras"):
        specifiers = {s.operator for s in requires[name].specifier}
        assert specifiers == {">="}, requires[name]  # no pin, no upper bound
    # tensorflow-text requires one TensorFlow release exactly: not a requirement
    assert "tensorflow-text" not in requires
    assert "nbgrader" in requires  # the notebook toolbar's Validate button
    assert requires["nbgrader"].specifier.contains("0.9.6")


def _first_code_cell(path):
    notebook = nbformat.read(path, as_version=4)
    return next(cell for cell in notebook.cells if cell.cell_type == "code")


def test_first_cells_say_how_to_install_the_kit(bundle, tmp_path):
    course, out, wheel, _ = bundle
    notebooks = sorted((out / "assignments").rglob("*.ipynb"))
    assert len(notebooks) == len(course.assignments())
    for path in notebooks:
        first = _first_code_cell(path)
        assert "lesson.show_versions()" in first.source
        assert install_command(wheel.name) in first.source
    # Where the instructor puts the wheel (its folder): `%pip install URL`.
    url = "https://course.example.org/kit/"
    copy = tmp_path / notebooks[0].name
    copy.write_bytes(notebooks[0].read_bytes())
    _point_to_wheel(copy, wheel.name, _wheel_url(url, wheel.name))
    first = _first_code_cell(copy)
    assert f'"%pip install {url}{wheel.name}"' in first.source
    assert "upload" not in first.source
    # Changed, the cell is read by the grader as the student's: nothing in it
    # is refused.
    assert scan.tampering(scan.parse(first.source), {"lesson"}) == []
    # Without the kit, it says that one command.
    done = subprocess.run(
        [sys.executable, "-S", "-c", first.source],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()
    assert last[-2].startswith("ModuleNotFoundError: The course kit is not installed")
    assert last[-1] == f"%pip install {url}{wheel.name}"
    with pytest.raises(ValueError, match="wheel_url"):
        build_bundle(course, tmp_path / "never", wheel_url="https://x.org/kit.zip")
    assert not (tmp_path / "never").exists()


def test_bundle_readme_names_the_wheel_and_validate(bundle):
    _, out, wheel, _ = bundle
    readme = (out / "README.md").read_text()
    assert f"%pip install {wheel.name}" in readme
    assert "Validate" in readme and "nbgrader validate" in readme
    assert re.match(
        r"attention_course_kit_student-[\d.]+-py3-none-any\.whl", wheel.name
    )


def test_validate_button_on_an_older_tensorflow(bundle, tmp_path):
    """nbgrader's Validate (the notebook toolbar's button runs `nbgrader
    validate`), with the bundle installed beside an older TensorFlow: a
    finished notebook passes; one with a mistake fails with the check's
    message, naming the mistake."""
    python = COMPAT / "bin" / "python"
    if not (COMPAT / ".installed").exists() or not python.exists():
        pytest.skip("no older TensorFlow: `make compat` installs it in .venv-compat")
    course, _, wheel, _ = bundle
    site = tmp_path / "site"
    install = ["install", "--quiet", "--no-deps", "--no-index", "--target", str(site)]
    subprocess.run(
        [python, "-m", "pip", *install, str(wheel)], check=True, capture_output=True
    )
    assignment = "02_self_attention"  # the quickest notebook to run in full
    samples = {s.name: s for s in course.samples(assignment)}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIT_", "PYTHON"))}
    env["PYTHONPATH"] = str(site)  # the kernel imports the kit from the bundle
    env["PATH"] = os.pathsep.join([str(python.parent), env["PATH"]])
    outputs = {}
    for name in ("solution", "no-scale"):
        path = tmp_path / name / course.notebook_name(assignment)
        path.parent.mkdir()
        nbformat.write(course.make_submission(assignment, samples[name]), path)
        done = subprocess.run(
            [python.parent / "nbgrader", "validate", path.name],
            cwd=path.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        outputs[name] = done.stdout + done.stderr
    assert "Success! Your notebook passes all the tests." in outputs["solution"], (
        outputs["solution"][-3000:]
    )
    failed = outputs["no-scale"]
    assert "VALIDATION FAILED" in failed, failed[-3000:]
    assert "check_scaled_dot_product_attention" in failed
    assert "sqrt" in failed  # the check's hint names the missing scale


def test_every_module_a_notebook_imports_is_shipped():
    """A notebook's `from autograder import X` / `from autograder.data import
    Y` needs X and Y in the student bundle (fast: reads the sources only)."""
    from autograder.bundle import DATA_FILES, STUDENT_MODULES

    needed = set()
    for source in sorted((ROOT / "solutions").glob("*/*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in (
                "autograder",
                "autograder.data",
            ):
                folder = "" if node.module == "autograder" else "data/"
                needed |= {(source.name, folder + a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "autograder."
            ):
                parts = node.module.split(".")[1:]
                if parts[0] != "data":
                    needed.add((source.name, "/".join(parts)))
    shipped = {m.removesuffix(".py").removesuffix("/__init__") for m in STUDENT_MODULES}
    shipped |= {"data/" + f.removesuffix(".py") for f in DATA_FILES}
    missing = sorted((nb, name) for nb, name in needed if name not in shipped)
    assert len(needed) > 5
    assert missing == []
