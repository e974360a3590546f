"""Borrowing found by what runs: a library's attention called inside a check.

The scan (`autograder.scan`) reads what a student wrote; a name built at run
time (`getattr(ops, "dot_" + "product_attention")`, a subclass of
`keras.layers.MultiHeadAttention` fetched by a computed name, a Keras layer
kept where the layer's tracking does not see it) escapes reading. So, when
`autograder.checks` is imported (by a locked lesson cell, before any code of
the student's runs), `install()` wraps what a borrowed answer must call:

* `keras.layers.Layer.__call__`: every layer called while a check runs the
  student's code is noted by the classes of its MRO that a borrowing policy
  names (Keras's attention layers; any keras-hub, keras-nlp or tf-keras
  layer), whatever name it was reached by;
* every method of Keras's attention layer classes (`call`,
  `_compute_attention`, ...), so calling them directly, without
  `__call__`, is noted too;
* the fused attention op, `dot_product_attention`, in every Keras module
  that holds it (`keras.ops`, `keras.src.ops.nn`, the backend's `nn`): any
  name, `getattr` or `operator.attrgetter` that reaches it reaches the
  wrapper;
* an import hook, so that keras-hub's and keras-nlp's layer classes, which a
  student imports later, get the same wrapping when their modules load.

Only calls made while a check observes the student's code count
(`collect()`): the lesson's own comparisons with Keras, outside checks, are
not borrowing. The wrappers keep the wrapped function's name and docstring
and are part of the integrity snapshot (`checks.integrity`), so code that
puts the originals back is reported as tampering. What this cannot see: a
function traced by `tf.function` before the check ran, whose graph then runs
without Python (the instructor guide's threat model says so).
"""

import contextlib
import functools
import importlib.abc
import inspect
import sys
import types

from autograder.checks import taps

__all__ = ["BORROWED_PREFIXES", "borrowed_classes", "collect", "install"]

#: Qualified names (module.qualname) whose use a borrowing policy may refuse.
BORROWED_PREFIXES = (
    "keras.src.layers.attention.",
    "keras.ops.dot_product_attention",
    "keras_hub.",
    "keras_nlp.",
    "tf_keras.",
)
_LIBRARIES = ("keras_hub", "keras_nlp", "tf_keras")
_ATTENTION_CLASSES = (
    "MultiHeadAttention",
    "Attention",
    "AdditiveAttention",
    "GroupedQueryAttention",
)
#: Methods that build or describe a layer; constructing is not calling.
_NOT_CALLS = frozenset(
    {
        "build",
        "get_config",
        "from_config",
        "compute_output_shape",
        "compute_output_spec",
        "get_build_config",
        "build_from_config",
        "compute_mask",
    }
)
FUSED = "keras.ops.dot_product_attention"

_ACTIVE = []  # one list per check observing the student's code
_CLASS_NOTES = {}  # class -> the borrowed names of its MRO
_WRAPPED = set()  # ids of wrappers (never wrap twice)
_INSTALLED = []


