"""Read a submission's code without running it: tampering and borrowing.

The grader reads every cell a student wrote (answer cells and added cells)
as Python syntax (IPython magics translated first, as IPython does) and
looks for two things:

* tampering: code that changes what a check relies on or reaches outside
  the exercise: assigning attributes of imported modules (`np.allclose =
  ...`), rebinding the lesson's names at module level, `exec`/`eval`/`open`,
  `setattr` on a module, frames and `__globals__`, `sys.modules`, IPython's
  traceback display, shell commands and magics outside a short harmless
  list, imports outside the course's list (and every `autograder` module
  but the lesson and data modules the notebook itself imports), and classes
  that change how the checks read an object (`__array__`, ...);
* borrowing: an attention exercise that delegates to
  `keras.layers.MultiHeadAttention`, `Attention`, `AdditiveAttention`,
  `GroupedQueryAttention`, `keras.ops.dot_product_attention` or keras-hub.

Every rule judges what a name refers to, not how it is spelled: a small
resolver (`_Names`) follows Python's scopes, so `self.dot_product_attention`
(the student's own method), a local variable `layers` inside `call`,
`setattr(self, f"head_{i}", ...)` and `self.modules` are the student's own
and pass, while `ops.dot_product_attention`, a module-level `layers = ...`
over a lesson import, `setattr(np, ...)` and `sys.modules` are flagged. A
name is one of: an import (of the cell, or of the lesson's locked cells:
`protected`, or a library for borrowing: `libraries`), the student's own
(`self`/`cls`, a class or function the cell defines, an object the code
creates), a parameter, a builtin, or unknown (bound in another cell).

The scan is syntactic: a name built at run time (`"dot_" +
"product_attention"`) or an object passed around through parameters is
beyond it; at run time, `checks.watch` notes every Keras attention layer or
fused attention op the student's code calls during a check, the built
layer's sublayers and base classes are listed, and the kernel reports what
was replaced (`checks.integrity`).

Each finding is a line number and a short reason, for the feedback.
"""

import ast
import builtins
import dataclasses
import functools
import re
import shlex

__all__ = [
    "ALLOWED_CELL_MAGICS",
    "ALLOWED_IMPORTS",
    "ALLOWED_LINE_MAGICS",
    "DEFAULT_LIBRARIES",
    "SAFE_COMMANDS",
    "Finding",
    "borrowing",
    "check_calls",
    "defined_names",
    "imported_names",
    "library_names",
    "node_defines",
    "parse",
    "policy_of",
    "tampering",
    "used_names",
]

# Modules a student may import. Each gives no access to files, processes,
# frames or the import system (that is why `os`, `sys`, `io`, `pathlib`,
# `shutil`, `subprocess`, `threading`, `socket`, `pickle`, `ctypes`, `gc`,
# `inspect`, `importlib`, `builtins`, `timeit` (runs strings as code) stay
# out): numbers, containers, text and the course's libraries.
ALLOWED_IMPORTS = frozenset(
    {
        "__future__",  # compiler flags only (`annotations`)
        "abc",
        "bisect",
        "cmath",
        "collections",  # and collections.abc
        "contextlib",
        "copy",  # copy/deepcopy of the student's own objects
        "dataclasses",
        "datetime",
        "decimal",
        "enum",
        "fractions",
        "functools",
        "heapq",
        "itertools",
        "json",  # strings in, strings out: reading a file needs `open()`
        "keras",
        "keras_hub",  # importing is allowed; its layers in an exercise are borrowing
        "keras_nlp",
        "math",
        "matplotlib",
        "numbers",
        "numpy",
        "operator",
        "pprint",
        "random",
        "re",
        "statistics",
        "string",
        "tensorflow",
        "tensorflow_text",
        "textwrap",
        "time",
        "types",  # SimpleNamespace...; `types.CodeType` (bytecode) is refused
        "typing",
        "typing_extensions",
        "unicodedata",
        "warnings",  # filters and messages; replacing its functions is tampering
    }
)
# Names that reach files, processes or the import system wherever they come
# from: `from autograder.lesson import os`, `plt.sys`, `lesson.os.remove`.
# (Not `io`, `signal`, `trace` or `sysconfig`: TensorFlow and NumPy have
# attributes of those names.)
LEAK_NAMES = frozenset(
    {
        "os",
        "sys",
        "subprocess",
        "builtins",
        "importlib",
        "shutil",
        "ctypes",
        "inspect",
        "gc",
        "socket",
        "pickle",
        "marshal",
        "pathlib",
        "Path",
        "tempfile",
        "zipfile",
        "tarfile",
        "threading",
        "_thread",
        "multiprocessing",
        "concurrent",
        "asyncio",
        "runpy",
        "pkgutil",
        "zipimport",
        "linecache",
        "fileinput",
        "posix",
        "pty",
        "fcntl",
        "mmap",
        "urllib",
        "http",
        "webbrowser",
        "sqlite3",
        "shelve",
        "dbm",
        "faulthandler",
        "pdb",
        "site",
        "atexit",
    }
)
# Builtins that are tampering wherever they are named (called or not).
FORBIDDEN_CALLS = frozenset(
    {
        "exec",
        "eval",
        "compile",
        "open",
        "__import__",
        "breakpoint",
        "get_ipython",  # except in the magics IPython writes for `%...`/`!...`
        "globals",
    }
)
# Builtins judged by their argument or scope: `setattr`/`delattr` on the
# student's own object with a name that is not a dunder; `vars(obj)` of the
# student's own object; `locals()` inside a function.
CONDITIONAL_CALLS = frozenset({"setattr", "delattr", "vars", "locals"})
# Attributes that are tampering whatever their object (reading included).
FORBIDDEN_ATTRIBUTES = frozenset(
    {
        "__builtins__",
        "__globals__",
        "__code__",
        "__closure__",
        "__subclasses__",
        "__bases__",
        "__base__",
        "__import__",
        "__defaults__",
        "__kwdefaults__",
        "_getframe",
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_back",
        "tb_frame",
        "gi_frame",
        "cr_frame",
        "ag_frame",
        "CodeType",
    }
)
# Attributes that are tampering on a module, an imported object, a builtin
# or an object the scan cannot resolve, and fine on the student's own
# objects (`self.modules = [...]`, `vars(self)`, `self.__dict__`).
FOREIGN_ATTRIBUTES = LEAK_NAMES | frozenset(
    {
        "__dict__",
        "__self__",
        "__setattr__",
        "__delattr__",
        "modules",
        "environ",
        "system",
        "popen",
        "excepthook",
        "displayhook",
        "breakpointhook",
        "unraisablehook",
        "addaudithook",
        "settrace",
        "setprofile",
        "meta_path",
        "path_hooks",
        "path_importer_cache",
        "showtraceback",
        "showsyntaxerror",
        "run_cell",
        "user_ns",
    }
)
# Methods (or class attributes) that change how the checks read a student's
# object. `__eq__`, `__ne__`, `__bool__` and `__float__` are harmless: the
# verdict compares float arrays outside the kernel.
FORBIDDEN_METHODS = frozenset(
    {
        "__array__",
        "__array_ufunc__",
        "__array_function__",
        "__array_priority__",
        "__array_interface__",
        "__array_struct__",
        "__array_wrap__",
        "__instancecheck__",
        "__subclasscheck__",
        "__getattribute__",
    }
)

