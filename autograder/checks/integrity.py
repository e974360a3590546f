"""Notice, from inside the kernel, that code the checks rely on was replaced.

When `autograder.checks` is imported (by a locked cell, before any student
code runs) it notes the identity of every function in the modules a check or
a grader relies on: `builtins`, NumPy, `keras.ops`, Keras's layer classes,
IPython's traceback display and the checks themselves. Each recorded check
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
    "autograder.checks.layers",
    "autograder.checks.store",
    "autograder.checks.sources",
    "autograder.checks.verdict",
    "autograder.checks.seq2seq",
)
_SNAPSHOT = {}
_CLASS_SNAPSHOT = {}
_SYS = {}


def _classes():
    found = []
    try:
        import keras

        found += [keras.layers.Layer, keras.Model, keras.Variable]
    except Exception:  # pragma: no cover - no keras
        pass
    try:
        import numpy as np

        found += [np.ndarray]
    except Exception:  # pragma: no cover
        pass
    try:
        from IPython.core.interactiveshell import InteractiveShell

        found += [InteractiveShell]
    except Exception:  # pragma: no cover - no IPython
        pass
    return found


def _shell():
    try:
        from IPython import get_ipython

        return get_ipython()
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
    _SYS.update(excepthook=sys.excepthook, displayhook=sys.displayhook)
    shell = _shell()
    _SYS["shell_overrides"] = set(vars(shell)) if shell is not None else set()


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
            if attr not in now or id(now[attr]) != ident:
                found.append(f"{name}.{attr}")
    for cls, attrs in _CLASS_SNAPSHOT.items():
        now = vars(cls)
        for attr, value in attrs.items():
            if now.get(attr, None) is not value:
                found.append(f"{cls.__module__}.{cls.__qualname__}.{attr}")
    for hook in ("excepthook", "displayhook"):
        if hook in _SYS and getattr(sys, hook) is not _SYS[hook]:
            found.append(f"sys.{hook}")
    shell = _shell()
    if shell is not None:
        for attr in ("showtraceback", "_showtraceback", "showsyntaxerror", "run_cell"):
            if attr in vars(shell) and attr not in _SYS.get("shell_overrides", ()):
                found.append(f"get_ipython().{attr}")
    if builtins.__dict__ is not vars(builtins):  # pragma: no cover - paranoia
        found.append("builtins")
    return sorted(set(found))
