"""Notice, from inside the kernel, that code the checks rely on was replaced.

When `autograder.checks` is imported (by a locked cell, before any student
code runs) it notes the identity of every function in the modules a check or
a grader relies on: `builtins`, NumPy, `keras.ops`, Keras's layer classes,
IPython's traceback display and the checks themselves (not what ipykernel
itself swaps for every cell: `input`). Each recorded check
lists what has changed since (`changed()`); the grader then marks the test
as an integrity failure.

This is only the messenger. A student who also replaces this module can hide
the change, but cannot change the verdict: that is decided outside the
kernel, on the outputs alone (see `autograder.trusted`).
"""

import builtins
import sys

__all__ = ["changed", "take_snapshot"]

_MODULES = (
    "builtins",
    "numpy",
    "numpy.testing",
    "numpy.linalg",
    "keras",
    "keras.ops",
    "keras.layers",
    "autograder.checks",
    "autograder.checks.core",
    "autograder.checks.crash",
    "autograder.checks.layers",
    "autograder.checks.store",
    "autograder.checks.taps",
    "autograder.checks.sources",
    "autograder.checks.verdict",
    "autograder.checks.watch",
    "autograder.checks.seq2seq",
    "autograder.checks.attention",
    "autograder.checks.transformer",
    "keras.src.ops.nn",
)
# ipykernel itself swaps these for every cell it runs.
_KERNEL_MANAGED = frozenset({"builtins.input", "builtins.getpass"})
_SNAPSHOT = {}
_CLASS_SNAPSHOT = {}
_SYS = {}


def _classes():
    """Classes whose methods the checks call, among those already imported
    (the notebook imports Keras before the checks; the grader never does)."""
    found = []
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "layers"):
        found += [keras.layers.Layer, keras.Model, keras.Variable]
        # the attention layers `checks.watch` wrapped
        for name in ("MultiHeadAttention", "Attention", "AdditiveAttention"):
            if isinstance(getattr(keras.layers, name, None), type):
                found.append(getattr(keras.layers, name))
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        found.append(numpy.ndarray)
    interactive = sys.modules.get("IPython.core.interactiveshell")
    if interactive is not None:
        found.append(interactive.InteractiveShell)
    # The checks' own classes (the source that sends the record, the probes).
    for name in _MODULES:
        module = sys.modules.get(name)
        if module is not None and name.startswith("autograder."):
            found += [
                value
                for value in vars(module).values()
                if isinstance(value, type) and value.__module__ == name
            ]
    return found


def _shell():
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    try:
        return ipython.get_ipython()
    except Exception:  # pragma: no cover
        return None


def take_snapshot():
    """Remember what every watched name refers to now."""
    _SNAPSHOT.clear()
    _CLASS_SNAPSHOT.clear()
    for name in _MODULES:
        module = sys.modules.get(name)
        if module is None:
            continue
        _SNAPSHOT[name] = (
            id(module),
            {k: id(v) for k, v in vars(module).items() if callable(v)},
        )
    for cls in _classes():
        _CLASS_SNAPSHOT[cls] = dict(vars(cls).items())
    shell = _shell()
    _SYS["shell_overrides"] = set(vars(shell)) if shell is not None else set()
    _SYS["meta_path"] = list(sys.meta_path)


def changed():
    """The watched names that now refer to something else, sorted."""
    found = []
    for name, (module_id, functions) in _SNAPSHOT.items():
        module = sys.modules.get(name)
        if module is None or id(module) != module_id:
            found.append(f"sys.modules[{name!r}]")
            continue
        now = vars(module)
        for attr, ident in functions.items():
            if (attr not in now or id(now[attr]) != ident) and (
                f"{name}.{attr}" not in _KERNEL_MANAGED
            ):
                found.append(f"{name}.{attr}")
    for cls, attrs in _CLASS_SNAPSHOT.items():
        now = vars(cls)
        for attr, value in attrs.items():
            if now.get(attr, None) is not value:
                found.append(f"{cls.__module__}.{cls.__qualname__}.{attr}")
    shell = _shell()
    if shell is not None:
        for attr in ("showtraceback", "_showtraceback", "showsyntaxerror", "run_cell"):
            if attr in vars(shell) and attr not in _SYS.get("shell_overrides", ()):
                found.append(f"get_ipython().{attr}")
    hooks = [
        h
        for h in _SYS.get("meta_path", ())
        if type(h).__module__.startswith("autograder.")
    ]
    if any(not any(h is m for m in sys.meta_path) for h in hooks):
        found.append("sys.meta_path")
    if builtins.__dict__ is not vars(builtins):  # pragma: no cover - paranoia
        found.append("builtins")
    return sorted(set(found))