# IPython. Magics that run Python code (the code is read like the cell's
# own) and harmless line magics, each with the arguments it accepts.
# Everything else (`%run`, `%env`, `%store`, `%load`, `%%writefile`,
# `%%bash`, `%%script`, `%cd`, `%reset`, `%config InteractiveShell...`)
# is tampering.
CODE_MAGICS = frozenset({"time", "timeit", "prun"})
ALLOWED_CELL_MAGICS = CODE_MAGICS | {"capture"}
ALLOWED_LINE_MAGICS = CODE_MAGICS | frozenset(
    {
        "matplotlib",  # a backend name
        "config",  # InlineBackend/IPCompleter settings with a constant value
        "load_ext",  # autoreload only
        "reload_ext",
        "autoreload",
        "who",
        "whos",
        "who_ls",
        "lsmagic",
        "pwd",
        "precision",
        "pinfo",  # `x?`
        "pinfo2",  # `x??`
        "pdoc",
        "pdef",
        "pip",  # `%pip install NAME`: see SAFE_COMMANDS
        "conda",
        "ls",  # IPython's alias for the shell's `ls`
        "sx",  # `%sx CMD`, `x = !CMD`: see SAFE_COMMANDS
        "system",
    }
)
# Shell commands (`!cmd`, `%sx`, `%pip`) whose first word is one of these
# and that use no shell operator (`;`, `&&`, `||`, `|`, `>`, `<`, `&`,
# backticks, `$(...)`) nor IPython's `{...}`/`$name` expansion. `pip` and
# `conda` only install packages by name, list or show them. `cat`, `head`,
# `tail` and `wc` are not here: they read any file into the feedback, the
# access `open()` is refused for.
SAFE_COMMANDS = frozenset(
    {
        "pip",
        "pip3",
        "conda",
        "mamba",
        "nvidia-smi",
        "ls",
        "pwd",
        "nproc",
        "free",
        "df",
        "uname",
        "lscpu",
        "which",
        "echo",
        "python",  # only `python -m pip ...` and `python --version`
        "python3",
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
# Modules whose objects are a library's (for borrowing).
LIBRARY_MODULES = BORROWED_MODULES | {"keras", "tensorflow"}
# Names the lesson cells bind to libraries, when the caller gives no list.
DEFAULT_LIBRARIES = frozenset(
    {"keras", "ops", "layers", "tf", "tensorflow", "keras_hub", "keras_nlp", "tf_keras"}
)
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
_ALL_BORROWED = BORROWED_NAMES | BLOCK_NAMES
# Functions that look an object up by a name given as a string.
_LOOKUP_BUILTINS = frozenset({"getattr", "hasattr", "setattr", "delattr"})
_LOOKUP_METHODS = frozenset({"__getattribute__", "__getattr__"})
_NAME_GETTERS = frozenset({"attrgetter", "methodcaller"})
_IMPORTERS = frozenset({"import_module", "__import__", "find_spec"})
# Library functions that turn a name (or a config naming it) into an object.
_LIBRARY_LOOKUPS = frozenset(
    {
        "get",
        "deserialize",
        "deserialize_keras_object",
        "get_registered_object",
        "model_from_json",
        "model_from_config",
    }
)


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
    """The cell as a Python AST, IPython syntax translated; None if invalid.

    As in IPython, a one-line cell whose first word is a magic's name and
    whose rest is not an assignment runs that magic (automagic): `reset -f`
    is valid Python but IPython runs `%reset -f`.
    """
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        source = TransformerManager().transform_cell(source)
        source = _automagic(source)
    except Exception:  # pragma: no cover - IPython always there with nbgrader
        pass
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None  # (ValueError: a null byte; the others: absurd nesting)


# Line magics of IPython and ipykernel, for automagic (completed from the
# installed IPython when it lists its own).
_KNOWN_LINE_MAGICS_TEXT = (
    "aimport alias alias_magic autoawait autocall automagic autoreload "
    "autosave bookmark cat cd clear code_wrap colors conda config connect_info "
    "cp debug dhist dirs doctest_mode edit env gui history killbgscripts ldir "
    "less lf lk ll load load_ext loadpy logoff logon logstart logstate logstop "
    "ls lsmagic lx macro magic mamba man matplotlib micromamba mkdir more mv "
    "notebook page pastebin pdb pdef pdoc pfile pinfo pinfo2 pip popd pprint "
    "precision prun psearch psource pushd pwd pycat pylab qtconsole quickref "
    "recall rehashx reload_ext rep rerun reset reset_selective rm rmdir run "
    "save sc set_env subshell sx system tb tensorboard time timeit unalias "
    "unload_ext uv who who_ls whos xdel xmode"
)
_KNOWN_LINE_MAGICS = frozenset(_KNOWN_LINE_MAGICS_TEXT.split())


@functools.cache
def _line_magic_names():
    names = set(_KNOWN_LINE_MAGICS)
    try:
        from IPython.core import magics

        names |= set(getattr(magics, "BUILTIN_LAZY_MAGICS", {}).get("line", ()))
        from IPython.core.alias import default_aliases

        names |= {name for name, _ in default_aliases()}
    except Exception:  # pragma: no cover - depends on IPython's version
        pass
    return frozenset(names)


def _automagic(cell):
    lines = cell.splitlines()
    if len(lines) != 1:
        return cell
    from IPython.core.splitinput import LineInfo

    info = LineInfo(lines[0])
    rest = info.the_rest
    if (
        info.esc
        or info.ifun not in _line_magic_names()
        or not rest
        or rest[0] in "=,(["  # an assignment, a call or a subscript: Python
    ):
        return cell
    return f"get_ipython().run_line_magic({info.ifun!r}, {rest!r})\n"


def _dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _source(node):
    """A short text of an expression, for the feedback."""
    text = _dotted(node)
    if text is None:
        try:
            text = ast.unparse(node)
        except Exception:  # pragma: no cover - any AST unparses
            text = type(node).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _is_dunder(name):
    return (
        isinstance(name, str)
        and len(name) > 4
        and name.startswith("__")
        and name.endswith("__")
    )


def _string(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _ends_with(value, names):
    """`"layers.MultiHeadAttention"` names `MultiHeadAttention`."""
    return value.rsplit(".", 1)[-1] in names


def _sorted(found):
    unique = {(f.line, f.reason): f for f in found}
    return sorted(unique.values(), key=lambda f: (f.line, f.reason))


# ---------------------------------------------------------------------------
# What a name refers to.

OWN = frozenset({"own"})  # a class, function or literal the code defines
FRESH = frozenset({"fresh"})  # an object a call returns
SELF = frozenset({"self"})  # `self`/`cls` of a method
PARAM = frozenset({"param"})  # another parameter
UNKNOWN = frozenset({"unknown"})  # what the scan cannot resolve
_OWNED = frozenset({"own", "fresh", "self"})
# Builtins whose result is an object that already exists somewhere.
_REACHING_BUILTINS = frozenset(
    {"globals", "locals", "__import__", "get_ipython", "next", "min", "max", "eval"}
)
_BUILTIN_NAMES = frozenset(dir(builtins)) | {"get_ipython", "display"}
_SCOPES = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.Lambda,
    ast.ClassDef,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
)


def _is_imported(kinds):
    return any(k.startswith("import:") or k in ("protected", "library") for k in kinds)


def _is_library(kinds):
    return "library" in kinds or any(
        k.startswith("import:") and k[7:].split(".")[0] in LIBRARY_MODULES
        for k in kinds
    )


def _is_foreign(kinds):
    """A module, an imported object, a builtin, or something unresolved."""
    return _is_imported(kinds) or any(
        k in ("unknown", "unbound") or k.startswith("builtin:") for k in kinds
    )


def _is_owned(kinds):
    return bool(kinds) and kinds <= _OWNED


def _member(kinds):
    """The kinds of `x.attr` or `x[i]` given those of `x`."""
    out = set()
    for kind in kinds:
        if kind == "self":
            out.add("own")
        elif kind.startswith("builtin:"):
            out.add("unknown")
        else:
            out.add(kind)
    return frozenset(out)


@dataclasses.dataclass(eq=False)
class _Scope:
    kind: str  # "module", "function", "class" or "comprehension"
    parent: "_Scope | None" = None
    bindings: dict = dataclasses.field(default_factory=dict)
    globals: set = dataclasses.field(default_factory=set)
    nonlocals: set = dataclasses.field(default_factory=set)


@dataclasses.dataclass(frozen=True)
class _Site:
    """One place a name is bound (or deleted)."""

    name: str
    how: str  # "import", "def", "class", "assign", "for", "del", "star"...
    node: ast.AST
    scope: _Scope  # where the binding lands (module for `global x`)
    source: object  # frozenset of kinds, or ("alias", expr, scope)


def _declared(body):
    """`global`/`nonlocal` names of a function body (not of nested scopes)."""
    names_global, names_nonlocal = set(), set()
    stack = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Global):
            names_global.update(node.names)
        elif isinstance(node, ast.Nonlocal):
            names_nonlocal.update(node.names)
        if not isinstance(node, _SCOPES):
            stack.extend(ast.iter_child_nodes(node))
    return names_global, names_nonlocal


class _Names:
    """Python's scopes for one tree: where each name is bound and to what."""

    def __init__(self, tree, protected=(), libraries=(), imported=()):
        self.protected = frozenset(protected)
        self.libraries = frozenset(libraries)
        self.imported = frozenset(imported)  # imports of an enclosing cell
        self.module = _Scope("module")
        self.scope_of = {}
        self.sites = []
        self.dotted = {}  # "self.L" -> [source]: attributes bound to aliases
        self.stars = []  # modules imported with `*`
        self._visit(tree, self.module)

    # -- binding ------------------------------------------------------------

    def _visit(self, node, scope):
        self.scope_of[id(node)] = scope
        visit = getattr(self, "_visit_" + type(node).__name__, None)
        if visit is None:
            for child in ast.iter_child_nodes(node):
                self._visit(child, scope)
        else:
            visit(node, scope)

    def _visit_all(self, nodes, scope):
        for node in nodes:
            if node is not None:
                self._visit(node, scope)

    def _bind(self, scope, name, how, node, source):
        target = scope
        if scope.kind != "module" and name in scope.globals:
            target = self.module
        elif name in scope.nonlocals:  # the nearest enclosing function's
            target = scope.parent
            while target.kind == "class" and target.parent is not None:
                target = target.parent
        target.bindings.setdefault(name, []).append(source)
        self.sites.append(_Site(name, how, node, target, source))

    def _bind_target(self, target, scope, how, source):
        self.scope_of[id(target)] = scope
        if isinstance(target, ast.Name):
            self._bind(scope, target.id, how, target, source)
        elif isinstance(target, ast.Tuple | ast.List):
            # `a, b = np, ops` pairs up; `for a, b in ...` does not
            value = source[1] if isinstance(source, tuple) else None
            pairs = (
                source[0] == "alias"
                and isinstance(value, ast.Tuple | ast.List)
                and len(value.elts) == len(target.elts)
                and not any(isinstance(e, ast.Starred) for e in value.elts)
            )
            for i, element in enumerate(target.elts):
                part = ("alias", value.elts[i], source[2]) if pairs else source
                self._bind_target(element, scope, how, part)
        elif isinstance(target, ast.Starred):
            self._bind_target(target.value, scope, how, source)
        else:
            if isinstance(target, ast.Attribute) and isinstance(source, tuple):
                dotted = _dotted(target)
                if dotted:
                    self.dotted.setdefault(dotted, []).append(source)
            for child in ast.iter_child_nodes(target):
                self._visit(child, scope)

    def _visit_Import(self, node, scope):
        for alias in node.names:
            if alias.asname:
                name, path = alias.asname, alias.name
            else:
                name = path = alias.name.split(".")[0]
            self._bind(scope, name, "import", node, frozenset({f"import:{path}"}))

    def _visit_ImportFrom(self, node, scope):
        module = "." * node.level + (node.module or "")
        for alias in node.names:
            if alias.name == "*":
                self.stars.append(module)
                self.sites.append(_Site("*", "star", node, scope, module))
                continue
            path = f"{module}.{alias.name}"
            name = alias.asname or alias.name
            self._bind(scope, name, "import", node, frozenset({f"import:{path}"}))

    def _function(self, node, scope, name):
        args = node.args
        self._visit_all(args.defaults, scope)
        self._visit_all(args.kw_defaults, scope)
        if not isinstance(node, ast.Lambda):
            self._visit_all(node.decorator_list, scope)
            for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
                self._visit_all([arg.annotation], scope)
            for arg in (args.vararg, args.kwarg):
                if arg is not None:
                    self._visit_all([arg.annotation], scope)
            self._visit_all([node.returns], scope)
            self._bind(scope, name, "def", node, OWN)
        inner = _Scope("function", scope)
        body = node.body if isinstance(node.body, list) else [node.body]
        inner.globals, inner.nonlocals = _declared(body)
        positional = [*args.posonlyargs, *args.args]
        defaults = dict(
            zip(
                [a.arg for a in positional[len(positional) - len(args.defaults) :]],
                args.defaults,
                strict=True,
            )
        )
        defaults.update(
            (a.arg, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
        )
        static = not isinstance(node, ast.Lambda) and any(
            isinstance(d, ast.Name) and d.id == "staticmethod"
            for d in node.decorator_list
        )
        every = [*positional, args.vararg, *args.kwonlyargs, args.kwarg]
        for i, arg in enumerate(a for a in every if a is not None):
            self.scope_of[id(arg)] = inner
            if i == 0 and positional and scope.kind == "class" and not static:
                source = SELF
            elif defaults.get(arg.arg) is not None:
                source = ("alias", defaults[arg.arg], scope, PARAM)
            else:
                source = PARAM
            inner.bindings.setdefault(arg.arg, []).append(source)
        self._visit_all(body, inner)

    def _visit_FunctionDef(self, node, scope):
        self._function(node, scope, node.name)

    def _visit_AsyncFunctionDef(self, node, scope):
        self._function(node, scope, node.name)

    def _visit_Lambda(self, node, scope):
        self._function(node, scope, None)

    def _visit_ClassDef(self, node, scope):
        self._visit_all(node.decorator_list, scope)
        self._visit_all(node.bases, scope)
        self._visit_all(node.keywords, scope)
        self._bind(scope, node.name, "class", node, OWN)
        inner = _Scope("class", scope)
        inner.globals, inner.nonlocals = _declared(node.body)
        self._visit_all(node.body, inner)

    def _comprehension(self, node, scope, results):
        inner = _Scope("comprehension", scope)
        for i, generator in enumerate(node.generators):
            outer = scope if i == 0 else inner
            self._visit(generator.iter, outer)
            self._bind_target(
                generator.target, inner, "for", ("iter", generator.iter, outer)
            )
            self._visit_all(generator.ifs, inner)
        self._visit_all(results, inner)

    def _visit_ListComp(self, node, scope):
        self._comprehension(node, scope, [node.elt])

    def _visit_SetComp(self, node, scope):
        self._comprehension(node, scope, [node.elt])

    def _visit_GeneratorExp(self, node, scope):
        self._comprehension(node, scope, [node.elt])

    def _visit_DictComp(self, node, scope):
        self._comprehension(node, scope, [node.key, node.value])

    def _visit_Assign(self, node, scope):
        self._visit(node.value, scope)
        for target in node.targets:
            self._bind_target(target, scope, "assign", ("alias", node.value, scope))

    def _visit_AnnAssign(self, node, scope):
        self._visit(node.annotation, scope)
        if node.value is None:
            self._bind_target_children(node.target, scope)
            return
        self._visit(node.value, scope)
        self._bind_target(node.target, scope, "assign", ("alias", node.value, scope))

    def _bind_target_children(self, target, scope):
        self.scope_of[id(target)] = scope
        for child in ast.iter_child_nodes(target):
            self._visit(child, scope)

    def _visit_AugAssign(self, node, scope):
        self._visit(node.value, scope)
        if isinstance(node.target, ast.Name):
            self._bind(scope, node.target.id, "assign", node.target, FRESH)
            self.scope_of[id(node.target)] = scope
        else:
            self._bind_target_children(node.target, scope)

    def _visit_NamedExpr(self, node, scope):
        self._visit(node.value, scope)
        while scope.kind == "comprehension":
            scope = scope.parent
        self._bind_target(node.target, scope, "assign", ("alias", node.value, scope))

    def _visit_For(self, node, scope):
        self._visit(node.iter, scope)
        self._bind_target(node.target, scope, "for", ("iter", node.iter, scope))
        self._visit_all(node.body, scope)
        self._visit_all(node.orelse, scope)

    def _visit_AsyncFor(self, node, scope):
        self._visit_For(node, scope)

    def _visit_withitem(self, node, scope):
        self._visit(node.context_expr, scope)
        if node.optional_vars is not None:
            self._bind_target(node.optional_vars, scope, "with", FRESH)

    def _visit_ExceptHandler(self, node, scope):
        self._visit_all([node.type], scope)
        if node.name:
            self._bind(scope, node.name, "except", node, FRESH)
        self._visit_all(node.body, scope)

    def _visit_Delete(self, node, scope):
        for target in node.targets:
            if isinstance(target, ast.Name):
                self.scope_of[id(target)] = scope
                where = self.module if target.id in scope.globals else scope
                self.sites.append(_Site(target.id, "del", target, where, FRESH))
            else:
                self._bind_target_children(target, scope)

    def _visit_MatchAs(self, node, scope):
        self._visit_all([node.pattern], scope)
        if node.name:
            self._bind(scope, node.name, "match", node, FRESH)

    def _visit_MatchStar(self, node, scope):
        if node.name:
            self._bind(scope, node.name, "match", node, FRESH)

    def _visit_MatchMapping(self, node, scope):
        self._visit_all(node.keys, scope)
        self._visit_all(node.patterns, scope)
        if node.rest:
            self._bind(scope, node.rest, "match", node, FRESH)

    # -- resolving ----------------------------------------------------------

    def scope(self, node):
        return self.scope_of.get(id(node), self.module)

    def external(self, name):
        """A name the tree does not bind: the lesson's, a builtin, or another cell's."""
        kinds = set()
        if name in self.libraries:
            kinds.add("library")
        if name in self.protected:
            kinds.add("protected")
        if name in self.imported:
            kinds.add("import:")
        if kinds:
            return frozenset(kinds)
        for module in self.stars:
            if name in _ALL_BORROWED and module.split(".")[0] in LIBRARY_MODULES:
                return frozenset({"library", f"import:{module}.{name}"})
        if name in _BUILTIN_NAMES:
            return frozenset({f"builtin:{name}"})
        return frozenset({"unbound"})

    def resolve(self, name, scope, seen=frozenset()):
        here, first = scope, True
        while here is not None:
            if here.kind == "class" and not first:
                here = here.parent
                continue
            if here.kind != "module" and name in here.globals:
                here, first = self.module, False
                continue
            if name in here.bindings:
                kinds = set()
                for source in here.bindings[name]:
                    kinds |= self._source_kinds(source, seen)
                return frozenset(kinds)
            here, first = here.parent, False
        return self.external(name)

    def _source_kinds(self, source, seen):
        if isinstance(source, frozenset):
            return source
        tag, node, scope, *extra = source
        if id(node) in seen:
            return FRESH
        seen = seen | {id(node)}
        if tag == "iter":  # `for x in [np, ops]` or `for x in things`
            if isinstance(node, ast.List | ast.Tuple | ast.Set):
                kinds = set()
                for element in node.elts:
                    kinds |= self.kinds(element, scope, seen)
                return frozenset(kinds) or FRESH
            return FRESH
        kinds = self.kinds(node, scope, seen)
        return kinds | extra[0] if extra else kinds

    def kinds(self, node, scope=None, seen=frozenset()):
        """What an expression refers to, as a set of kinds."""
        scope = self.scope(node) if scope is None else scope
        if isinstance(node, ast.Name):
            return self.resolve(node.id, scope, seen)
        if isinstance(node, ast.Attribute):
            extra = set()
            for source in self.dotted.get(_dotted(node), ()):
                extra |= self._source_kinds(source, seen)
            if node.attr == "__class__":
                base = self.kinds(node.value, scope, seen)
                kinds = OWN if base <= SELF else UNKNOWN
            elif node.attr in ("__mro__", "__bases__", "__base__", "__self__"):
                kinds = UNKNOWN
            else:
                kinds = _member(self.kinds(node.value, scope, seen))
            return kinds | extra
        if isinstance(node, ast.Subscript):
            value = node.value
            if isinstance(value, ast.List | ast.Tuple | ast.Set):
                elements = value.elts
            elif isinstance(value, ast.Dict):
                elements = value.values
            else:
                return _member(self.kinds(value, scope, seen))
            kinds = set()
            for element in elements:
                kinds |= self.kinds(element, scope, seen)
            return frozenset(kinds) or OWN
        if isinstance(node, ast.Call):
            return self._call_kinds(node, scope, seen)
        if isinstance(node, ast.IfExp):
            return self.kinds(node.body, scope, seen) | self.kinds(
                node.orelse, scope, seen
            )
        if isinstance(node, ast.BoolOp):
            kinds = set()
            for value in node.values:
                kinds |= self.kinds(value, scope, seen)
            return frozenset(kinds)
        if isinstance(node, ast.NamedExpr | ast.Starred):
            return self.kinds(node.value, scope, seen)
        if isinstance(node, ast.List | ast.Tuple | ast.Set | ast.Dict):
            # a new container, that may hold a module: `d = {"m": np}`
            elements = node.values if isinstance(node, ast.Dict) else node.elts
            kinds = set(OWN)
            for element in elements:
                inner = self.kinds(element, scope, seen)
                if _is_imported(inner) or inner & UNKNOWN:
                    kinds |= inner
            return frozenset(kinds)
        if isinstance(
            node,
            ast.Constant
            | ast.JoinedStr
            | ast.Lambda
            | ast.ListComp
            | ast.SetComp
            | ast.DictComp
            | ast.GeneratorExp,
        ):
            return OWN
        return FRESH

    def _call_kinds(self, node, scope, seen):
        builtin = _builtin(self.kinds(node.func, scope, seen))
        args = node.args
        if builtin == "getattr" and args:
            return _member(self.kinds(args[0], scope, seen))
        if builtin == "vars":
            return _member(self.kinds(args[0], scope, seen)) if args else UNKNOWN
        if builtin == "type" and len(args) == 1:
            return OWN if self.kinds(args[0], scope, seen) <= SELF else UNKNOWN
        if builtin == "super":
            return OWN
        if builtin in _REACHING_BUILTINS:
            return UNKNOWN
        return FRESH

    def module_sites(self):
        """Bindings that land in the module's namespace, in source order."""
        sites = [s for s in self.sites if s.scope is self.module]
        return sorted(
            sites,
            key=lambda s: (
                getattr(s.node, "lineno", 0),
                getattr(s.node, "col_offset", 0),
            ),
        )


def _builtin(kinds):
    """`"getattr"` if `kinds` is exactly the builtin `getattr`, else None."""
    if len(kinds) == 1:
        (kind,) = kinds
        if kind.startswith("builtin:"):
            return kind[8:]
    return None


def _as_module(node):
    if isinstance(node, ast.Module):
        return node
    if isinstance(node, ast.stmt):
        return ast.Module(body=[node], type_ignores=[])
    return ast.Module(body=[ast.Expr(node)], type_ignores=[])


# ---------------------------------------------------------------------------
# IPython: magics and shell commands, as TransformerManager writes them.


def _ipython_call(node):
    """`get_ipython().system('ls')` -> ("system", ["ls"]); None otherwise.

    Arguments that are not string constants are None."""
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Call)
        and isinstance(node.func.value.func, ast.Name)
        and node.func.value.func.id == "get_ipython"
        and not node.func.value.args
        and not node.func.value.keywords
    ):
        return None
    args = [_string(a) for a in node.args]
    if node.keywords:
        args.append(None)
    return node.func.attr, args


