"""Reading a submission's code: what counts as tampering and as borrowing.

The rules must flag each way of reaching around a check and must not flag
the answers a student writes: the solution, the sample submissions and the
lesson's own cells are all clean. Each rule judges what a name refers to,
not how it is spelled, so each rule below is tested both ways: (a) correct
code a naive rule (one that looks only at the spelling) would refuse, and
(b) the attack the rule exists for, with the reason the feedback shows.
"""

import tomllib
from pathlib import Path

import pytest

from autograder import judge, scan, trusted
from autograder.notebooks import build_source
from autograder.pipeline import Course, solution_answers

ROOT = Path(__file__).resolve().parents[1]
PROTECTED = {
    "np",
    "keras",
    "ops",
    "plt",
    "lesson",
    "dates",
    "layers",
    "plot_attention",
    "check_luong_attention",
}


def findings(source):
    tree = scan.parse(source)
    assert tree is not None, source
    return [str(f) for f in scan.tampering(tree, PROTECTED)]


def borrowed(source, policy="attention", **kwargs):
    return [str(f) for f in scan.borrowing(scan.parse(source), policy, **kwargs)]


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("np.allclose = lambda *a, **k: True", "assigns `np.allclose`"),
        ("np.testing.assert_allclose = None", "assigns `np.testing.assert_allclose`"),
        ("ops.where, x = 1, 2", "assigns `ops.where`"),
        # the module reached through a name or a container of the cell's own
        ("t = np.testing\nt.assert_allclose = None", "assigns `t.assert_allclose`"),
        ("for m in [np, ops]:\n    m.allclose = None", "assigns `m.allclose`"),
        ("d = {'m': np}\nd['m'].allclose = f", "assigns `d['m'].allclose`"),
        ("type(keras.layers.Dense(1)).call = f", "assigns `type(keras.layers"),
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
        ("class A:\n    def __array__(self):\n        return 0", "`__array__`"),
        ("!rm -rf build", "IPython `system`"),
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


# -- Rule: borrowing is judged by what the attribute's root refers to ---------

LIBRARY_ROOTS_CLEAN = [
    # the student's own method, named like Keras's function
    "class A(keras.layers.Layer):\n"
    "    def dot_product_attention(self, q, k, v):\n"
    "        return q\n"
    "    def call(self, q):\n"
    "        return self.dot_product_attention(q, q, q)",
    # the student's own sublayer attribute and an object of their own
    "class A(keras.layers.Layer):\n"
    "    def call(self, q):\n"
    "        return self.attention(q), self.MultiHeadAttention",
    "heads = Heads()\nx = heads.MultiHeadAttention",
    # Assignment 2's exercise is a class of exactly that name
    "class MultiHeadAttention(keras.layers.Layer):\n    pass\n\n"
    "layer = MultiHeadAttention(2, 4)",
    # a parameter named like a lesson module is the caller's object
    "def f(ops):\n    return ops.dot_product_attention(1)",
]


@pytest.mark.parametrize("source", LIBRARY_ROOTS_CLEAN)
def test_own_objects_named_like_keras_attention_are_not_borrowing(source):
    assert borrowed(source) == []


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
        # bare names bound by an import from a library
        (
            "from keras.layers import MultiHeadAttention as MHA\nx = MHA(2, 4)",
            "line 2: uses `MHA`",
        ),
        ("from keras.layers import *\nx = MultiHeadAttention(2, 4)", "uses `Multi"),
        # aliases of a library module: module-level, local, on self, default
        ("L = keras.layers\nx = L.Attention()", "uses `L.Attention`"),
        ("def f(q):\n    kl = keras.layers\n    return kl.Attention()", "kl.Attention"),
        (
            "class A(keras.layers.Layer):\n"
            "    def build(self, s):\n"
            "        self.L = keras.layers\n"
            "    def call(self, x):\n"
            "        return self.L.MultiHeadAttention(2, 4)(x, x)",
            "uses `self.L.MultiHeadAttention`",
        ),
        ("def f(q, o=ops):\n    return o.dot_product_attention(q, q, q)", "o.dot_"),
        (
            "import tensorflow as tf\ny = tf.keras.layers.MultiHeadAttention(2, 4)",
            "uses `tf.keras.layers.MultiHeadAttention`",
        ),
        (
            "from keras import layers as kl\ny = kl.GroupedQueryAttention(2, 1, 4)",
            "uses `kl.GroupedQueryAttention`",
        ),
        ("%%time\ny = ops.dot_product_attention(q, k, v)", "line 2: uses `ops.dot_"),
    ],
)
def test_borrowing_is_found(source, reason):
    found = borrowed(source)
    assert any(reason in f for f in found), found


