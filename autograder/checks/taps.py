"""Taps: what a composite layer passed to the student's own parts, and got back.

A composite exercise (Luong attention on the student's `masked_softmax`,
multi-head attention on their `scaled_dot_product_attention`, an encoder
layer on their `FeedForward` and `AddNorm`, a stack on their layers) is
judged on its own wiring (`autograder.judge.wiring`): did each part receive
what the exercise says it receives, and is the result built from what the
parts returned? For that the check records, while the student's layer makes
the call being checked, every call of

* a function of the student's notebook (any public function defined in the
  module the layer's class comes from), by its name;
* a layer the checked layer holds (an attribute, or an item of a list or
  dict attribute; inside the student's own sublayers too), by its attribute
  path: `ffn`, `attention_norm`, `blocks.0`, `encoder.blocks.1.ffn`;

with each argument bound to the callee's parameter names. They join the
case's outputs as `tap:<name>#<k>:<parameter>` and `tap:<name>#<k>:out`
(`out0`, `out1`, ... for a tuple), `k` counting the calls of that part from
0; booleans and numbers as 0-d arrays, `None` and symbolic tensors left out.

Taps only inform the judgment: the student's kernel could write anything
into them, and the judge accepts a composite only if its outputs are exactly
what the exercise's wiring makes of the recorded part outputs, which is the
composite's own exercise done right.
"""

import contextlib
import inspect
import sys
import types

import numpy as np

__all__ = ["PREFIX", "recording", "split"]

PREFIX = "tap:"
#: At most this many calls, and values of at most this many numbers, are
#: recorded per case (a record stays small).
MAX_CALLS = 96
MAX_SIZE = 500_000
_ACTIVE = []


#: The student's parts (functions, and classes of sublayers, in snake case)
#: the last recorded call used: a notebook's check names a part that failed
#: its own check (`core.run_check`).
LAST_PARTS = []


def _snake(name):
    return "".join(
        f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name)
    )


class _Recorder:
    def __init__(self, paths):
        self.paths = paths  # id(layer) -> attribute path
        self.counts = {}
        self.arrays = {}
        self.calls = 0
        self.construction = False

    def add(self, name, bound, output):
        if self.calls >= MAX_CALLS:
            return
        self.calls += 1
        k = self.counts.get(name, 0)
        self.counts[name] = k + 1
        prefix = f"{PREFIX}{name}#{k}:"
        for param, value in bound.items():
            array = _array(value)
            if array is not None:
                self.arrays[prefix + param] = array
        if isinstance(output, tuple | list):
            for i, value in enumerate(output):
                array = _array(value)
                if array is not None:
                    self.arrays[f"{prefix}out{i}"] = array
        else:
            array = _array(output)
            if array is not None:
                self.arrays[prefix + "out"] = array
            mask = _array(getattr(output, "_keras_mask", None))
            if mask is not None:
                self.arrays[prefix + "out_mask"] = mask


def _array(value):
    """A concrete value as a float64 array, or None (symbolic, None, other)."""
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, bool | int | float | np.number | np.bool_):
        return np.asarray(float(value))
    numpy = getattr(value, "numpy", None)
    try:
        if callable(numpy):
            value = numpy()
        elif type(value).__module__.startswith("keras"):
            return None  # a symbolic Keras tensor
        array = np.asarray(value)
    except Exception:
        return None
    if array.dtype == object or array.size > MAX_SIZE:
        return None
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        return None
    return array.astype(np.float64)


def _bind(function, args, kwargs):
    """`{parameter: value}` as `function` receives them."""
    try:
        bound = inspect.signature(function).bind_partial(*args, **kwargs)
    except (TypeError, ValueError):
        return {**{f"arg{i}": a for i, a in enumerate(args)}, **kwargs}
    named = {}
    for param, value in bound.arguments.items():
        kind = bound.signature.parameters[param].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            named.update({f"{param}{i}": v for i, v in enumerate(value)})
        elif kind is inspect.Parameter.VAR_KEYWORD:
            named.update(value)
        else:
            named[param] = value
    return named


def _student_class(cls):
    return not type(cls).__module__.startswith("keras") and not (
        cls.__module__.startswith(("keras", "tensorflow", "tf_keras"))
    )


def _layer_paths(root):
    """`{id(layer): path}` for the layers `root` holds: its attributes
    (lists, tuples and dicts of layers too), and inside the student's own
    sublayers the same again, a few levels deep."""
    import keras

    paths = {}

    def visit(layer, path, depth):
        if depth > 4:
            return
        try:
            attributes = vars(layer)
        except TypeError:
            return
        for name, value in attributes.items():
            if name.startswith("_"):
                continue
            for sub, sub_path in _layers_in(value, f"{path}{name}", keras):
                if id(sub) in paths or sub is root:
                    continue
                paths[id(sub)] = sub_path
                if _student_class(type(sub)):
                    visit(sub, f"{sub_path}.", depth + 1)

    visit(root, "", 0)
    return paths


def _layers_in(value, path, keras, level=0):
    if isinstance(value, keras.layers.Layer):
        yield value, path
    elif level < 2 and isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _layers_in(item, f"{path}.{i}", keras, level + 1)
    elif level < 2 and isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                yield from _layers_in(item, f"{path}.{key}", keras, level + 1)