class _MagicStub:
    """What `Magics.parse_options` reads of its magic."""

    def __init__(self):
        self.options_table = {}


def _magic_code(name, line, body):
    """The Python a code magic runs, as IPython extracts it:
    `[(code, 0 if it starts on the magic's line else 1)]`, or None."""
    try:
        from IPython.core.magic import Magics
        from IPython.core.magics.execution import ExecutionMagics

        if name == "time":
            _, extra = ExecutionMagics.time.parser.parse_argstring(line, partial=True)
            statement = " ".join(extra)
            if body is None:
                return [(statement, 0)]
            return [] if statement else [(body, 1)]
        if name == "timeit":
            _, statement = Magics.parse_options(
                _MagicStub(),
                line,
                "n:r:tcp:qov:",
                posix=False,
                strict=False,
                preserve_non_opts=True,
            )
            return [(statement, 0)] + ([] if body is None else [(body, 1)])
        if name == "prun":
            opts, statement = Magics.parse_options(
                _MagicStub(), line, "D:l:rs:T:q", list_all=True, posix=False
            )
            if "D" in opts or "T" in opts:  # writes the profile to a file
                return None
            return [(statement if body is None else statement + "\n" + body, 0)]
        if name == "capture" and body is not None:
            return [(body, 1)]
    except (Exception, SystemExit):
        return None
    return None