def test_own_multi_head_attention_class_is_not_borrowing():
    source = "class MultiHeadAttention(keras.layers.Layer):\n    pass"
    assert scan.borrowing(scan.parse(source)) == []


def test_the_blocks_policy_allows_keras_attention_but_not_keras_hub_blocks():
    assert borrowed("a = keras.layers.MultiHeadAttention(2, 4)", "blocks") == []
    found = borrowed("import keras_hub\nb = keras_hub.layers.TransformerEncoder(8, 2)")
    assert any("keras_hub.layers.TransformerEncoder" in f for f in found), found


def test_library_names_follow_the_cells_in_order():
    cells = [
        "import keras\nfrom keras import ops\nimport numpy as np",  # lesson
        "from keras.layers import MultiHeadAttention\nL = keras.layers",
        "class MultiHeadAttention(keras.layers.Layer):\n    pass",  # own, later
    ]
    trees = [scan.parse(c) for c in cells]
    assert scan.library_names(trees[:2]) == {"keras", "ops", "MultiHeadAttention", "L"}
    assert scan.library_names(trees) == {"keras", "ops", "L"}


def test_one_statement_is_judged_with_the_notebooks_library_names():
    """`trusted` scans one statement at a time: the imports are elsewhere."""
    lesson = scan.parse("import keras as K\nfrom keras import layers as kl")
    statement = scan.parse(
        "class Block(K.layers.Layer):\n"
        "    def call(self, x):\n"
        "        return kl.MultiHeadAttention(2, 4)(x, x)"
    ).body[0]
    assert scan.borrowing(statement) == []  # kl: not one of the default names
    found = scan.borrowing(statement, libraries=scan.library_names([lesson]))
    assert [str(f) for f in found] == ["line 3: uses `kl.MultiHeadAttention`"]


# -- Rule: a string is borrowing only where it names a lookup ------------------


@pytest.mark.parametrize(
    "source",
    [
        "class Attention(keras.layers.Layer):\n"
        "    def __init__(self, **kwargs):\n"
        "        super().__init__(name='Attention', **kwargs)",
        "raise ValueError('MultiHeadAttention expects num_heads > 0')",
        "CONFIG = {'class_name': 'MultiHeadAttention'}",
        "layer = getattr(self, 'MultiHeadAttention')",
        "names = ['Attention', 'dot_product_attention']",
    ],
)
def test_strings_that_look_up_nothing_are_not_borrowing(source):
    assert borrowed(source) == []


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("c = getattr(keras.layers, 'Attention')", "names `Attention` in a string"),
        ("c = getattr(ops, 'dot_product_attention')", "`dot_product_attention`"),
        (
            "import operator\nc = operator.attrgetter('layers.MultiHeadAttention')",
            "names `layers.MultiHeadAttention`",
        ),
        ("from operator import methodcaller as m\nf = m('Attention')", "`Attention`"),
        ("m = importlib.import_module('keras_hub')", "names `keras_hub`"),
        (
            "a = keras.layers.deserialize({'class_name': 'MultiHeadAttention'})",
            "names `MultiHeadAttention`",
        ),
        (
            "c = keras.saving.get_registered_object('keras.layers.Attention')",
            "names `keras.layers.Attention`",
        ),
        ("c = keras.layers.__dict__['AdditiveAttention']", "`AdditiveAttention`"),
        ("f = vars(ops)['dot_product_attention']", "`dot_product_attention`"),
        ("f = ops.__dict__.get('dot_product_attention')", "`dot_product_attention`"),
    ],
)
def test_lookups_by_name_are_borrowing(source, reason):
    found = borrowed(source)
    assert any(reason in f for f in found), found


