"""The grading unit's safety parts, without nbgrader: safe file operations,
the run folder, records taken from a cell's outputs, the case draw, and the
kernel's environment.

The end-to-end attacks on the whole pipeline are in tests/test_hardening.py.
"""

import base64
import os
import stat

import nbformat
import numpy as np
import pytest

from autograder import jail, runs, safefs, trusted
from autograder.checks import sources, store

# ------------------------------------------------------------------ safefs


def test_a_link_is_never_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the gradebook")
    (tmp_path / "link").symlink_to(secret)
    handle = safefs.open_dir(tmp_path)
    try:
        assert safefs.read_regular("secret.txt", 100, dir_fd=handle) == b"the gradebook"
        with pytest.raises(safefs.UnsafePath, match="symbolic link"):
            safefs.read_regular("link", 100, dir_fd=handle)
    finally:
        os.close(handle)


def test_a_fifo_or_a_large_file_is_not_read(tmp_path):
    os.mkfifo(tmp_path / "fifo")  # opening it for reading would block
    (tmp_path / "big").write_bytes(b"x" * 1000)
    with pytest.raises(safefs.UnsafePath, match="not a regular file"):
        safefs.read_regular(tmp_path / "fifo", 100)
    with pytest.raises(safefs.UnsafePath, match="over the limit"):
        safefs.read_regular(tmp_path / "big", 999)


def test_read_beneath_refuses_a_link_at_any_level(tmp_path):
    root = tmp_path / "submissions"
    (root / "ada").mkdir(parents=True)
    (root / "ada" / "nb.ipynb").write_text("{}")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "nb.ipynb").write_text("another student's")
    (root / "eve").symlink_to(elsewhere, target_is_directory=True)
    assert safefs.read_beneath(root, "ada/nb.ipynb", 100) == b"{}"
    with pytest.raises(safefs.UnsafePath):
        safefs.read_beneath(root, "eve/nb.ipynb", 100)
    with pytest.raises(safefs.UnsafePath):
        safefs.read_beneath(root, "../elsewhere/nb.ipynb", 100)


def test_remove_tree_removes_links_not_what_they_point_to(tmp_path):
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "gradebook.db").write_text("grades")
    tree = tmp_path / "tree"
    (tree / "a" / "b" / "c").mkdir(parents=True)
    (tree / "a" / "file").write_text("x")
    (tree / "to-keep").symlink_to(keep, target_is_directory=True)
    (tree / "a" / "to-db").symlink_to(keep / "gradebook.db")
    (tree / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(tree / "a" / "fifo")
    parent = safefs.open_dir(tmp_path)
    try:
        safefs.remove_tree("tree", dir_fd=parent)
        safefs.remove_tree("missing", dir_fd=parent)  # not an error
    finally:
        os.close(parent)
    assert not tree.exists()
    assert (keep / "gradebook.db").read_text() == "grades"


def test_remove_tree_of_a_link_removes_the_link_only(tmp_path):
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "x").write_text("x")
    (tmp_path / "run").symlink_to(keep, target_is_directory=True)
    parent = safefs.open_dir(tmp_path)
    try:
        safefs.remove_tree("run", dir_fd=parent)
    finally:
        os.close(parent)
    assert not (tmp_path / "run").is_symlink()
    assert (keep / "x").exists()


# ------------------------------------------------------------------ run folder


def test_run_folder_is_private_and_removed_without_following_links(tmp_path):
    run = runs.RunFolder.create(base=tmp_path)
    assert {p.name for p in run.path.iterdir()} == {"cases", "ipc", "work"}
    mode = stat.S_IMODE(run.path.stat().st_mode)
    assert not mode & 0o007  # nothing for other users
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    (run.work / "link").symlink_to(outside, target_is_directory=True)
    (run.ipc / "sock-dir").mkdir()
    run.write_journal({"tests": {"t": {"passed": True}}, "notes": ["n"]})
    assert run.read_journal()["tests"] == {"t": {"passed": True}}
    run.remove()
    assert not run.path.exists()
    assert (outside / "keep").read_text() == "keep"


def test_a_missing_or_broken_journal_reads_as_nothing_decided(tmp_path):
    run = runs.RunFolder.create(base=tmp_path)
    assert run.read_journal() == {"tests": {}, "notes": [], "seconds": []}
    run.journal.write_text("{broken")
    assert run.read_journal() == {"tests": {}, "notes": [], "seconds": []}
    run.remove()


# ------------------------------------------------------------------ records