def _capture_output(line):
    """The variable `%%capture NAME` assigns, '' if none, None if unreadable."""
    try:
        from IPython.core.magics.execution import ExecutionMagics

        args = ExecutionMagics.capture.parser.parse_argstring(line)
    except (Exception, SystemExit):
        return None
    return args.output or ""


def _embedded(node, top_only=False):
    """`[(tree, line offset)]` of the Python inside code magics in `node`.

    With `top_only`, only a magic that is the statement itself (`%%time` on
    a whole cell, `x = %timeit -o f()`) counts: what its code defines lands
    in the module."""
    if top_only:
        if isinstance(node, ast.Expr | ast.Assign):
            candidates = [node.value]
        else:
            return []
    else:
        candidates = ast.walk(node)
    trees = []
    for call in candidates:
        found = _ipython_call(call)
        if found is None:
            continue
        kind, args = found
        if kind == "run_line_magic" and len(args) == 2 and None not in args:
            name, line, body = args[0], args[1], None
        elif kind == "run_cell_magic" and len(args) == 3 and None not in args:
            name, line, body = args
        else:
            continue
        for code, delta in _magic_code(name, line, body) or ():
            tree = parse(code)
            if tree is not None:
                trees.append((tree, call.lineno - 1 + delta))
    return trees