# -- Rule: reading harmless dunders; assigning any dunder ----------------------


@pytest.mark.parametrize(
    "source",
    [
        "class L(keras.layers.Layer):\n"
        "    def __init__(self, n, **kwargs):\n"
        "        super().__init__(**kwargs)\n"
        "        if n < 1:\n"
        "            raise ValueError(f'{self.__class__.__name__}: n={n}')",
        "name = type(layer).__qualname__, layer.__module__, layer.__doc__",
        "chain = type(layer).__mro__",
        "class L:\n    def clone(self):\n        return self.__class__(**self.config)",
    ],
)
def test_reading_class_names_and_docs_is_not_tampering(source):
    assert findings(source) == []


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("x.__class__ = int", "assigns `x.__class__`"),
        ("obj.__eq__ = lambda *a: True", "assigns `obj.__eq__`"),
        ("self.__array__ = f", "assigns `self.__array__`"),
        ("del Layer.__call__", "assigns `Layer.__call__`"),
        ("a = ().__class__.__base__.__subclasses__()", "uses `.__subclasses__`"),
        ("b = (lambda: 0).__code__", "uses `.__code__`"),
        ("c = f.__closure__", "uses `.__closure__`"),
        ("d = lesson.__builtins__", "uses `.__builtins__`"),
        ("e = MyLayer.__bases__", "uses `.__bases__`"),
        ("f = len.__self__", "uses `.__self__`"),
        ("g = check_luong_attention.__kwdefaults__", "uses `.__kwdefaults__`"),
        ("frame = error.__traceback__.tb_frame.f_back", "uses `.f_back`"),
        ("g = frame.f_globals", "uses `.f_globals`"),
        ("g = getattr(f, '__globals__')", "uses `.__globals__`"),
        ("import operator\ng = operator.attrgetter('__globals__')", "`.__globals__`"),
        ("g = object.__getattribute__(f, '__globals__')", "uses `.__globals__`"),
    ],
)
def test_dunder_tampering_is_found(source, reason):
    found = findings(source)
    assert any(reason in f for f in found), found


# -- Rule: only module-level bindings rebind the lesson's names ----------------


@pytest.mark.parametrize(
    "source",
    [
        "class L(keras.layers.Layer):\n"
        "    def call(self, x):\n"
        "        layers = [x, x]\n"
        "        return layers[0]",
        "class L(keras.layers.Layer):\n    def plot_attention(self):\n        pass",
        "class Config:\n    np = 3\n    layers = []",
        "values = [np for np in range(3)]",
        "square = lambda ops: ops * ops",
        "def f(np):\n    np.allclose = 1",  # a parameter: the caller's object
        "import numpy as np\nfrom keras import ops",  # the same modules again
        "def f():\n    ops = 1\n    def g():\n        nonlocal ops\n        ops = 2",
    ],
)
def test_local_names_like_the_lessons_are_not_tampering(source):
    assert findings(source) == []


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("layers = []", "line 1: rebinds `layers`"),
        ("if True:\n    layers = []", "line 2: rebinds `layers`"),
        ("for keras in []:\n    pass", "rebinds `keras`"),
        ("with open_it() as ops:\n    pass", "rebinds `ops`"),
        ("try:\n    pass\nexcept Exception as plt:\n    pass", "rebinds `plt`"),
        ("del dates", "rebinds `dates`"),
        ("_ = [(lesson := 1) for _ in range(1)]", "rebinds `lesson`"),
        ("def f():\n    global ops\n    ops = None", "line 3: rebinds `ops`"),
        ("def plot_attention(*a):\n    pass", "redefines `plot_attention`"),
        ("class np:\n    pass", "redefines `np`"),
        (
            "from functools import partial as check_luong_attention",
            "rebinds `check_luong_attention`",
        ),
    ],
)
def test_module_level_rebinding_is_found(source, reason):
    found = findings(source)
    assert any(reason in f for f in found), found


