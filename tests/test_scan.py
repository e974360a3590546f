"""Reading a submission's code: what counts as tampering and as borrowing.

The rules must flag each way of reaching around a check and must not flag
the answers a student writes: the solution, the sample submissions and the
lesson's own cells are all clean.
"""

import pytest

from autograder import judge, scan, trusted
from autograder.notebooks import build_source
from autograder.pipeline import Course, solution_answers

PROTECTED = {"np", "keras", "ops", "plt", "lesson", "dates", "check_luong_attention"}


def findings(source):
    return [str(f) for f in scan.tampering(scan.parse(source), PROTECTED)]


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("np.allclose = lambda *a, **k: True", "assigns `np.allclose`"),
        ("np.testing.assert_allclose = None", "assigns `np.testing.assert_allclose`"),
        ("ops.where, x = 1, 2", "assigns `ops.where`"),
        ("del keras.ops.softmax", "assigns `keras.ops.softmax`"),
        ("import numpy as n2\nn2.allclose = min", "assigns `n2.allclose`"),
        ("check_luong_attention = print", "rebinds `check_luong_attention`"),
        ("def check_luong_attention(*a):\n    pass", "redefines"),
        ("import builtins", "imports `builtins`"),
        ("import autograder.reference.seq2seq", "imports `autograder"),
        ("from autograder.checks import core", "imports `autograder.checks`"),
        ("import ctypes", "imports `ctypes`"),
        ("import os", "imports `os`"),
        ("exec('x = 1')", "calls `exec()`"),
        ("eval('1')", "calls `eval()`"),
        ("open('/etc/passwd')", "calls `open()`"),
        ("setattr(np, 'allclose', min)", "calls `setattr()`"),
        ("__import__('os')", "calls `__import__()`"),
        ("get_ipython().showtraceback = None", "uses `.showtraceback`"),
        ("x = (lambda: 0).__globals__", "uses `.__globals__`"),
        ("import sys\nsys.modules['numpy'] = None", "uses `.modules`"),
        ("class A:\n    def __eq__(self, other):\n        return True", "`__eq__`"),
        ("class A:\n    def __array__(self):\n        return 0", "`__array__`"),
        ("!ls /", "IPython `system`"),
        ("%run secret.py", "IPython `run_line_magic` (run)"),
        ("x = 1\n__builtins__['len'] = None", "uses `__builtins__`"),
    ],
)
def test_tampering_is_found(source, reason):
    found = findings(source)
    assert any(reason in f for f in found), found


@pytest.mark.parametrize(
    "source",
    [
        "import numpy as np\nx = np.allclose([1], [1])",
        "plt.rcParams['font.size'] = 12",
        "%timeit sum(range(10))",
        "%matplotlib inline",
        "class L(keras.layers.Layer):\n    def build(self, s):\n        self.w = 1",
        "from keras import ops\nimport math\nimport tensorflow as tf",
        "values = ops.where(mask, x, 0.0)",
    ],
)
def test_ordinary_code_is_not_tampering(source):
    assert findings(source) == []


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("a = keras.layers.MultiHeadAttention(2, 4)", "MultiHeadAttention"),
        ("a = keras.layers.Attention()", "keras.layers.Attention"),
        ("from keras.layers import AdditiveAttention", "imports `AdditiveAttention`"),
        ("y = ops.dot_product_attention(q, k, v)", "dot_product_attention"),
        ("import keras_hub", "imports `keras_hub`"),
        ("from keras_nlp.layers import X", "imports from `keras_nlp.layers`"),
        ("c = getattr(keras.layers, 'Attention')", "names `Attention`"),
    ],
)
def test_borrowing_is_found(source, reason):
    found = [str(f) for f in scan.borrowing(scan.parse(source))]
    assert any(reason in f for f in found), found


def test_own_multi_head_attention_class_is_not_borrowing():
    source = "class MultiHeadAttention(keras.layers.Layer):\n    pass"
    assert scan.borrowing(scan.parse(source)) == []


def test_check_calls_are_read_from_test_cells():
    source = '"""doc"""\ncheck_luong_attention(LuongAttention, cases="hidden")'
    assert scan.check_calls(source) == [
        ("check_luong_attention", "hidden", "LuongAttention")
    ]


@pytest.fixture(scope="module")
def course():
    return Course()


def test_the_solutions_and_samples_are_clean(course):
    for assignment in course.assignments():
        source = course.sources(assignment)[0]
        facts = trusted.assignment_facts(build_source(source))
        protected = set(facts["protected"])
        answers = solution_answers(build_source(source))
        policies = {  # what borrowing means in this assignment's checks
            scan.policy_of(judge.spec(check_name).borrowing)
            for calls in facts["tests"].values()
            for check_name, _, _ in calls
        } - {None}
        for sample in course.samples(assignment):
            if sample.verdicts:  # meant to be caught (a borrowed answer)
                continue
            notebook = course.make_submission(assignment, sample)
            for cell in notebook.cells:
                meta = cell.metadata.get("nbgrader", {})
                if cell.cell_type != "code" or not meta.get("solution"):
                    continue
                tree = scan.parse(cell.source)
                assert tree is not None
                found = scan.tampering(tree, protected) + [
                    f for policy in policies for f in scan.borrowing(tree, policy)
                ]
                assert found == [], (sample.name, meta["grade_id"], found)
        assert answers


def test_lesson_cells_define_the_protected_names(course):
    source = course.sources("01_attention_seq2seq")[0]
    facts = trusted.assignment_facts(build_source(source))
    assert {"np", "keras", "ops", "check_luong_attention", "lesson"} <= set(
        facts["protected"]
    )
    assert len(facts["tests"]) == 14