def _expands(line):
    """IPython runs `{expression}` and `$name` in most magics' lines and in
    shell commands before running them: Python the scan cannot read."""
    return any(c in line for c in "{}$")


_REQUIREMENT = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,-]+\])?"
    r"((===|==|~=|!=|>=|<=|<|>)[A-Za-z0-9.*+!_-]+)?"
    r"(,(===|==|~=|!=|>=|<=|<|>)[A-Za-z0-9.*+!_-]+)*"
)
_CONDA_SPEC = re.compile(r"[A-Za-z0-9][\w.-]*([=<>!~]=?[\w.*+!-]+)*")
_PIP_FLAGS = frozenset(
    {
        "-q",
        "-qq",
        "-qqq",
        "--quiet",
        "-v",
        "--verbose",
        "-U",
        "--upgrade",
        "--user",
        "--pre",
        "--no-deps",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--no-warn-script-location",
        "--progress-bar=off",
    }
)
_PLAIN_ARGUMENT = re.compile(r"[\w.=,<>!~*\[\]-]+")
# The course's own student wheel, by file name or from the instructor's web
# address (the notebooks' first cell says to install it so: on Colab a
# student does it again each session). Grading has no network, so the
# install can only fail there, in its own cell.
_KIT_WHEEL = re.compile(
    r"(?:https?://[\w.-]+(?::\d+)?(?:/[\w.~%+-]+)*/|(?:\./)?)"
    r"attention_course_kit_student-[\w.+!-]+-py3-none-any\.whl"
)


def _pip_problem(words):
    while words and words[0] in _PIP_FLAGS:
        words = words[1:]
    if not words:
        return None
    command, rest = words[0], words[1:]
    if command in ("--version", "-V", "list", "show", "freeze", "help", "check"):
        odd = [w for w in rest if not _PLAIN_ARGUMENT.fullmatch(w)]
        return f"`pip {command} {odd[0]}`" if odd else None
    if command != "install":
        return f"`pip {command}` (only install, list, show, freeze)"
    for word in rest:
        if word.startswith("-"):
            if word not in _PIP_FLAGS:
                return f"`pip install {word}`"
        elif not (_REQUIREMENT.fullmatch(word) or _KIT_WHEEL.fullmatch(word)):
            return (
                f"`pip install {word}` (only package names from the index, "
                "and the course's own wheel)"
            )
    return None


