"""The project's own files: pins agree, README and CI agree, no junk in git."""

import re
import subprocess
import tomllib
from pathlib import Path

import nbformat
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_pins_equal_pyproject():
    project = pyproject()["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    text = (ROOT / "environment.yml").read_text()
    pins = set(re.findall(r"^\s+- ([A-Za-z0-9_.\[\]-]+==[^\s]+)$", text, re.M))
    assert pins == wanted
    assert "python=3.11" in text


def test_every_dependency_is_pinned():
    project = pyproject()["project"]
    for spec in project["dependencies"] + project["optional-dependencies"]["dev"]:
        assert "==" in spec, spec


def pinned(specs):
    """{name: version} of `name==version` requirements."""
    versions = {}
    for spec in specs:
        requirement = Requirement(spec)
        versions[requirement.name] = next(iter(requirement.specifier)).version
    return versions


def test_student_bundle_ranges_admit_the_pins():
    """The student wheel requires ranges (a runtime keeps its own TensorFlow),
    each met by the version the grader pins, and no tensorflow-text."""
    from autograder.bundle import REQUIRES

    pins = pinned(pyproject()["project"]["dependencies"])
    for spec in REQUIRES:
        assert "==" not in spec, spec
        requirement = Requirement(spec)
        assert requirement.specifier.contains(pins[requirement.name]), spec
    assert "tensorflow-text" not in {Requirement(spec).name for spec in REQUIRES}


def test_compat_environment_is_older_and_within_the_ranges():
    """`make compat` installs, for each range, a release it admits; for
    TensorFlow (its CPU build) and Keras, one older than the grader's."""
    from autograder.bundle import REQUIRES

    text = (ROOT / "tools" / "compat-requirements.txt").read_text()
    compat = pinned(
        line.replace("tensorflow-cpu", "tensorflow")
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    )
    for spec in REQUIRES:
        requirement = Requirement(spec)
        assert requirement.specifier.contains(compat[requirement.name]), spec
    pins = pinned(pyproject()["project"]["dependencies"])
    for name in ("tensorflow", "keras"):
        assert Version(compat[name]) < Version(pins[name]), name


def test_readme_commands_and_ci():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def tracked_files():
    out = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return out.stdout.splitlines()


def test_no_runtime_junk_or_spaces_in_git():
    for name in tracked_files():
        assert " " not in name, name
        assert not name.endswith((".db", ".pyc")), name
        assert ".ipynb_checkpoints" not in name and "__pycache__" not in name, name
        assert not name.startswith(("build/", ".venv/")), name


def test_committed_notebooks_have_no_outputs():
    for name in tracked_files():
        if name.endswith(".ipynb"):
            notebook = nbformat.read(ROOT / name, as_version=4)
            for cell in notebook.cells:
                if cell.cell_type == "code":
                    assert cell.outputs == [] and cell.execution_count is None, name
