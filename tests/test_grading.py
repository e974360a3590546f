"""Grading through the real pipeline: nbgrader, one process per submission.

Covers the sample submissions' expected scores, a correct submission graded
again and again, the untouched student version failing for the right
reason, and submissions that loop, kill their kernel, write to stderr, or
delete or weaken a test cell.
"""

import re
import socket
import threading
from pathlib import Path

import nbformat
import pytest

from autograder import sandbox
from autograder.cli import grade_folder
from autograder.pipeline import Course, Sample

pytestmark = pytest.mark.slow

ASSIGNMENT = "01_attention_seq2seq"
CELL_TIMEOUT = "12"


def _solution(course, patches=()):
    sample = Sample("x", "", "solution", list(patches), {})
    return course.make_submission(ASSIGNMENT, sample)


def _cell(notebook, grade_id):
    return next(
        c
        for c in notebook.cells
        if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id
    )


def special_submissions(course):
    """name -> (notebook, expected scores or None when the note matters)."""
    full = course.exercises(ASSIGNMENT)
    out = {}

    loop = _solution(course)
    _cell(loop, "masked_softmax").source = (
        "while True:\n    pass\n" + _cell(loop, "masked_softmax").source
    )
    out["loops"] = (
        loop,
        {
            **full,
            "masked_softmax": 0,
            "luong_attention": 0,
            "bahdanau_attention": 0,
            "bahdanau_decoder_step": 0,
        },
    )

    killer = _solution(course)
    _cell(killer, "luong_attention").source = "import os\nos._exit(1)\n"
    # The tests before it keep their points (the kernel is restarted); its
    # `import os` is tampering, so the tests after it score 0.
    out["kills-kernel"] = (
        killer,
        {
            **full,
            "luong_attention": 0,
            "bahdanau_attention": 0,
            "bahdanau_decoder_step": 0,
        },
    )

    deleted = _solution(course)
    deleted.cells = [
        c
        for c in deleted.cells
        if c.metadata.get("nbgrader", {}).get("grade_id") != "test_dot_score"
    ]
    out["deleted-test-cell"] = (deleted, dict(full))

    weakened = _solution(
        course,
        [
            {
                "cell": "luong_attention",
                "old": "weights = masked_softmax(scores, values_mask)",
                "new": "weights = masked_softmax(scores)",
            }
        ],
    )
    _cell(weakened, "test_luong_attention").source = '"""Passes."""\nNone'
    out["weakened-test-cell"] = (weakened, {**full, "luong_attention": 0})

    noisy = _solution(course)
    _cell(noisy, "score_functions").source = (
        "import tensorflow as tf\n\n"  # C++ writes straight to fd 2, as its logs do
        "tf.print('I0000 00:00:1795302995.702205 3387 cudart_stub.cc:31] "
        "Could not find cuda drivers on your machine, GPU will not be used.')\n"
        + _cell(noisy, "score_functions").source
    )
    out["tensorflow-log-lines"] = (noisy, dict(full))

    bomb = _solution(course)
    _cell(bomb, "score_functions").source = (
        "import numpy as np\nhoard = np.ones(64 * 2**30 // 8)  # 64 GiB\n"
        + _cell(bomb, "score_functions").source
    )
    out["memory-bomb"] = (
        bomb,
        {**full, "dot_score": 0, "general_score": 0, "concat_score": 0},
    )

    escapes = _solution(course)
    _cell(escapes, "masked_softmax").source = (
        "import os, socket, subprocess\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {LISTENER.port}), 3).send(b'hi')\n"
        "except OSError:\n"
        "    pass\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        f"    os.execvp('sleep', ['sleep', '{LEFTOVER_SECONDS}'])\n"
        + _cell(escapes, "masked_softmax").source
    )
    # Its imports and calls are also tampering: what follows it scores 0.
    out["network-and-daemon"] = (
        escapes,
        {
            **full,
            "masked_softmax": 0,
            "luong_attention": 0,
            "bahdanau_attention": 0,
            "bahdanau_decoder_step": 0,
        },
    )
    return out