def on_layer_call(layer, args, kwargs, output):
    """Called by `checks.watch` after every `Layer.__call__`."""
    for recorder in _ACTIVE:
        path = recorder.paths.get(id(layer))
        if path is not None:
            part = _snake(type(layer).__name__)
            if part not in LAST_PARTS and _student_class(type(layer)):
                LAST_PARTS.append(part)
            bound = _bind(layer.call, args, kwargs)
            if "mask" not in bound and args and _takes_mask(layer):
                # Keras passes the first input's own mask when `call` has a
                # `mask` argument that was not given
                bound["mask"] = getattr(args[0], "_keras_mask", None)
            recorder.add(path, bound, output)


def _takes_mask(layer):
    try:
        return "mask" in inspect.signature(layer.call).parameters
    except (TypeError, ValueError):
        return False


def _student_functions(cls):
    """The public functions of the module `cls` comes from (the notebook)."""
    module = sys.modules.get(getattr(cls, "__module__", ""), None)
    if module is None or module.__name__.startswith(("autograder", "keras")):
        return None, {}
    found = {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, types.FunctionType)
        and not name.startswith("_")
        and getattr(value, "__module__", None) == module.__name__
    }
    return module, found


def _tapped(name, function, recorder):
    def tap(*args, **kwargs):
        output = function(*args, **kwargs)
        if name not in LAST_PARTS:
            LAST_PARTS.append(name)
        if recorder in _ACTIVE and (not recorder.construction or _CONSTRUCTING):
            recorder.add(name, _bind(function, args, kwargs), output)
        return output

    tap.__wrapped__ = function
    for attr in ("__name__", "__qualname__", "__doc__"):
        setattr(tap, attr, getattr(function, attr, None))
    return tap


@contextlib.contextmanager
def recording(layer, cls=None, seed=None):
    """Record the calls `layer` makes to its sublayers and to the notebook's
    functions until the block ends; yields the recorder (`.arrays`).

    `layer=None` records the notebook's functions only (while the layer is
    made: `PositionalEmbedding` computes its encoding in `__init__`);
    `seed`, such a recorder, whose calls come first."""
    recorder = _Recorder({} if layer is None else _layer_paths(layer))
    recorder.construction = layer is None
    if seed is not None:
        recorder.counts = dict(seed.counts)
        recorder.arrays = dict(seed.arrays)
        recorder.calls = seed.calls
    LAST_PARTS.clear()
    module, functions = _student_functions(cls or type(layer))
    replaced = {}
    if module is not None:
        namespace = vars(module)
        for name, function in functions.items():
            replaced[name] = _tapped(name, function, recorder)
            namespace[name] = replaced[name]
    _ACTIVE.append(recorder)
    try:
        yield recorder
    finally:
        _ACTIVE.remove(recorder)
        if module is not None:
            namespace = vars(module)
            for name, wrapper in replaced.items():
                if namespace.get(name) is wrapper:
                    namespace[name] = functions[name]


def random_parts(first, second):
    """The parts that, called twice with the same arguments (and not in
    training), returned different outputs: `[name]`."""
    a, b = split(first)[1], split(second)[1]
    random = []
    for name, calls in a.items():
        for k, call in enumerate(calls):
            if k >= len(b.get(name, [])):
                break
            other = b[name][k]
            inputs = [p for p in call if not p.startswith("out")]
            outs = [p for p in call if p.startswith("out")]
            if "training" in call and float(call["training"]) != 0:
                continue
            same_inputs = all(
                p in other
                and np.shape(call[p]) == np.shape(other[p])
                and np.array_equal(call[p], other[p], equal_nan=True)
                for p in inputs
            )
            differ = any(
                p in other
                and np.shape(call[p]) == np.shape(other[p])
                and not np.allclose(call[p], other[p], equal_nan=True)
                for p in outs
            )
            if same_inputs and differ and name not in random:
                random.append(name)
    return random


def eagerly(call):
    """Run `call()` once more, eagerly, while recording, after a compiled
    call (a `tf.function` traces the parts with symbolic tensors, which
    record nothing): its result is not used, only what the parts got."""
    if not _ACTIVE:
        return
    try:
        call()
    except Exception:  # the compiled call is the one that is judged
        return


@contextlib.contextmanager
def constructing():
    """Mark the making of a layer: a `recording(None, ...)` records the
    notebook's functions only then (not in the build's first call, made
    before the case's weights are given)."""
    _CONSTRUCTING.append(True)
    try:
        yield
    finally:
        _CONSTRUCTING.pop()


_CONSTRUCTING = []


def split(got):
    """`(outputs, taps)`: the case's outputs and its taps,
    `{name: [{parameter: array}, ...]}` in call order."""
    outputs, taps = {}, {}
    for key, value in got.items():
        if not key.startswith(PREFIX):
            outputs[key] = value
            continue
        head, _, param = key[len(PREFIX) :].rpartition(":")
        name, _, k = head.rpartition("#")
        calls = taps.setdefault(name, [])
        k = int(k)
        while len(calls) <= k:
            calls.append({})
        calls[k][param] = value
    return outputs, taps