def _record_output(check="check_x", which="visible", nonce="n1", sublayers=()):
    data = store.record_bytes(
        check,
        which,
        [{"out": np.ones((2, 2))}],
        None,
        {"sublayers": list(sublayers), "tampered": [], "nonce": nonce},
    )
    payload = {"check": check, "which": which, "npz": base64.b64encode(data).decode()}
    return nbformat.v4.new_output("display_data", data={sources.RECORD_MIME: payload})


def _take(outputs, nonce="n1"):
    records, kept = trusted._records(outputs)
    problems = []
    record = trusted.take_record("check_x", "visible", problems, records, nonce)
    return record, problems, kept


def test_the_one_record_is_taken_out_of_the_outputs():
    printed = nbformat.v4.new_output("stream", name="stdout", text="hello\n")
    record, problems, kept = _take([printed, _record_output()])
    assert problems == []
    observations, _ = record
    assert observations[0]["out"].shape == (2, 2)
    assert kept == [printed]


def test_a_second_record_is_an_integrity_failure():
    record, problems, _ = _take([_record_output(), _record_output()])
    assert record is None
    assert "2 records arrived" in problems[0]


def test_a_record_made_for_other_cases_is_refused():
    record, problems, _ = _take([_record_output(nonce="stale")])
    assert record is None
    assert "not made on this test's cases" in problems[0]


def test_a_missing_or_malformed_record_is_refused():
    assert "recorded no results" in _take([])[1][0]
    bad = _record_output()
    bad.data[sources.RECORD_MIME]["npz"] = "not base64!"
    assert _take([bad])[0] is None
    other = _record_output(check="check_y")
    assert "recorded no results" in _take([other])[1][0]


def test_hidden_tests_show_no_printed_text_and_short_messages():
    printed = nbformat.v4.new_output("stream", name="stderr", text="1.25 3.5\n" * 40)
    kept = trusted._kept_streams([printed], hidden=True)
    assert len(kept) == 1 and "1.25" not in kept[0].text and "not shown" in kept[0].text
    shown = trusted._kept_streams([printed], hidden=False)
    assert shown[0].name == "stdout"  # stderr would zero a passing test
    error = trusted._error("CheckFailed", "x = [" + "0.123, " * 100 + "]\nmore")
    short = trusted._shortened(error)
    assert len(short.evalue) < trusted.HIDDEN_MESSAGE_CHARS + 40
    assert "shortened: hidden test" in short.evalue and "more" not in short.evalue


# ------------------------------------------------------------------ draws


def test_the_case_draw_is_kept_per_grading_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(trusted.DRAW_ENV, raising=False)
    base = tmp_path / "trusted"
    first = trusted.case_draw(base)
    assert first != 0
    assert trusted.case_draw(base) == first  # a regrade sees the same cases
    monkeypatch.setenv(trusted.DRAW_ENV, "5")
    assert trusted.case_draw(base) == 5


# ------------------------------------------------------------------ environment


def test_the_kernel_keeps_no_secret_of_the_grader():
    environ = {
        "PATH": "/usr/bin",
        "LANG": "C.UTF-8",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "NBGRADER_EXECUTION": "autograde",
        "KIT_GRADING_CASES": "/tmp/kit-run-x/cases",
        "KIT_GRADEBOOK_URL": "postgresql://grader:hunter2@db/course",
        "KIT_GRADING_DIR": "/srv/grading",
        "KIT_COURSE_ROOT": "/srv/course",
        "KIT_RUN_DIR": "/tmp/kit-run-x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "PGPASSWORD": "x",
        "GITHUB_TOKEN": "x",
    }
    kept = jail._kernel_environment(environ)
    assert set(kept) == {
        "PATH",
        "LANG",
        "TF_CPP_MIN_LOG_LEVEL",
        "NBGRADER_EXECUTION",
        "KIT_GRADING_CASES",
    }


# ------------------------------------------------------------------ watch


def _python(code):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def test_the_grader_process_never_loads_keras_for_the_checks():
    """The grader imports the checks to read records: TensorFlow would cost
    it seconds per submission, and the wrappers are the kernel's business."""
    assert (
        _python(
            "import sys, autograder.trusted\n"
            "from autograder.checks import watch\n"
            "print('keras' in sys.modules, bool(watch._INSTALLED))"
        )
        == "False False"
    )


def test_a_notebook_importing_keras_first_is_watched_from_the_start():
    assert (
        _python(
            "import keras\n"
            "import autograder.checks\n"
            "from autograder.checks import watch\n"
            "print(bool(watch._INSTALLED), keras.layers.Layer.__call__.__module__)"
        )
        == "True keras.src.layers.layer"
    )