# -- Rule: setattr/delattr on the student's own objects ------------------------


@pytest.mark.parametrize(
    "source",
    [
        "class L(keras.layers.Layer):\n"
        "    def build(self, shape):\n"
        "        for i in range(3):\n"
        "            setattr(self, f'head_{i}', keras.layers.Dense(4))\n"
        "        delattr(self, 'cache')\n"
        "        return getattr(self, 'head_0')",
        "class L:\n"
        "    @classmethod\n"
        "    def reset(cls):\n"
        "        setattr(cls, 'count', 0)",
        "class Counter:\n    pass\n\nsetattr(Counter, 'count', 0)",
        "dense = keras.layers.Dense(3)\nsetattr(dense, 'note', 'projection')",
    ],
)
def test_setattr_on_own_objects_is_not_tampering(source):
    assert findings(source) == []


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("setattr(np, 'allclose', min)", "calls `setattr()` on `np`"),
        ("delattr(ops, 'softmax')", "calls `delattr()` on `ops`"),
        ("setattr(type(x), '__eq__', f)", "calls `setattr()` with `__eq__`"),
        ("setattr(type(layer), 'call', f)", "calls `setattr()` on `type(layer)`"),
        (
            "setattr(getattr(np, 'testing'), 'assert_allclose', f)",
            "calls `setattr()` on `getattr(np, 'testing')`",
        ),
        ("setattr(self, '__class__', int)", "calls `setattr()` with `__class__`"),
        (
            "class A:\n    def f(self, x):\n        setattr(self, f'__{x}__', 1)",
            "calls `setattr()` with",
        ),
        ("def patch(m):\n    setattr(m, 'allclose', min)", "calls `setattr()` on `m`"),
        ("put = setattr", "uses `setattr`"),
    ],
)
def test_setattr_on_modules_or_unknown_objects_is_found(source, reason):
    found = findings(source)
    assert any(reason in f for f in found), found


# -- Rule: vars(), locals(), __dict__ ----------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "class L:\n    def config(self):\n        return dict(vars(self))",
        "class L:\n    def config(self):\n        return self.__dict__",
        "class L:\n    def f(self):\n        self.__dict__['cache'] = 1",
        "def f(a, b):\n    return locals()",
    ],
)
def test_own_namespaces_are_not_tampering(source):
    assert findings(source) == []


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("v = vars(np)", "calls `vars()` on `np`"),
        ("np.__dict__['allclose'] = min", "uses `.__dict__`"),
        ("globals()['np'] = None", "calls `globals()`"),
        ("locals()['np'] = None", "calls `locals()`"),
        ("vars()['np'] = None", "calls `vars()`"),
        ("class A:\n    locals()['__array__'] = f", "calls `locals()`"),
        (
            "class L:\n    def f(self):\n        self.__dict__['__array__'] = f",
            "assigns `self.__array__`",
        ),
    ],
)
def test_module_namespaces_are_found(source, reason):
    found = findings(source)
    assert any(reason in f for f in found), found


# -- Rule: sys/os-like attributes only on modules and unknown objects ----------


@pytest.mark.parametrize(
    "source",
    [
        "class Model(keras.Model):\n"
        "    def build(self, shape):\n"
        "        self.modules = [keras.layers.Dense(4)]\n"
        "        self.system = 'seq2seq'\n"
        "        self.environ = {}",
        "def count(tracker):\n    return len(tracker.modules)",
        "class Path:\n    pass\n\np = Path()",
    ],
)
def test_own_attributes_named_like_sys_are_not_tampering(source):
    assert findings(source) == []


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("import sys\nsys.meta_path.insert(0, finder)", "uses `.meta_path`"),
        ("lesson.os.environ['X'] = '1'", "uses `.os`"),
        ("lesson.os.environ['X'] = '1'", "uses `.environ`"),
        ("plt.sys.modules.clear()", "uses `.modules`"),
        ("hooks = importer.path_hooks", "uses `.path_hooks`"),  # unresolved
        ("from matplotlib.pyplot import *\nos.remove('x')", "uses `os`"),
    ],
)
def test_sys_like_attributes_of_modules_are_found(source, reason):
    found = findings(source)
    assert any(reason in f for f in found), found


