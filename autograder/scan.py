"""Read a submission's code without running it: tampering and borrowing.

The grader reads every cell a student wrote (answer cells and added cells)
as Python syntax (IPython magics translated first) and looks for two things:

* tampering: code that changes what a check relies on or reaches outside
  the exercise: assigning attributes of imported modules (`np.allclose =
  ...`), rebinding the check functions, `exec`/`eval`/`open`/`setattr`,
  frames and `__globals__`, `sys.modules`, IPython's traceback display,
  shell commands, imports outside the course's list (including any
  `autograder` module), and classes that redefine comparison or array
  conversion (`__eq__`, `__array__`, ...);
* borrowing: an attention exercise that delegates to
  `keras.layers.MultiHeadAttention`, `Attention`, `AdditiveAttention`,
  `GroupedQueryAttention`, `keras.ops.dot_product_attention` or keras-hub.

Each finding is a line number and a short reason, for the feedback.
"""

import ast
import dataclasses

__all__ = [
    "ALLOWED_IMPORTS",
    "Finding",
    "borrowing",
    "check_calls",
    "defined_names",
    "node_defines",
    "parse",
    "tampering",
    "used_names",
]

ALLOWED_IMPORTS = frozenset(
    {
        "abc",
        "collections",
        "contextlib",
        "dataclasses",
        "enum",
        "functools",
        "itertools",
        "keras",
        "keras_hub",  # importing is allowed; its layers in an exercise are borrowing
        "keras_nlp",
        "math",
        "matplotlib",
        "numpy",
        "operator",
        "random",
        "re",
        "statistics",
        "string",
        "tensorflow",
        "tensorflow_text",
        "time",
        "typing",
    }
)
ALLOWED_MAGICS = frozenset({"time", "timeit", "matplotlib", "prun"})
FORBIDDEN_CALLS = frozenset(
    {
        "exec",
        "eval",
        "compile",
        "open",
        "__import__",
        "setattr",
        "delattr",
        "globals",
        "locals",
        "vars",
        "breakpoint",
        "get_ipython",
    }
)
FORBIDDEN_ATTRIBUTES = frozenset(
    {
        "__builtins__",
        "__globals__",
        "__code__",
        "__closure__",
        "__subclasses__",
        "__dict__",
        "__class__",
        "__bases__",
        "__setattr__",
        "__delattr__",
        "__mro__",
        "_getframe",
        "f_globals",
        "f_locals",
        "f_back",
        "modules",
        "excepthook",
        "displayhook",
        "settrace",
        "setprofile",
        "showtraceback",
        "system",
        "popen",
        "environ",
        "run_cell",
    }
)
FORBIDDEN_METHODS = frozenset(
    {
        "__eq__",
        "__ne__",
        "__bool__",
        "__array__",
        "__array_ufunc__",
        "__array_function__",
        "__array_priority__",
        "__float__",
        "__instancecheck__",
        "__subclasscheck__",
        "__getattribute__",
    }
)
BORROWED_NAMES = frozenset(
    {
        "MultiHeadAttention",
        "Attention",
        "AdditiveAttention",
        "GroupedQueryAttention",
        "GroupQueryAttention",
        "CachedMultiHeadAttention",
        "dot_product_attention",
        "TransformerEncoder",
        "TransformerDecoder",
    }
)
BORROWED_MODULES = frozenset({"keras_hub", "keras_nlp", "tf_keras"})
# Assignment 3 builds on Keras's attention (proven equal to the students' own
# in Assignment 2), but its exercises are the blocks keras-hub ships ready.
BLOCK_NAMES = frozenset(
    {
        "TransformerEncoder",
        "TransformerDecoder",
        "SinePositionEncoding",
        "PositionEmbedding",
        "TokenAndPositionEmbedding",
    }
)
#: What counts as a borrowed answer, by policy (a check's `Spec.borrowing`).
POLICIES = {"attention": BORROWED_NAMES, "blocks": BLOCK_NAMES}


def policy_of(borrowing):
    """`True` is the attention policy; `False`/`None` none; else its name."""
    if borrowing is True:
        return "attention"
    return borrowing or None


@dataclasses.dataclass(frozen=True)
class Finding:
    line: int
    reason: str

    def __str__(self):
        return f"line {self.line}: {self.reason}"


def parse(source):
    """The cell as a Python AST, IPython syntax translated; None if invalid."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        source = TransformerManager().transform_cell(source)
    except Exception:  # pragma: no cover - IPython always there with nbgrader
        pass
    try:
        return ast.parse(source)
    except SyntaxError:
        return None


def _root(node):
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _magic(node):
    """`get_ipython().run_line_magic('timeit', ...)` -> ('run_line_magic', 'timeit')."""
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Call)
        and isinstance(node.func.value.func, ast.Name)
        and node.func.value.func.id == "get_ipython"
    ):
        return None
    name = None
    if node.args and isinstance(node.args[0], ast.Constant):
        name = node.args[0].value
    return node.func.attr, name


def imported_names(tree):
    """Names bound by import statements: aliases of modules and objects."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                names.add(alias.asname or alias.name)
    return names


