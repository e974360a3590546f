"""A student's work is never overwritten, and the sync check reads content.

Building the student versions (`autograder build`, `make demo`) writes a
notebook only where it is missing or still as the kit generated it; a
notebook someone worked in and any file of their own stay as they are.
`make lab` does not build at all: it opens the student's own copy
(`autograder workspace`), made where missing. nbgrader's own JSON layout of
the same notebooks is in sync.
"""

import json
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

from autograder.cli import main
from autograder.pipeline import MANIFEST, Course, content_digest, install_release

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = Path("01_attention_seq2seq/attention_seq2seq.ipynb")


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """The student versions as nbgrader's generate_assignment writes them
    (its own JSON layout), in a scratch release folder."""
    release = tmp_path_factory.mktemp("nbgrader-release")
    Course()._generate_assignments(release)
    return release


def solve(path):
    """A student's work: an answer written, an output, a cell of their own."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = "# my answer\n" + cell.source
            cell.outputs = [nbformat.v4.new_output("stream", text="ran\n")]
            break
    notebook.cells.append(nbformat.v4.new_markdown_cell("My notes."))
    nbformat.write(notebook, path)


def test_nbgrader_layout_is_in_sync_with_the_committed_notebooks(fresh):
    course = Course()
    for path in fresh.rglob("*.ipynb"):
        name = path.relative_to(fresh)
        committed = course.release_dir / name
        assert path.read_bytes() != committed.read_bytes()  # another layout ...
        assert content_digest(path) == content_digest(committed)  # ... same content


def test_a_build_leaves_student_work_and_own_files_alone(fresh, tmp_path):
    release = tmp_path / "assignments"
    assert install_release(fresh, release) == []
    manifest = json.loads((release / MANIFEST).read_text())
    assert set(manifest) == {str(p.relative_to(fresh)) for p in fresh.rglob("*.ipynb")}
    solve(release / NOTEBOOK)
    own = release / NOTEBOOK.parent / "my-notes.txt"
    own.write_text("mine")
    worked = (release / NOTEBOOK).read_bytes()
    kept = install_release(fresh, release)
    assert kept == [release / NOTEBOOK]
    assert (release / NOTEBOOK).read_bytes() == worked
    assert own.read_text() == "mine"


def test_a_build_updates_what_it_generated(fresh, tmp_path):
    """A notebook still as the kit generated it (by content, whatever its
    layout) is replaced by the new version; a missing one is written."""
    release = tmp_path / "assignments"
    install_release(fresh, release)
    # an older generated version: a lesson cell the instructor since changed
    old = nbformat.read(release / NOTEBOOK, as_version=4)
    old.cells[0].source += "\nAn older sentence."
    nbformat.write(old, release / NOTEBOOK)
    manifest = json.loads((release / MANIFEST).read_text())
    manifest[str(NOTEBOOK)] = content_digest(release / NOTEBOOK)
    (release / MANIFEST).write_text(json.dumps(manifest))
    other = release / "02_self_attention" / "self_attention.ipynb"
    other.unlink()
    assert install_release(fresh, release) == []
    assert content_digest(release / NOTEBOOK) == content_digest(fresh / NOTEBOOK)
    assert other.exists()


def test_workspace_copies_what_is_missing_and_never_replaces(tmp_path, capsys):
    work = tmp_path / "work"
    assert main(["workspace", str(work)]) == 0
    copied = sorted(p.relative_to(work) for p in work.rglob("*.ipynb"))
    assert NOTEBOOK in copied and len(copied) == len(Course().assignments())
    solve(work / NOTEBOOK)
    (work / NOTEBOOK.parent / "data.csv").write_text("1,2\n")
    worked = (work / NOTEBOOK).read_bytes()
    shutil.rmtree(work / "02_self_attention")
    assert main(["workspace", str(work)]) == 0
    assert (work / NOTEBOOK).read_bytes() == worked
    assert (work / NOTEBOOK.parent / "data.csv").exists()
    assert (work / "02_self_attention" / "self_attention.ipynb").exists()
    assert "left as they are" in capsys.readouterr().out


def test_make_lab_opens_the_students_copy_without_building():
    done = subprocess.run(
        ["make", "-n", "lab", "STAMP=Makefile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "autograder workspace work" in done.stdout
    assert "jupyter lab work/" in done.stdout
    assert "autograder build" not in done.stdout
    assert "generate" not in done.stdout