# -- Rule: imports ------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "from __future__ import annotations",
        "import warnings\nwarnings.filterwarnings('ignore')",
        "import copy, types, numbers, heapq, bisect, fractions, decimal",
        "import pprint, textwrap, json, datetime, cmath, unicodedata",
        "from typing_extensions import Self",
        "from collections.abc import Sequence\nimport abc",
        "from autograder.lesson import plot_attention as show",
        "from autograder import lesson_attention as la",
        "from autograder.lesson_transformer import bleu",
        "from autograder.data import dates as date_data",
        "import autograder.lesson as lesson2",
    ],
)
def test_harmless_imports_are_not_tampering(source):
    assert findings(source) == []


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        *[
            (f"import {m}", f"imports `{m}`")
            for m in (
                "importlib",
                "inspect",
                "gc",
                "io",
                "pathlib",
                "pickle",
                "shutil",
                "subprocess",
                "threading",
                "socket",
                "timeit",
            )
        ],
        *[
            (f"from autograder.{m} import x", f"imports `autograder.{m}`")
            for m in (
                "checks",
                "reference",
                "judge",
                "trusted",
                "scan",
                "sandbox",
                "jail",
                "pipeline",
            )
        ],
        ("from autograder import trusted", "imports `autograder.trusted`"),
        ("import autograder", "imports `autograder`"),
        ("import autograder.lesson", "imports `autograder.lesson` as `autograder`"),
        ("from autograder.lesson import os", "imports `os` from `autograder.lesson`"),
        ("from autograder.data.translation import Path", "imports `Path`"),
        ("from autograder.lesson import *", "imports `*` from `autograder.lesson`"),
        ("from types import CodeType", "imports `CodeType` from `types`"),
        ("code = types.CodeType(*parts)", "uses `.CodeType`"),
        ("from . import secrets", "imports `.`"),
    ],
)
def test_imports_outside_the_list_are_found(source, reason):
    found = findings(source)
    assert any(reason in f for f in found), found