def tampering(tree, protected):
    """Findings of tampering in one student cell.

    Args:
        tree: the cell's AST (from `parse`).
        protected: names the locked cells import (modules and check
            functions): rebinding them or their attributes is tampering.
    """
    found = []
    protected = set(protected) | imported_names(tree)
    allowed_magic_calls = set()
    for node in ast.walk(tree):
        magic = _magic(node)
        if magic is not None:
            kind, name = magic
            if kind in ("run_line_magic", "run_cell_magic") and name in ALLOWED_MAGICS:
                allowed_magic_calls.add(id(node.func.value))
            else:
                found.append(Finding(node.lineno, f"IPython `{kind}` ({name})"))
                allowed_magic_calls.add(id(node.func.value))
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or "."]
            )
            for module in modules:
                top = module.split(".")[0]
                if node.__class__ is ast.ImportFrom and node.level:
                    top = "." + top
                if top not in ALLOWED_IMPORTS:
                    found.append(Finding(line, f"imports `{module}`"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in FORBIDDEN_CALLS and id(node) not in allowed_magic_calls:
                found.append(Finding(line, f"calls `{node.func.id}()`"))
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
            found.append(Finding(line, f"uses `.{node.attr}`"))
        elif isinstance(node, ast.Name) and node.id == "__builtins__":
            found.append(Finding(line, "uses `__builtins__`"))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name in FORBIDDEN_METHODS:
                found.append(Finding(line, f"defines `{node.name}`"))
            if node.name in protected:
                found.append(Finding(line, f"redefines `{node.name}`"))
        elif isinstance(node, ast.ClassDef) and node.name in protected:
            found.append(Finding(line, f"redefines `{node.name}`"))
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
            targets = (
                node.targets
                if isinstance(node, ast.Assign | ast.Delete)
                else [node.target]
            )
            for target in _flat(targets):
                if isinstance(target, ast.Attribute) and _root(target) in protected:
                    name = _dotted(target) or target.attr
                    found.append(Finding(line, f"assigns `{name}`"))
                elif isinstance(target, ast.Name) and target.id in protected:
                    found.append(Finding(line, f"rebinds `{target.id}`"))
    unique = {(f.line, f.reason): f for f in found}
    return sorted(unique.values(), key=lambda f: (f.line, f.reason))


def _flat(targets):
    for target in targets:
        if isinstance(target, ast.Tuple | ast.List):
            yield from _flat(target.elts)
        elif isinstance(target, ast.Starred):
            yield from _flat([target.value])
        else:
            yield target


def borrowing(tree, policy="attention"):
    """Findings of a library's attention (or, with the "blocks" policy, of
    keras-hub's Transformer blocks) used in one cell."""
    BORROWED_NAMES = POLICIES[policy]
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Attribute) and node.attr in BORROWED_NAMES:
            found.append(Finding(line, f"uses `{_dotted(node) or node.attr}`"))
        elif isinstance(node, ast.ImportFrom):
            top = (node.module or "").split(".")[0]
            if top in BORROWED_MODULES:
                found.append(Finding(line, f"imports from `{node.module}`"))
            for alias in node.names:
                if alias.name in BORROWED_NAMES and top in ("keras", "tensorflow"):
                    found.append(Finding(line, f"imports `{alias.name}`"))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in BORROWED_MODULES:
                    found.append(Finding(line, f"imports `{alias.name}`"))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value in BORROWED_NAMES
        ):
            found.append(Finding(line, f"names `{node.value}` in a string"))
    unique = {(f.line, f.reason): f for f in found}
    return sorted(unique.values(), key=lambda f: (f.line, f.reason))


def node_defines(node):
    """Names one top-level statement binds (class, function, assignment, import)."""
    if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
        return {node.name}
    if isinstance(node, ast.Import | ast.ImportFrom):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    targets = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign | ast.AugAssign):
        targets = [node.target]
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}


def defined_names(tree):
    """Top-level names a cell defines."""
    return set().union(*(node_defines(node) for node in tree.body))


def used_names(node):
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def check_calls(source):
    """`[(check name, cases, name of the student's object)]` in a test cell."""
    tree = parse(source)
    calls = []
    if tree is None:
        return calls
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id.startswith("check_")
        ):
            continue
        which = "visible"
        for keyword in node.keywords:
            if keyword.arg == "cases" and isinstance(keyword.value, ast.Constant):
                which = keyword.value.value
        target = (
            node.args[0].id
            if node.args and isinstance(node.args[0], ast.Name)
            else None
        )
        calls.append((node.func.id, which, target))
    return calls
