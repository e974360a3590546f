"""Assignment 1's submissions that the session's graded class holds
(`graded_class` in conftest.py): the samples, submissions that loop, kill
their kernel, write to stderr, delete or weaken a test cell, hoard memory or
reach for the network, and the solution graded again and again."""

import socket
import threading
from pathlib import Path

import nbformat

from autograder.pipeline import Sample

ASSIGNMENT = "01_attention_seq2seq"
#: The per-cell limit the class is graded with (the looping submission).
CELL_TIMEOUT = "12"
AGAIN = 3


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


def class_submissions(course, folder):
    """Write the class's notebooks into `folder`: `{student: path}`."""
    paths = {}
    for sample in course.samples(ASSIGNMENT):
        paths[sample.name] = folder / f"{sample.name}.ipynb"
        nbformat.write(course.make_submission(ASSIGNMENT, sample), paths[sample.name])
    for name, (notebook, _) in special_submissions(course).items():
        paths[name] = folder / f"{name}.ipynb"
        nbformat.write(notebook, paths[name])
    for i in range(AGAIN):
        paths[f"solution-again-{i}"] = paths["solution"]
    return paths


def class_expectations(course):
    """student -> the points per exercise each should get."""
    expected = {
        sample.name: course.expected_scores(ASSIGNMENT, sample)
        for sample in course.samples(ASSIGNMENT)
    }
    for name, (_, scores) in special_submissions(course).items():
        expected[name] = scores
    for i in range(AGAIN):
        expected[f"solution-again-{i}"] = expected["solution"]
    return expected