def _qualified(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def borrowed_classes(cls):
    """The names in `cls.__mro__` that start with a borrowed prefix."""
    try:
        return _CLASS_NOTES[cls]
    except (KeyError, TypeError):
        pass
    names = tuple(
        name
        for name in (_qualified(c) for c in getattr(cls, "__mro__", ()))
        if name.startswith(BORROWED_PREFIXES)
    )
    with contextlib.suppress(TypeError):
        _CLASS_NOTES[cls] = names
    return names


def _note(names):
    for found in _ACTIVE:
        for name in names:
            if name not in found:
                found.append(name)


@contextlib.contextmanager
def collect():
    """Note the borrowed classes and ops called until the block ends."""
    found = []
    _ACTIVE.append(found)
    try:
        yield found
    finally:
        _ACTIVE.remove(found)


def _same_face(wrapper, function):
    """Give `wrapper` the name, docstring and signature of `function` (Keras
    reads `call`'s signature), without a `__wrapped__` leading back to it."""
    for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
        with contextlib.suppress(AttributeError, TypeError):
            setattr(wrapper, attr, getattr(function, attr))
    with contextlib.suppress(ValueError, TypeError):
        wrapper.__signature__ = inspect.signature(function)
    _WRAPPED.add(id(wrapper))
    return wrapper


def _wrap_method(function, names):
    def method(*args, **kwargs):
        if _ACTIVE:
            _note(names)
        return function(*args, **kwargs)

    return _same_face(method, function)


def _wrap_class(cls):
    """Wrap the plain functions `cls` defines itself."""
    names = borrowed_classes(cls) or (_qualified(cls),)
    for attr, value in list(vars(cls).items()):
        if (
            not isinstance(value, types.FunctionType)
            or id(value) in _WRAPPED
            or attr in _NOT_CALLS
            or (attr.startswith("__") and attr != "__call__")
        ):
            continue
        setattr(cls, attr, _wrap_method(value, names))


def _wrap_layer_call(layer_cls):
    original = layer_cls.__call__
    if id(original) in _WRAPPED:
        return

    def call(self, *args, **kwargs):
        if _ACTIVE:
            names = borrowed_classes(type(self))
            if names:
                _note(names)
        result = original(self, *args, **kwargs)
        if taps._ACTIVE:
            taps.on_layer_call(self, args, kwargs, result)
        return result

    layer_cls.__call__ = _same_face(call, original)


def _wrap_fused(name="dot_product_attention"):
    """Replace the fused op in every loaded Keras module that holds it."""
    originals = {}
    for module_name, module in list(sys.modules.items()):
        if module is None or not module_name.startswith("keras"):
            continue
        value = getattr(module, name, None)
        if callable(value) and id(value) not in _WRAPPED:
            originals.setdefault(id(value), value)
    wrappers = {key: _wrap_method(value, (FUSED,)) for key, value in originals.items()}
    for module_name, module in list(sys.modules.items()):
        if module is None or not module_name.startswith("keras"):
            continue
        value = getattr(module, name, None)
        if value is not None and id(value) in wrappers:
            with contextlib.suppress(AttributeError, TypeError):
                setattr(module, name, wrappers[id(value)])


def _wrap_library_module(module):
    """Wrap the layer classes a keras-hub/keras-nlp module defines."""
    import keras

    for value in list(vars(module).values()):
        if (
            isinstance(value, type)
            and issubclass(value, keras.layers.Layer)
            and value.__module__ == module.__name__
        ):
            _wrap_class(value)


class _LibraryHook(importlib.abc.MetaPathFinder):
    """Wrap keras-hub's (and keras-nlp's, tf-keras's) layers as they load."""

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] not in _LIBRARIES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original = loader.exec_module

        @functools.wraps(original)
        def exec_module(module):
            original(module)
            with contextlib.suppress(Exception):
                _wrap_library_module(module)

        with contextlib.suppress(AttributeError, TypeError):
            loader.exec_module = exec_module
        return spec


def install():
    """Wrap Keras's attention and the fused op; hook keras-hub's imports.

    Idempotent. Does nothing while Keras is not imported: a notebook imports
    Keras before the checks (so this runs before any code of the student's),
    and the grader's own process, which imports the checks to read records,
    never loads Keras for it. `run_check` calls it again before observing.
    """
    if _INSTALLED or "keras" not in sys.modules:
        return
    import keras

    _wrap_layer_call(keras.layers.Layer)
    for name in _ATTENTION_CLASSES:
        cls = getattr(keras.layers, name, None)
        if isinstance(cls, type):
            _wrap_class(cls)
    _wrap_fused()
    for module_name, module in list(sys.modules.items()):
        if module is not None and module_name.split(".")[0] in _LIBRARIES:
            with contextlib.suppress(Exception):
                _wrap_library_module(module)
    hook = _LibraryHook()
    sys.meta_path.insert(0, hook)
    _INSTALLED.append(hook)