# -- Rule: IPython magics and shell commands -----------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "!pip install -q -U keras-hub",
        '!pip install "keras-hub==0.32.0"',
        "%pip install -q keras-hub",
        "!python -m pip install keras-hub",
        # the course's wheel, as the first cell says (Colab: every session)
        "%pip install https://course.example.org/kit/attention_course_kit_student-0.1.0-py3-none-any.whl",
        "!pip install -q attention_course_kit_student-0.1.0-py3-none-any.whl",
        "%pip install ./attention_course_kit_student-0.2.0-py3-none-any.whl",
        "!pip list",
        "!conda install -y -c conda-forge numpy",
        "!nvidia-smi",
        "!ls -la /content",
        "!pwd\n!nproc\n!free -h\n!df -h\n!uname -a\n!lscpu\n!which python",
        "!echo 'training on a GPU; be patient'",
        "files = !ls",
        "%load_ext autoreload\n%autoreload 2",
        "%config InlineBackend.figure_format = 'retina'",
        "%config Completer.use_jedi = False",
        "%who\n%whos\n%pwd\n%lsmagic",
        "LuongAttention?",
        "keras.layers.Dense??",
        "%%capture output\nmodel.fit(x, y)",
        "%%time\nlayer = LuongAttention(units=4)",
        "%time layer = LuongAttention(units=4)",
        "%timeit -n 1 -r 1 LuongAttention(units=6, output_dim=7)",
        "%%timeit x = np.ones(3)\nops.softmax(x)",
        "%prun -s cumulative f()",
        "result = %timeit -o -q f()",
        "time - start",  # a one-line cell: Python, not the `%time` magic's abuse
    ],
)
def test_harmless_magics_and_commands_are_not_tampering(source):
    assert findings(source) == []


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("%run secret.py", "IPython `run_line_magic` (run)"),
        ("%env KIT_GRADING_DIR=/tmp", "IPython `run_line_magic` (env)"),
        ("%store -r", "IPython `run_line_magic` (store)"),
        ("%load solution.py", "IPython `run_line_magic` (load)"),
        ("%%writefile helper.py\nx = 1", "IPython `run_cell_magic` (writefile)"),
        ("%%bash\nls", "IPython `run_cell_magic` (bash)"),
        ("%%sh\nls", "IPython `run_cell_magic` (sh)"),
        ("%%script python\nprint(1)", "IPython `run_cell_magic` (script)"),
        ("%cd /", "IPython `run_line_magic` (cd)"),
        ("%load_ext my_extension", "(load_ext): only `autoreload`"),
        ("%config InteractiveShell.ast_node_interactivity = 'none'", "(config)"),
        ("%config InlineBackend.x = __import__('os')", "must be a constant"),
        ("%matplotlib {__import__('os').system('id')}", "(matplotlib): IPython"),
        ("%prun -D profile.out f()", "IPython `run_line_magic` (prun)"),
        ("!python -c 'import os'", "`python` runs code"),
        ("!rm -rf build", "`rm` is not a harmless command"),
        ("!cat /etc/passwd", "`cat` is not a harmless command"),
        ("!pip install x; rm -rf ~", "uses the shell operator `;`"),
        ("!ls && rm x", "uses the shell operator `&&`"),
        ("!ls || rm x", "uses the shell operator `||`"),
        ("!ls | sh", "uses the shell operator `|`"),
        ("!echo x > checks.py", "uses the shell operator `>`"),
        ("!ls `id`", "backticks"),
        ("!ls $(id)", "`$...`"),
        ("!echo {__import__('os').system('id')}", "`{...}`"),
        ("!pip uninstall -y keras", "`pip uninstall`"),
        ("!pip install .", "`pip install .`"),
        ("!pip install -e /tmp/pkg", "`pip install -e`"),
        ("!pip install git+https://example.com/x.git", "only package names"),
        ("%pip install --index-url http://x y", "`pip install --index-url`"),
        ("%pip install https://x.example/other-0.1-py3-none-any.whl", "only package"),
        ("%pip install /tmp/attention_course_kit_student-0-py3-none-any.whl", "only"),
        (
            "%pip install https://x.example/attention_course_kit_student-1-py3-none-any.whl#x",
            "only package names",
        ),
        (
            "%pip install file:///attention_course_kit_student-1-py3-none-any.whl",
            "only",
        ),
        ("reset -f", "IPython `run_line_magic` (reset)"),  # automagic
        ("%sx rm -rf build", "`rm` is not a harmless command"),
        ("get_ipython().system(command)", "a command the scan cannot read"),
        ("get_ipython().run_cell('np.allclose = min')", "IPython `run_cell`"),
        # the code of the allowed magics is read like the cell's own
        ("%%time\nnp.allclose = lambda *a, **k: True", "line 2: assigns `np.allclose`"),
        ("%time np.allclose = min", "line 1: assigns `np.allclose`"),
        ("%%timeit np.allclose = min\nf()", "assigns `np.allclose`"),
        ("%timeit -tc ;np.allclose-c=f", "assigns `np.allclose`"),
        ("%%capture\n%%time\nimport os", "line 3: imports `os`"),
        ("%%capture np\nprint(1)", "rebinds `np`"),
    ],
)
def test_other_magics_and_commands_are_found(source, reason):
    found = findings(source)
    assert any(reason in f for f in found), found


def test_code_magics_define_and_use_names_for_the_grader():
    tree = scan.parse("%%time\nclass LuongAttention(Base):\n    x = helper()\n")
    assert scan.node_defines(tree.body[0]) == {"LuongAttention"}
    assert {"Base", "helper"} <= scan.used_names(tree.body[0])