class Listener:
    """A TCP server on loopback that counts the connections it receives."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            connection.close()


LISTENER = Listener()
LEFTOVER_SECONDS = 987
ISOLATED = "namespaces" in {name for name, _ in sandbox.layers()}


def leftover_processes():
    found = []
    for status in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = status.read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[:2] == [b"sleep", str(LEFTOVER_SECONDS).encode()]:
            found.append(status.parent.name)
    return found


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    scratch = tmp_path_factory.mktemp("grading")
    course = Course(grading_dir=scratch / "grading")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KIT_CELL_TIMEOUT", CELL_TIMEOUT)
        paths, expected = {}, {}
        for sample in course.samples(ASSIGNMENT):
            paths[sample.name] = scratch / f"{sample.name}.ipynb"
            nbformat.write(
                course.make_submission(ASSIGNMENT, sample), paths[sample.name]
            )
            expected[sample.name] = course.expected_scores(ASSIGNMENT, sample)
        for name, (notebook, scores) in special_submissions(course).items():
            paths[name] = scratch / f"{name}.ipynb"
            nbformat.write(notebook, paths[name])
            expected[name] = scores
        for i in range(3):
            paths[f"solution-again-{i}"] = paths["solution"]
            expected[f"solution-again-{i}"] = expected["solution"]
        results = grade_folder(
            course, ASSIGNMENT, paths, feedback=True, log=lambda _: None
        )
    return course, {r.student: r for r in results}, expected


def test_every_submission_gets_its_expected_scores(graded):
    _, results, expected = graded
    wrong = {
        name: (result.scores, expected[name], result.note)
        for name, result in results.items()
        if result.scores != expected[name]
    }
    assert not wrong


def test_correct_submission_scores_full_points_every_time(graded):
    _, results, _ = graded
    full = sum(results["solution"].max_scores.values())
    for name in [
        "solution",
        "alternative",
        "solution-again-0",
        "solution-again-1",
        "solution-again-2",
    ]:
        assert results[name].total == full, (name, results[name].scores)


def test_looping_cell_is_interrupted_with_a_note(graded):
    _, results, _ = graded
    note = results["loops"].note
    assert "a cell ran past the 12 s per-cell limit and was interrupted" in note, note


def test_kernel_death_gets_a_note_and_the_batch_goes_on(graded):
    _, results, _ = graded
    assert "kernel died" in results["kills-kernel"].note
    # graded after it, in the same batch:
    assert results["deleted-test-cell"].total == sum(
        results["solution"].max_scores.values()
    )


def test_blank_student_version_fails_only_with_not_implemented_error(graded):
    course, results, _ = graded
    assert results["blank"].total == 0
    autograded = nbformat.read(
        course.grading_dir
        / "autograded"
        / "blank"
        / ASSIGNMENT
        / "attention_seq2seq.ipynb",
        as_version=4,
    )
    for cell in autograded.cells:
        if cell.metadata.get("nbgrader", {}).get("grade"):
            errors = [o for o in cell.outputs if o.output_type == "error"]
            assert [e.ename for e in errors] == ["NotImplementedError"], cell.metadata[
                "nbgrader"
            ]


def test_feedback_shows_no_hidden_tests_paths_or_tracebacks(graded):
    course, _, _ = graded
    for name in ["luong-no-mask", "blank", "solution"]:
        html = (
            course.grading_dir
            / "feedback"
            / name
            / ASSIGNMENT
            / "attention_seq2seq.html"
        ).read_text()
        text = re.sub(r"<[^>]+>", "", html)
        assert "HIDDEN TESTS" not in text
        assert 'cases="hidden"' not in text and "cases=&quot;hidden&quot;" not in text
        assert "site-packages" not in text and str(course.root) not in text
        assert not re.search(r"File \S+\.py|Cell In\[", text)  # no traceback frames
    html = (
        course.grading_dir
        / "feedback"
        / "luong-no-mask"
        / ASSIGNMENT
        / "attention_seq2seq.html"
    ).read_text()
    assert "pass `values_mask` to your masked softmax" in html


@pytest.mark.skipif(not ISOLATED, reason="needs Linux namespaces (root and unshare)")
def test_student_code_has_no_network_and_leaves_no_process(graded):
    _, results, _ = graded
    assert results["network-and-daemon"].scores["concat_score"] == 2
    assert LISTENER.connections == 0
    assert leftover_processes() == []


def test_memory_bomb_fails_its_own_cell_only(graded):
    _, results, _ = graded
    assert results["memory-bomb"].scores["luong_attention"] == 3
    assert results["memory-bomb"].scores["dot_score"] == 0