def _conda_problem(words):
    if not words or words[0] in ("list", "info", "--version", "-V"):
        odd = [w for w in words[1:] if not _PLAIN_ARGUMENT.fullmatch(w)]
        return f"`conda {words[0]} {odd[0]}`" if odd else None
    if words[0] != "install":
        return f"`conda {words[0]}` (only install, list, info)"
    rest = iter(words[1:])
    for word in rest:
        if word in ("-c", "--channel"):
            channel = next(rest, "")
            if not re.fullmatch(r"[\w.-]+", channel):
                return f"`conda install {word} {channel}`"
        elif word.startswith("-"):
            if word not in ("-y", "--yes", "-q", "--quiet"):
                return f"`conda install {word}`"
        elif not _CONDA_SPEC.fullmatch(word):
            return f"`conda install {word}` (only package names)"
    return None


def _shell_problem(command):
    """Why a shell command is not harmless, or None."""
    if _expands(command) or any(c in command for c in "`\n\r"):
        return "IPython or the shell would run the `{...}`, `$...` or backticks in it"
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = ""
        words = list(lexer)
    except ValueError:
        return "its quoting cannot be read"
    operators = [w for w in words if w and set(w) <= set("();<>|&")]
    if operators:
        return f"uses the shell operator `{operators[0]}`"
    if not words:
        return None
    program, rest = words[0], words[1:]
    if program in ("python", "python3"):
        if rest[:2] == ["-m", "pip"]:
            program, rest = "pip", rest[2:]
        elif rest in (["--version"], ["-V"]):
            return None
        else:
            return f"`{program}` runs code (only `{program} -m pip ...`)"
    if program not in SAFE_COMMANDS:
        return f"`{program}` is not a harmless command"
    if program in ("pip", "pip3"):
        return _pip_problem(rest)
    if program in ("conda", "mamba"):
        return _conda_problem(rest)
    return None