# -- Rule: only methods that change how the checks read an object --------------


@pytest.mark.parametrize(
    "source",
    [
        "class A:\n"
        "    def __eq__(self, other):\n        return True\n"
        "    def __ne__(self, other):\n        return False\n"
        "    def __bool__(self):\n        return True\n"
        "    def __float__(self):\n        return 1.0\n"
        "    def __hash__(self):\n        return 0\n"
        "    def __repr__(self):\n        return 'A'",
        "def __array__():\n    return 0",  # not a method of anything
    ],
)
def test_comparison_methods_are_not_tampering(source):
    assert findings(source) == []


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        *[
            (f"class A:\n    def {name}(self, *a):\n        pass", f"defines `{name}`")
            for name in (
                "__array__",
                "__array_ufunc__",
                "__array_function__",
                "__instancecheck__",
                "__subclasscheck__",
                "__getattribute__",
            )
        ],
        ("class A:\n    __array_priority__ = 100", "defines `__array_priority__`"),
        ("A = type('A', (), {'__array__': f})", "defines `__array__`"),
        ("A = type('A', (), dict(__array__=f))", "defines `__array__`"),
        ("Anything.__array__ = f", "assigns `Anything.__array__`"),
    ],
)
def test_methods_that_change_how_checks_read_objects_are_found(source, reason):
    found = findings(source)
    assert any(reason in f for f in found), found


def test_the_always_equal_sample_stays_an_integrity_error():
    """It defines `__eq__` (now harmless) and `__array__` (still refused)."""
    catalog = ROOT / "solutions" / "01_attention_seq2seq" / "integrity.toml"
    samples = tomllib.loads(catalog.read_text(encoding="utf-8"))["sample"]
    (sample,) = [s for s in samples if s["name"] == "always-equal"]
    found = findings(sample["patch"][0]["new"] + "\n    pass\n")
    assert any("defines `__array__`" in f for f in found), found


def test_check_calls_are_read_from_test_cells():
    source = '"""doc"""\ncheck_luong_attention(LuongAttention, cases="hidden")'
    assert scan.check_calls(source) == [
        ("check_luong_attention", "hidden", "LuongAttention")
    ]


@pytest.fixture(scope="module")
def course():
    return Course()


def _policies(facts):
    """What borrowing means in this assignment's checks."""
    return {
        scan.policy_of(judge.spec(check_name).borrowing)
        for calls in facts["tests"].values()
        for check_name, _, _ in calls
    } - {None}


def test_the_solutions_and_samples_are_clean(course):
    for assignment in course.assignments():
        source = course.sources(assignment)[0]
        facts = trusted.assignment_facts(build_source(source))
        protected = set(facts["protected"])
        answers = solution_answers(build_source(source))
        policies = _policies(facts)
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


def test_every_attack_of_the_catalogs_is_still_found(course):
    """Each sample meant to score 0 through the scan is flagged by it; each
    one meant to be found only by what runs (`found_by = "runtime"`) is not
    (so that the catalog really tests the runtime checks)."""
    checked = 0
    for assignment in course.assignments():
        facts = trusted.assignment_facts(build_source(course.sources(assignment)[0]))
        protected, lesson = set(facts["protected"]), set(facts["lesson"])
        policies = _policies(facts)
        for catalog in ("samples", "integrity"):
            for sample in course.samples(assignment, catalog):
                kinds = set(sample.verdicts.values())
                if not kinds & {"IntegrityError", "BorrowedAnswer"}:
                    continue
                trees, tampered, borrowings = [], [], []
                for cell in course.make_submission(assignment, sample).cells:
                    meta = cell.metadata.get("nbgrader", {})
                    if cell.cell_type != "code" or (
                        meta.get("grade") and not meta.get("solution")
                    ):
                        continue
                    tree = scan.parse(cell.source)
                    trees.append(tree)
                    if cell.source in lesson:
                        continue
                    tampered += scan.tampering(tree, protected)
                    libraries = scan.library_names(trees)
                    borrowings += [
                        f
                        for policy in policies
                        for f in scan.borrowing(tree, policy, libraries=libraries)
                    ]
                if sample.found_by == "runtime":
                    assert not borrowings, (sample.name, borrowings)
                    continue
                if sample.found_by != "scan":
                    continue
                if "IntegrityError" in kinds:
                    assert tampered, sample.name
                if "BorrowedAnswer" in kinds:
                    assert borrowings, sample.name
                checked += 1
    assert checked >= 14


