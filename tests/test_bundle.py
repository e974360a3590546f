"""The student bundle holds no solution and still checks a student's work.

`autograder bundle` is what students receive. Here it is built, searched
for the reference layers, the answers of the solution notebooks and the
hidden cases and tests, and then installed on its own (without the
instructor's package) to run every visible check: right answers pass, a
typical mistake is named, hidden cases are refused.
"""

import json
import re
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from autograder import judge
from autograder.bundle import build_bundle
from autograder.notebooks import build_source
from autograder.pipeline import Course, solution_answers

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


SCRIPT = textwrap.dedent(
    """
    import json, sys
    # Started with -S: no .pth files, so the instructor's editable install of
    # `autograder` is invisible; the libraries come from site-packages.
    sys.path.insert(0, sys.argv[1])
    sys.path.append(sys.argv[3])
    import autograder
    assert autograder.__file__.startswith(sys.argv[1]), autograder.__file__
    for private in ("autograder.judge", "autograder.reference.seq2seq"):
        try:
            __import__(private)
        except ImportError:
            pass
        else:
            raise SystemExit(f"{private} is importable from the bundle")
    import keras
    import numpy as np
    from keras import ops
    from autograder import checks
    from autograder.checks import CheckFailed
    answers = json.load(open(sys.argv[2]))
    space = {"keras": keras, "ops": ops, "np": np}
    for source in answers.values():
        exec(source, space)
    pairs = [
        (checks.check_dot_score, "DotScore"),
        (checks.check_general_score, "GeneralScore"),
        (checks.check_concat_score, "ConcatScore"),
        (checks.check_masked_softmax, "masked_softmax"),
        (checks.check_luong_attention, "LuongAttention"),
        (checks.check_bahdanau_attention, "BahdanauAttention"),
        (checks.check_bahdanau_decoder_step, "BahdanauDecoderStep"),
    ]
    for check, name in pairs:
        check(space[name])

    class Scaled(space["DotScore"]):
        def call(self, query, keys):
            return super().call(query, keys) / 2.0

    messages = []
    for attempt in (lambda: checks.check_dot_score(Scaled),
                    lambda: checks.check_dot_score(space["DotScore"], cases="hidden")):
        try:
            attempt()
        except CheckFailed as failure:
            messages.append(str(failure))
    print(json.dumps(messages))
    """
)


def test_visible_checks_run_from_the_bundle_alone(bundle, tmp_path):
    course, _, wheel, _ = bundle
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    answers = {}
    for assignment in course.assignments():
        answers.update(solution_answers(build_source(course.sources(assignment)[0])))
    (tmp_path / "answers.json").write_text(json.dumps(answers))
    (tmp_path / "run.py").write_text(SCRIPT)
    done = subprocess.run(
        [
            sys.executable,
            "-S",
            str(tmp_path / "run.py"),
            str(site),
            str(tmp_path / "answers.json"),
            sysconfig.get_paths()["purelib"],
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("cases passed") == 7
    scaled, hidden = json.loads(done.stdout.strip().splitlines()[-1])
    assert "case 1 of 2 failed" in scaled
    assert "hidden tests run when your notebook is graded" in hidden


def test_bundle_readme_names_the_wheel(bundle):
    _, out, wheel, _ = bundle
    assert wheel.name in (out / "README.md").read_text()
    assert re.match(
        r"attention_course_kit_student-[\d.]+-py3-none-any\.whl", wheel.name
    )