def _config_problem(line):
    line = line.strip()
    if not line:
        return None
    match = re.fullmatch(
        r"(InlineBackend|IPCompleter|Completer)(\.\w+)?\s*(=\s*(.+))?", line
    )
    if match is None:
        return "only `InlineBackend`/`IPCompleter` settings"
    if match.group(4) is not None:
        try:
            ast.literal_eval(match.group(4).strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return "its value must be a constant"
    return None


def _pattern(regex, what):
    def check(line):
        return None if re.fullmatch(regex, line.strip()) else what

    return check


_LINE_MAGIC_ARGUMENTS = {
    "matplotlib": _pattern(r"[\w.:\- ]*", "only a backend name"),
    "config": _config_problem,
    "load_ext": _pattern(r"autoreload", "only `autoreload`"),
    "reload_ext": _pattern(r"autoreload", "only `autoreload`"),
    "autoreload": _pattern(r"[\w\- ]*", "only its modes"),
    "who": _pattern(r"[\w ]*", "only type names"),
    "whos": _pattern(r"[\w ]*", "only type names"),
    "who_ls": _pattern(r"[\w ]*", "only type names"),
    "lsmagic": _pattern(r"", "no arguments"),
    "pwd": _pattern(r"", "no arguments"),
    "precision": _pattern(r"[\w%.\- ]*", "only a precision"),
    "pinfo": _pattern(r"[\w.*]+", "only a name"),
    "pinfo2": _pattern(r"[\w.*]+", "only a name"),
    "pdoc": _pattern(r"[\w.]+", "only a name"),
    "pdef": _pattern(r"[\w.]+", "only a name"),
}


# ---------------------------------------------------------------------------
# Tampering.


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


def _student_module(module):
    """`autograder.lesson*` and `autograder.data*`: the modules the lesson
    cells import for students (plots, data). What they hold is reachable as
    `lesson.X` anyway; the checks, the reference and the grader are not."""
    parts = module.split(".")
    return (
        len(parts) >= 2
        and parts[0] == "autograder"
        and (parts[1].startswith("lesson") or parts[1] == "data")
    )


def _import_findings(node, line):
    found = []
    if isinstance(node, ast.Import):
        for alias in node.names:
            module, top = alias.name, alias.name.split(".")[0]
            if top == "autograder" and _student_module(module):
                if alias.asname is None:  # binds the whole package
                    parent, _, last = module.rpartition(".")
                    found.append(
                        Finding(
                            line,
                            f"imports `{module}` as `autograder` (write "
                            f"`from {parent} import {last}`)",
                        )
                    )
            elif top not in ALLOWED_IMPORTS:
                found.append(Finding(line, f"imports `{module}`"))
        return found
    module = "." * node.level + (node.module or "")
    top = module.split(".")[0]
    if node.level:
        found.append(Finding(line, f"imports `{module}`"))
    elif module == "autograder":
        for alias in node.names:
            if not _student_module(f"autograder.{alias.name}"):
                found.append(Finding(line, f"imports `autograder.{alias.name}`"))
    elif (
        not _student_module(module)
        if top == "autograder"
        else top not in ALLOWED_IMPORTS
    ):
        found.append(Finding(line, f"imports `{module}`"))
    for alias in node.names:
        if alias.name in LEAK_NAMES or alias.name in FORBIDDEN_ATTRIBUTES:
            found.append(Finding(line, f"imports `{alias.name}` from `{module}`"))
        elif alias.name == "*" and top == "autograder":
            found.append(Finding(line, f"imports `*` from `{module}`"))
    return found


class _Tampering:
    def __init__(self, protected):
        self.protected = frozenset(protected)

    def scan(self, tree, offset=0, imported=frozenset()):
        names = _Names(tree, protected=self.protected, imported=imported)
        parents = {
            id(child): node
            for node in ast.walk(tree)
            for child in ast.iter_child_nodes(node)
        }
        found = []

        def flag(node, reason):
            found.append(Finding(getattr(node, "lineno", 0) + offset, reason))

        magics = set()  # the `get_ipython()` calls IPython wrote for magics
        inner_imported = imported | imported_names(tree)
        for node in ast.walk(tree):
            call = _ipython_call(node)
            if call is None:
                continue
            magics.add(id(node.func.value))
            reason, codes, output = self._magic(*call)
            if reason:
                flag(node, reason)
            if output and output in self.protected:
                flag(node, f"rebinds `{output}`")
            for code, delta in codes:
                inner = parse(code)
                line = node.lineno + offset - 1 + delta
                if inner is None:
                    flag(
                        node,
                        f"IPython `{call[0]}` ({call[1][0]}): its code cannot be read",
                    )
                    continue
                found.extend(self.scan(inner, line, inner_imported))

        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for finding in _import_findings(node, node.lineno + offset):
                    found.append(finding)
            elif isinstance(node, ast.Name):
                self._name(node, names, parents, magics, flag)
            elif isinstance(node, ast.Attribute):
                self._attribute(node, names, magics, flag)
            elif isinstance(node, ast.Subscript) and isinstance(
                node.ctx, ast.Store | ast.Del
            ):
                self._namespace_write(node, names, flag)
            elif isinstance(node, ast.Call):
                self._call(node, names, flag)
        for site in names.sites:
            self._site(site, flag)
        return found

    # -- IPython --------------------------------------------------------------

    def _magic(self, kind, args):
        """`(reason or None, [(code, delta)], name %%capture assigns)`."""
        if kind in ("system", "getoutput"):
            if len(args) != 1 or args[0] is None:
                return f"IPython `{kind}` with a command the scan cannot read", [], None
            why = _shell_problem(args[0])
            command = args[0] if len(args[0]) <= 40 else args[0][:37] + "..."
            return (f"IPython `{kind}` (`{command}`): {why}" if why else None), [], None
        if kind not in ("run_line_magic", "run_cell_magic"):
            return f"IPython `{kind}`", [], None
        cell = kind == "run_cell_magic"
        if len(args) != (3 if cell else 2) or None in args:
            name = args[0] if args else None
            return (
                f"IPython `{kind}` ({name}) with arguments the scan cannot read",
                [],
                None,
            )
        name, line = args[0], args[1]
        body = args[2] if cell else None
        allowed = ALLOWED_CELL_MAGICS if cell else ALLOWED_LINE_MAGICS
        if name not in allowed:
            return f"IPython `{kind}` ({name})", [], None

        def refused(why):
            return f"IPython `{kind}` ({name}): {why}", [], None

        output = None
        if name in CODE_MAGICS or name == "capture":
            if name == "capture":
                if _expands(line):
                    return refused(
                        "IPython would run the `{...}` or `$...` in its line"
                    )
                output = _capture_output(line)
                if output is None or (output and not output.isidentifier()):
                    return refused("its arguments cannot be read")
            codes = _magic_code(name, line, body)
            if codes is None:
                return refused("its code cannot be read (or it writes a file)")
            return None, codes, output
        if _expands(line):
            return refused("IPython would run the `{...}` or `$...` in its line")
        if name in ("sx", "system"):
            why = _shell_problem(line)
        elif name in ("pip", "conda", "ls"):
            why = _shell_problem(f"{name} {line}")
        else:
            why = _LINE_MAGIC_ARGUMENTS[name](line)
        return refused(why) if why else (None, [], None)

    # -- names, attributes, calls -------------------------------------------

    def _name(self, node, names, parents, magics, flag):
        if node.id == "__builtins__":
            flag(node, "uses `__builtins__`")
            return
        if not isinstance(node.ctx, ast.Load):
            return
        kinds = names.kinds(node)
        parent = parents.get(id(node))
        called = isinstance(parent, ast.Call) and parent.func is node
        if kinds == {f"builtin:{node.id}"}:
            if node.id in FORBIDDEN_CALLS:
                if called and id(parent) in magics:
                    return
                flag(node, f"calls `{node.id}()`" if called else f"uses `{node.id}`")
            elif node.id in CONDITIONAL_CALLS and not called:
                flag(node, f"uses `{node.id}`")
        elif (
            node.id in LEAK_NAMES
            and _is_foreign(kinds)
            # (not again after the cell's own `import os`: flagged there)
            and not all(k.startswith("import:") and len(k) > 7 for k in kinds)
        ):
            flag(node, f"uses `{node.id}`")

    def _attribute(self, node, names, magics, flag):
        if id(node.value) in magics:  # `get_ipython().system`, judged above
            return
        self._attribute_name(node, node.value, node.attr, names, flag)
        if isinstance(node.ctx, ast.Store | ast.Del):
            self._write(node, node.value, node.attr, names, flag)

    def _write(self, node, target, attr, names, flag):
        """`target.attr = ...` or `del target.attr`: any dunder; any attribute
        of a module, an imported object, or a class reached through `type()`
        or `__class__` of an object that is not `self`."""
        kinds = names.kinds(target)
        if (
            _is_dunder(attr)
            or _is_imported(kinds)
            or kinds & UNKNOWN
            or any(k.startswith("builtin:") for k in kinds)
        ):
            flag(node, f"assigns `{_source(target)}.{attr}`")

    def _namespace_write(self, node, names, flag):
        """`x.__dict__[key] = ...`, `vars(x)[key] = ...` on the student's own
        object is fine unless the key is a dunder (a module's, `globals()`
        and module-level `locals()` are flagged where they are named)."""
        value, key = node.value, _string(node.slice)
        own = None
        if isinstance(value, ast.Attribute) and value.attr == "__dict__":
            own = value.value
        elif (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Name)
            and value.func.id == "vars"
            and value.args
        ):
            own = value.args[0]
        if own is not None and _is_owned(names.kinds(own)) and _is_dunder(key):
            flag(node, f"assigns `{_source(own)}.{key}`")

    def _call(self, node, names, flag):
        func = node.func
        args = node.args
        builtin = _builtin(names.kinds(func)) if isinstance(func, ast.Name) else None
        if builtin in ("setattr", "delattr"):
            how = "calls `setattr()`" if builtin == "setattr" else "calls `delattr()`"
            if len(args) < 2 or any(isinstance(a, ast.Starred) for a in args[:2]):
                flag(node, how)
                return
            target, name = args[0], args[1]
            constant = _string(name)
            if _is_dunder(constant) or _fstring_dunder(name):
                flag(node, f"{how} with `{constant or _source(name)}`")
            elif not _is_owned(names.kinds(target)):
                flag(node, f"{how} on `{_source(target)}`")
            if constant is not None:
                self._attribute_name(node, target, constant, names, flag)
        elif builtin in ("getattr", "hasattr") and len(args) >= 2:
            constant = _string(args[1])
            if constant is not None:
                self._attribute_name(node, args[0], constant, names, flag)
        elif builtin == "vars":
            if not args:
                if names.scope(node).kind in ("module", "class"):
                    flag(node, "calls `vars()`")
            elif _is_foreign(names.kinds(args[0])):
                flag(node, f"calls `vars()` on `{_source(args[0])}`")
        elif builtin == "locals":
            # a function's: a copy; the module's (or a class body's): the
            # namespace itself
            if names.scope(node).kind in ("module", "class"):
                flag(node, "calls `locals()`")
        elif builtin == "type" and len(args) == 3:
            namespace = args[2]
            keys = []
            if isinstance(namespace, ast.Dict):
                keys = [_string(k) for k in namespace.keys]
            elif isinstance(namespace, ast.Call):  # dict(__array__=...)
                keys = [k.arg for k in namespace.keywords]
                keys += [
                    _string(k)
                    for a in namespace.args
                    if isinstance(a, ast.Dict)
                    for k in a.keys
                ]
            for key in keys:
                if key in FORBIDDEN_METHODS:
                    flag(node, f"defines `{key}`")
        elif isinstance(func, ast.Attribute) and func.attr in _LOOKUP_METHODS:
            owner, name = (args[0], args[1]) if len(args) >= 2 else (func.value, None)
            if name is None and args:
                name = args[0]
            constant = _string(name) if name is not None else None
            if constant is not None:
                self._attribute_name(node, owner, constant, names, flag)
        elif _calls_one_of(func, _NAME_GETTERS, names):
            for arg in args:
                constant = _string(arg)
                for part in (constant or "").split("."):
                    if part in FORBIDDEN_ATTRIBUTES or part in FOREIGN_ATTRIBUTES:
                        flag(node, f"uses `.{part}`")

    def _attribute_name(self, node, target, attr, names, flag):
        """The rules of reading `target.attr` (also for a name given as a string)."""
        if attr in FORBIDDEN_ATTRIBUTES or (
            attr in FOREIGN_ATTRIBUTES and _is_foreign(names.kinds(target))
        ):
            flag(node, f"uses `.{attr}`")

    def _site(self, site, flag):
        name = site.name
        if site.scope.kind == "class" and name in FORBIDDEN_METHODS:
            flag(site.node, f"defines `{name}`")
        if site.scope.kind != "module" or name not in self.protected:
            return
        if site.how in ("def", "class"):
            flag(site.node, f"redefines `{name}`")
        elif site.how == "import":
            # Importing the same module again (`import numpy as np`) is common
            # and harmless; no allowed module holds a `check_` function.
            if name.startswith("check_"):
                flag(site.node, f"rebinds `{name}`")
        elif site.how != "star":
            flag(site.node, f"rebinds `{name}`")