def test_lesson_cells_define_the_protected_names(course):
    source = course.sources("01_attention_seq2seq")[0]
    facts = trusted.assignment_facts(build_source(source))
    assert {"np", "keras", "ops", "check_luong_attention", "lesson"} <= set(
        facts["protected"]
    )
    assert len(facts["tests"]) == 14


HELPED = {
    # correct: helpers that split, attend and merge every head at once
    "split": (
        "    def split(self, x, size):\n"
        "        b, t = ops.shape(x)[0], ops.shape(x)[1]\n"
        "        x = ops.reshape(x, (b, t, self.num_heads, size))\n"
        "        return ops.transpose(x, (0, 2, 1, 3))\n\n"
        "    def call(self, query, value):\n"
        "        q = self.split(query, self.key_dim)\n"
        "        for extra in (query, value):\n"
        "            pass\n"
        "        return attend(q, q, q)\n",
        False,
    ),
    "split_given_the_count": (
        "    def split(self, x, h):\n"
        "        return ops.reshape(x, (2, h, -1))\n\n"
        "    def call(self, query, value):\n"
        "        return self.split(query, self.num_heads)\n",
        False,
    ),
    # refused: the loop over the heads sits in a method `call` calls
    "method_loop": (
        "    def heads(self, x):\n"
        "        return [x for i in range(self.num_heads)]\n\n"
        "    def call(self, query, value):\n"
        "        return ops.concatenate(self.heads(query), -1)\n",
        True,
    ),
    # refused: a helper given the head count loops over it
    "count_as_parameter": (
        "    def apply(self, x, n):\n"
        "        out = []\n"
        "        for i in range(n):\n"
        "            out.append(x)\n"
        "        return out\n\n"
        "    def call(self, query, value):\n"
        "        h = self.num_heads\n"
        "        return self.apply(query, n=h)\n",
        True,
    ),
    # refused: a function of the student's cells, reached through a method
    "function_loop": (
        "    def attend_all(self, q):\n"
        "        return per_head(q, self.num_heads)\n\n"
        "    def call(self, query, value):\n"
        "        return self.attend_all(query)\n",
        True,
    ),
    # a helper nobody calls is not code the layer runs
    "unused_helper": (
        "    def unused(self, x):\n"
        "        return [x for i in range(self.num_heads)]\n\n"
        "    def call(self, query, value):\n"
        "        return query\n",
        False,
    ),
}


@pytest.mark.parametrize(("body", "loops"), list(HELPED.values()), ids=list(HELPED))
def test_the_loop_rule_reaches_the_helpers_call_runs(
    body, loops, tmp_path, monkeypatch
):
    """ "No loop over the heads" holds for all the student's code `call` runs:
    its own methods and the functions of the student's cells, followed from
    `call`; a helper that splits the heads without a loop passes."""
    import importlib
    import sys

    from autograder.checks import attention as checks_attention

    source = (
        "from keras import ops\n\n\n"
        "def attend(q, k, v):\n"
        "    return ops.matmul(q, ops.swapaxes(k, -1, -2))\n\n\n"
        "def per_head(x, count):\n"
        "    return [x[:, i] for i in range(count)]\n\n\n"
        "class Layer:\n"
        "    num_heads = 2\n"
        "    key_dim = 3\n\n"
        f"{body}"
    )
    (tmp_path / "student_helpers.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("student_helpers", None)
    module = importlib.import_module("student_helpers")
    found = checks_attention._loops_over_heads(module.Layer)
    assert bool(found) is loops, found
    if loops:
        assert found[0][0] != "Layer.call"