def _calls_one_of(func, names, resolver):
    """`func` is spelled as, or imported as, one of `names`
    (`attrgetter`, `operator.attrgetter`, `from operator import attrgetter as g`)."""
    if _final_name(func) in names:
        return True
    return any(
        k.startswith("import:") and k.rsplit(".", 1)[-1] in names
        for k in resolver.kinds(func)
    )


def _final_name(func):
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _fstring_dunder(node):
    """`f"__{x}__"`: a name that starts or ends as a dunder."""
    if not isinstance(node, ast.JoinedStr) or not node.values:
        return False
    first, last = _string(node.values[0]), _string(node.values[-1])
    return bool(first and first.startswith("__")) or bool(last and last.endswith("__"))


def tampering(tree, protected):
    """Findings of tampering in one student cell.

    Args:
        tree: the cell's AST (from `parse`).
        protected: names the locked cells import (modules and check
            functions): rebinding them at module level, or assigning their
            attributes, is tampering.
    """
    try:
        return _sorted(_Tampering(protected).scan(tree))
    except RecursionError:
        return [Finding(0, "is nested too deeply to be read")]


# ---------------------------------------------------------------------------
# Borrowing.


def library_names(trees, libraries=()):
    """Names bound to a library's objects (keras, tensorflow, keras-hub...)
    after the cells `trees` run in order, starting from `libraries`.

    A module-level import from a library (`from keras import ops`,
    `import tensorflow as tf`) or alias of one (`L = keras.layers`) adds a
    name; a later module-level binding of that name to anything else (a
    student's own `class MultiHeadAttention`) removes it. Give it the
    lesson's cells and the student's cells in notebook order.
    """
    names = set(libraries)
    for tree in trees:
        if tree is None:
            continue
        _library_pass(_as_module(tree), names)
    return frozenset(names)


def _library_pass(tree, names):
    resolver = _Names(tree, libraries=frozenset(names))
    for site in resolver.module_sites():
        if site.how == "star":
            if site.source.split(".")[0] in LIBRARY_MODULES:
                names.update(_ALL_BORROWED)
            continue
        if site.how == "del":
            names.discard(site.name)
            continue
        kinds = resolver._source_kinds(site.source, frozenset())
        if _is_library(kinds):
            names.add(site.name)
        else:
            names.discard(site.name)
    for statement in tree.body:
        for inner, _ in _embedded(statement, top_only=True):
            _library_pass(inner, names)


def borrowing(tree, policy="attention", *, libraries=None):
    """Findings of a library's attention (or, with the "blocks" policy, of
    keras-hub's Transformer blocks) used in one cell or one statement.

    Args:
        tree: a cell's AST, or one of its statements.
        policy: "attention" or "blocks" (see `POLICIES`).
        libraries: names the rest of the notebook binds to library objects
            (`library_names` of the lesson's and the student's cells);
            `DEFAULT_LIBRARIES` (the lesson's usual `keras`, `ops`,
            `layers`, `tf`...) if not given. Names the tree itself binds are
            resolved from the tree.
    """
    libraries = DEFAULT_LIBRARIES if libraries is None else frozenset(libraries)
    try:
        found = _borrowing(_as_module(tree), POLICIES[policy], libraries, 0)
    except RecursionError:
        found = [Finding(0, "is nested too deeply to be read")]
    return _sorted(found)


def _borrowing(tree, borrowed, libraries, offset):
    names = _Names(tree, libraries=libraries)
    found = []

    def flag(node, reason):
        found.append(Finding(getattr(node, "lineno", 0) + offset, reason))

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in borrowed:
            if _is_library(names.kinds(node.value)):
                flag(node, f"uses `{_source(node)}`")
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            kinds = names.kinds(node)
            paths = [k[7:] for k in kinds if k.startswith("import:")]
            if (node.id in borrowed and _is_library(kinds)) or any(
                _ends_with(p, borrowed) and p.split(".")[0] in LIBRARY_MODULES
                for p in paths
            ):
                flag(node, f"uses `{node.id}`")
        elif isinstance(node, ast.ImportFrom):
            top = (node.module or "").split(".")[0]
            if top in BORROWED_MODULES:
                flag(node, f"imports from `{node.module}`")
            for alias in node.names:
                if alias.name in borrowed and top in LIBRARY_MODULES:
                    flag(node, f"imports `{alias.name}`")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in BORROWED_MODULES:
                    flag(node, f"imports `{alias.name}`")
        elif isinstance(node, ast.Call):
            for value in _looked_up(node, names):
                if (
                    _ends_with(value, borrowed)
                    or value.split(".")[0] in BORROWED_MODULES
                ):
                    flag(node, f"names `{value}` in a string lookup")
        elif isinstance(node, ast.Subscript):
            key = _string(node.slice)
            if (
                key
                and _ends_with(key, borrowed)
                and _is_library(names.kinds(node.value))
            ):
                flag(node, f"names `{key}` in a string lookup")
    embedded = _embedded(tree)
    if embedded:  # code magics see what the cell binds
        inner_libraries = library_names([tree], libraries)
        for inner, line in embedded:
            found.extend(_borrowing(inner, borrowed, inner_libraries, line + offset))
    return found


def _looked_up(node, names):
    """The strings a call looks an object up by: `getattr(keras.layers,
    "Attention")`, `attrgetter("layers.Attention")`, `import_module(...)`,
    `keras.layers.deserialize({"class_name": "MultiHeadAttention", ...})`."""
    func, args = node.func, node.args
    final = _final_name(func)
    if isinstance(func, ast.Name) and _builtin(names.kinds(func)) == "getattr":
        if len(args) >= 2 and _is_library(names.kinds(args[0])):
            return [s for s in [_string(args[1])] if s]
        return []
    if _calls_one_of(func, _NAME_GETTERS | _IMPORTERS, names):
        return [s for s in map(_string, args) if s]
    if final in _LOOKUP_METHODS and isinstance(func, ast.Attribute):
        if _is_library(names.kinds(func.value)):
            return [s for s in map(_string, args) if s]
        return []
    if final in _LIBRARY_LOOKUPS and _is_library(names.kinds(func)):
        values = []
        for part in [*args, *(k.value for k in node.keywords)]:
            values += [s for s in (_string(n) for n in ast.walk(part)) if s]
        return values
    return []


# ---------------------------------------------------------------------------
# What a statement defines and uses (the grader follows an answer's helpers).


def node_defines(node):
    """Names one top-level statement binds (class, function, assignment,
    import, and what a code magic that is the statement defines)."""
    names = set()
    if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
        names = {node.name}
    elif isinstance(node, ast.Import | ast.ImportFrom):
        names = {(a.asname or a.name).split(".")[0] for a in node.names}
    else:
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        names = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    for inner, _ in _embedded(node, top_only=True):
        names |= defined_names(inner)
    return names


def defined_names(tree):
    """Top-level names a cell defines."""
    return set().union(*(node_defines(node) for node in tree.body))


def used_names(node):
    """Names a statement uses (including inside its code magics)."""
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    for inner, _ in _embedded(node):
        names |= used_names(inner)
    return names


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
