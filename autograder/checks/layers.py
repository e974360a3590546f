"""Running a student's Keras layer beside a reference: build, inject, call.

Weights are matched to the student's variables by name first (`W_a`,
`kernel`, ...), then by shape, which the checks keep unique by choosing
distinct sizes. A weight stored transposed (`(units, d)` instead of
`(d, units)`) is accepted and transposed on the way in.
"""

import contextlib

import numpy as np

from autograder.checks.core import ROUND_TRIP, CheckFailed, student_code

__all__ = [
    "BORROWED_MODULES",
    "LayerProbe",
    "WeightSpec",
    "as_tensor",
    "borrowed_message",
    "build_and_inject",
    "call_layer",
    "collect_sublayers",
    "config_round_trip",
    "inject",
    "inject_nested",
]

# Layers a student may not delegate an attention exercise to: Keras's own
# attention layers (and its fused attention op) and every keras-hub /
# keras-nlp / tf-keras layer. The "blocks" policy (Assignment 3) allows
# Keras's attention and refuses the rest.
BORROWED_MODULES = (
    "keras.src.layers.attention.",
    "keras.ops.dot_product_attention",
    "keras_hub.",
    "keras_nlp.",
    "tf_keras.",
)
_SUBLAYERS = []


@contextlib.contextmanager
def collect_sublayers():
    """Collect the borrowed classes of every layer built meanwhile and of the
    layers it holds (tracked or not), with their base classes, and the
    borrowed layers and ops called meanwhile (`watch.collect`)."""
    from autograder.checks import watch

    found = []
    _SUBLAYERS.append(found)
    try:
        with watch.collect() as called:
            yield found
    finally:
        _SUBLAYERS.remove(found)
    for name in called:
        if name not in found:
            found.append(name)


def _held_layers(layer, depth=0, seen=None):
    """The layer, its tracked sublayers, and Keras layers kept in its
    attributes where Keras's tracking does not see them (lists, tuples and
    dicts included, a few levels deep)."""
    import keras

    seen = set() if seen is None else seen
    if id(layer) in seen or depth > 4:
        return
    seen.add(id(layer))
    yield layer
    try:
        inner = list(layer._flatten_layers(include_self=False, recursive=True))
    except Exception:  # not a Keras 3 layer
        inner = []
    try:
        attributes = list(vars(layer).values())
    except TypeError:
        attributes = []
    stack = [(value, 0) for value in attributes]
    while stack:
        value, level = stack.pop()
        if isinstance(value, keras.layers.Layer):
            inner.append(value)
        elif level < 3 and isinstance(value, list | tuple | set | frozenset):
            stack.extend((v, level + 1) for v in value)
        elif level < 3 and isinstance(value, dict):
            stack.extend((v, level + 1) for v in value.values())
    for sub in inner:
        yield from _held_layers(sub, depth + 1, seen)


def _note_sublayers(layer):
    if not _SUBLAYERS:
        return
    from autograder.checks import watch

    for held in _held_layers(layer):
        for name in watch.borrowed_classes(type(held)):
            for found in _SUBLAYERS:
                if name not in found:
                    found.append(name)


def borrowed_message(check_name, sublayers, policy="attention"):
    """A message if the layer is built from, or called, Keras's or keras-hub's
    attention (policy "attention"), or keras-hub's blocks (policy "blocks")."""
    if not policy:
        return None
    modules = BORROWED_MODULES if policy == "attention" else BORROWED_MODULES[2:]
    borrowed = [s for s in sublayers if s.startswith(modules)]
    if not borrowed:
        return None
    names = ", ".join(
        f"`{b.rsplit('.', 1)[-1]}` ({b.split('.')[0]})" for b in dict.fromkeys(borrowed)
    )
    return (
        f"{check_name}: your layer contains or calls {names}. This exercise is to "
        "write the attention yourself; a layer that delegates to a library's "
        "attention scores no points for it. Build it from weights and keras.ops."
        if policy == "attention"
        else f"{check_name}: your layer contains or calls {names}. This exercise is "
        "to build the block yourself from keras.layers (MultiHeadAttention, Dense, "
        "LayerNormalization, ...); keras-hub's ready-made blocks score no points "
        "for it."
    )


def as_tensor(value):
    """A case's array as the layer gets it: floats as float32, ints as they are."""
    import keras

    if value.dtype.kind == "f":
        value = value.astype(np.float32)
    return keras.ops.convert_to_tensor(value)


class WeightSpec:
    """An expected weight: the name the exercise gives it, and its value.

    `aliases` are other path endings that name it (`"query/kernel"` for a
    Dense or EinsumDense sublayer called `query`).
    """

    def __init__(self, name, value, label=None, aliases=()):
        self.name = name
        self.value = np.asarray(value)
        self.label = label or name
        self.aliases = tuple(aliases)

    @property
    def shape(self):
        return tuple(self.value.shape)


def _leaf(path):
    return path.split("/")[-1]


def _named(variable, spec):
    path = variable.path
    return _leaf(path) == spec.name or any(
        path == a or path.endswith("/" + a) for a in spec.aliases
    )


def _reshaped(shape, spec_shape):
    """Whether a weight kept with its heads merged holds the same values:
    `(d, h, k)` as `(d, h*k)`, `(h, v, o)` as `(h*v, o)`, `(h, k)` as `(h*k,)`."""
    if len(spec_shape) == 3:
        a, b, c = spec_shape
        return shape in ((a, b * c), (a * b, c))
    if len(spec_shape) == 2:
        return shape == (spec_shape[0] * spec_shape[1],)
    return False


def _plan_assignment(variables, specs):
    """Pair every spec with one student variable; return [(variable, value)]."""
    free = list(variables)
    plan = []
    for spec in specs:

        def fits(v, spec=spec):
            return tuple(v.shape) == spec.shape

        def fits_transposed(v, spec=spec):
            shape = tuple(v.shape)
            if len(spec.shape) == 1:  # a vector kept as a (n, 1) or (1, n) kernel
                return shape in ((spec.shape[0], 1), (1, spec.shape[0]))
            return len(spec.shape) == 2 and shape == spec.shape[::-1]

        def fits_reshaped(v, spec=spec):
            return _reshaped(tuple(v.shape), spec.shape)

        def fits_any(v, spec=spec):
            return fits(v) or fits_transposed(v) or fits_reshaped(v)

        by_name = [v for v in free if _named(v, spec) and fits_any(v)]
        candidates = (
            by_name
            or [v for v in free if fits(v)]
            or [v for v in free if fits_transposed(v)]
            or [v for v in free if fits_reshaped(v)]
        )
        if len(candidates) != 1:
            return None, spec, candidates
        chosen = candidates[0]
        if fits(chosen):
            value = spec.value
        elif fits_reshaped(chosen) or len(spec.shape) == 1:
            value = spec.value.reshape(tuple(chosen.shape))
        else:
            value = spec.value.T
        plan.append((chosen, value))
        free = [v for v in free if v is not chosen]
    return plan, free, None


def _describe_weights(variables):
    if not variables:
        return "none"
    return ", ".join(f"`{v.path}` {tuple(v.shape)}" for v in variables)


def _sublayer(layer, path):
    """`layer.blocks[0].self_attention` for the path `"blocks.0.self_attention"`."""
    found = layer
    walked = type(layer).__name__
    for part in path.split("."):
        if part.isdigit():
            if not isinstance(found, list | tuple) or int(part) >= len(found):
                raise CheckFailed(
                    f"`{walked}` should be a list of at least {int(part) + 1} layers; "
                    f"it is {type(found).__name__}"
                    + (f" of {len(found)}" if isinstance(found, list | tuple) else "")
                    + "."
                )
            found = found[int(part)]
            walked = f"{walked}[{part}]"
            continue
        if not hasattr(found, part):
            raise CheckFailed(
                f"`{walked}` has no attribute `{part}`. The exercise names the "
                f"sublayers (the checks give each its weights by that name): "
                f"create it in `__init__` as `self.{part} = ...`."
            )
        found = getattr(found, part)
        walked = f"{walked}.{part}"
    return found, walked


def inject_nested(layer, specs):
    """Weights named `"<sublayer path>:<weight>"`, given sublayer by sublayer.

    Each sublayer is matched as `inject` matches a layer (by name, shape or
    layout); every weight of `layer` must belong to one of those sublayers.
    """
    groups = {}
    for spec in specs:
        path, name = spec.name.split(":", 1)
        aliases = (name,) if "/" in name else ()
        groups.setdefault(path, []).append(
            WeightSpec(name, spec.value, label=f"{path}:{name}", aliases=aliases)
        )
    covered = set()
    for path, group in groups.items():
        sublayer, walked = _sublayer(layer, path)
        if not hasattr(sublayer, "weights"):
            raise CheckFailed(f"`{walked}` is not a Keras layer.")
        try:
            inject(sublayer, group)
        except CheckFailed as failure:
            raise CheckFailed(
                f"In `{walked}`: {failure.message}{_own_part(sublayer)}"
            ) from None
        covered.update(id(v) for v in sublayer.weights)
    extra = [v for v in layer.weights if id(v) not in covered]
    if extra:
        raise CheckFailed(
            f"Your layer has weights outside the sublayers the exercise names "
            f"({', '.join(f'`{p}`' for p in groups)}): {_describe_weights(extra)}."
        )


def _size_names():
    """`{size: [what it is]}` for the running case: its constructor
    arguments, the axes of its inputs, and quotients and sums of two
    constructor arguments (`d_model // num_heads`)."""
    from autograder.checks.core import _CASE

    case = _CASE.get()
    if case is None:
        return {}
    named = {}

    def add(size, what):
        named.setdefault(int(size), [])
        if what not in named[int(size)]:
            named[int(size)].append(what)

    ints = {
        k: int(v)
        for k, v in case.init.items()
        if isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0
    }
    for k, v in ints.items():
        add(v, k)
    for name, value in case.inputs.items():
        shape = np.shape(value)
        for i, d in enumerate(shape):
            where = "last axis" if i == len(shape) - 1 else f"axis {i}"
            add(d, f"the {where} of `{name}`")
    for a, x in ints.items():
        for b, y in ints.items():
            if a != b and y and x % y == 0 and x // y > 1:
                add(x // y, f"{a} // {b}")
    return named


def _sizes_story(spec, variables):
    """Say what the sizes of the weights that come closest to `spec` are
    (`8 is d_model; the exercise's 4 is d_model // num_heads`)."""
    try:
        named = _size_names()
    except Exception:  # an explanation must never hide the failure
        return ""
    if not named:
        return ""
    same_rank = [v for v in variables if len(v.shape) == len(spec.shape)]
    closest = [v for v in same_rank if _named(v, spec)] or [
        v for v in same_rank if _leaf(v.path) == _leaf(spec.name)
    ]
    if not closest and len(same_rank) == 1:
        closest = same_rank
    gru = [
        v
        for v in variables
        if len(spec.shape) == 2
        and spec.shape[0] == 2
        and tuple(v.shape) == (spec.shape[1],)
        and _leaf(v.path) == "bias"
    ]
    if gru:
        return (
            f"\nObserved: your `{gru[0].path}` is {tuple(gru[0].shape)} where "
            f"{spec.shape} is expected: a GRUCell built with `reset_after=False` "
            "keeps one bias row; Keras's default GRUCell (`reset_after=True`, as "
            "the exercise uses) keeps two."
        )
    if len(closest) != 1:
        return ""
    got = tuple(int(d) for d in closest[0].shape)
    lines = []
    for axis, (mine, theirs) in enumerate(zip(got, spec.shape, strict=True)):
        if mine == theirs:
            continue
        mine_is = named.get(mine, [])
        theirs_is = named.get(theirs, [])
        if not mine_is or not theirs_is:
            continue
        line = (
            f"Axis {axis} of your `{closest[0].path}` has {mine} ({mine_is[0]}); "
            f"the exercise's {spec.label} has {theirs} ({theirs_is[0]})"
        )
        axes = [w for w in mine_is if w.startswith("the axis")]
        if axes and any(w.startswith("the last axis") for w in theirs_is):
            line += (
                f": your layer works on {axes[0]}, the exercise's on the last "
                "axis (the features, axis=-1)"
            )
        lines.append(line + ".")
    return "".join(f"\nObserved: {line}" for line in lines)


def _own_part(sublayer):
    """A note when the sublayer that does not take its weights is one of the
    student's own classes (an earlier exercise): the layer cannot be judged
    until it does."""
    cls = type(sublayer)
    if cls.__module__.startswith(("keras", "tensorflow", "tf_keras", "autograder")):
        return ""
    from autograder.checks.taps import _snake

    name = cls.__name__
    snake = _snake(name)
    return (
        f"\nThat sublayer is your `{name}`: this layer cannot be judged until "
        f"it takes the exercise's weights. If check_{snake} fails too, fix "
        "that exercise first."
    )


def _widths_story(specs, variables):
    """The matrices' widths in order, when the student's are the exercise's
    in another order (a layer's units swapped with another's)."""
    try:
        mine = [int(v.shape[-1]) for v in variables if len(v.shape) == 2]
        theirs = [int(s.shape[-1]) for s in specs if len(s.shape) == 2]
        named = _size_names()
    except Exception:  # an explanation must never hide the failure
        return ""
    if len(mine) != len(theirs) or len(mine) < 2:
        return ""
    if sorted(mine) != sorted(theirs) or mine == theirs:
        return ""

    def said(sizes):
        return ", ".join(
            f"{d} ({named[d][0]})" if named.get(d) else str(d) for d in sizes
        )

    return (
        f"\nObserved: your layer's matrices have the widths (units) {said(mine)} "
        f"in that order; the exercise's have {said(theirs)}: the same widths, "
        "swapped. Check the units of each Dense layer."
    )


def inject(layer, specs):
    """Give `layer` the values of `specs`; raise CheckFailed if they do not fit."""
    if any(":" in spec.name for spec in specs):
        return inject_nested(layer, specs)
    variables = list(layer.weights)
    expected = ", ".join(f"{s.label} {s.shape}" for s in specs) or "none"
    if not specs and variables:
        raise CheckFailed(
            "This formula has no weights, but your layer has "
            f"{_describe_weights(variables)}."
        )
    if not specs:
        return
    if not variables:
        raise CheckFailed(
            "Your layer has no weights after it was called. Expected weights: "
            f"{expected}. Create them in `build()` with `self.add_weight(...)` "
            "(or use Keras sublayers)."
        )
    plan, rest, candidates = _plan_assignment(variables, specs)
    if plan is None:
        spec = rest
        if not candidates:
            raise CheckFailed(
                f"Could not find the weight {spec.label} of shape {spec.shape} in "
                f"your layer. Expected weights: {expected}. Your layer has: "
                f"{_describe_weights(variables)}.{_sizes_story(spec, variables)}"
                f"{_widths_story(specs, variables)}"
            )
        raise CheckFailed(
            f"Cannot tell which of your weights is {spec.label} {spec.shape}: "
            f"{_describe_weights(candidates)} all fit. Give it the name "
            f"`{spec.name}` (`self.add_weight(name='{spec.name}', ...)`)."
        )
    extra = [v for v in rest if "bias" not in _leaf(v.path)]
    if extra:
        raise CheckFailed(
            f"Your layer has weights the formula does not use: "
            f"{_describe_weights(extra)}. Expected exactly: {expected}."
        )
    for variable in rest:  # an extra bias the formula does not have: set to 0
        variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
    for variable, value in plan:
        variable.assign(value.astype(variable.dtype))


def _structure(outputs, names, what):
    """Name the parts of a layer's output: a tensor, or a tuple of them."""
    if len(names) == 1:
        if isinstance(outputs, tuple | list):
            raise CheckFailed(
                f"{what} returned a {type(outputs).__name__} of {len(outputs)} "
                f"items; expected one tensor ({names[0]})."
            )
        return {names[0]: outputs}
    if not isinstance(outputs, tuple | list) or len(outputs) != len(names):
        got = (
            f"a {type(outputs).__name__} of {len(outputs)} items"
            if isinstance(outputs, tuple | list)
            else "a single tensor"
        )
        raise CheckFailed(
            f"{what} returned {got}; expected a tuple ({', '.join(names)})."
        )
    return dict(zip(names, outputs, strict=True))


def call_layer(layer, args, kwargs, names, what="Your layer"):
    """Call the layer on float32 copies of `args`; return named outputs."""

    with student_code(f"{what} when called"):
        converted = [as_tensor(a) for a in args]
        outputs = layer(*converted, **kwargs)
    return _structure(outputs, names, what)


def build_eagerly(layer):
    """Let the first (eager) call build `layer`, skipping Keras's symbolic one.

    Keras builds a layer that has no `build` method of its own by tracing its
    `call` symbolically before running it (for a Transformer, three quarters
    of a check's time). Called eagerly, as the checks call, the call itself
    creates the state (Keras's own fallback when that trace fails), so such
    layers are marked built first; a layer with its own `build` is built by
    it, as Keras would."""
    from keras.src.utils.python_utils import is_default

    for sub in layer._flatten_layers(include_self=True, recursive=True):
        if not sub.built and is_default(sub.build):
            sub.built = True


def build_and_inject(cls, init, args, kwargs, specs):
    """Construct `cls(**init)`, build it by calling it, give it `specs`."""
    from autograder.checks import taps

    arguments = ", ".join(f"{k}={v!r}" for k, v in init.items())
    with student_code(f"`{cls.__name__}({arguments})`"), taps.constructing():
        layer = cls(**init)
    import keras

    if not isinstance(layer, keras.layers.Layer):
        raise CheckFailed(
            f"`{cls.__name__}` should be a subclass of keras.layers.Layer; it is "
            f"a {type(layer).__mro__[1].__name__} subclass."
        )
    try:
        with student_code(f"`{cls.__name__}` when first called (building)"):
            converted = [as_tensor(a) for a in args]
            build_eagerly(layer)
            layer(*converted, **kwargs)
        _note_sublayers(layer)
        inject(layer, specs)
    except CheckFailed as failure:
        raise CheckFailed(
            failure.message + parts_note(layer, failure.message)
        ) from None
    return layer


def own_parts(layer):
    """`[(attribute, class name)]` of the sublayers of `layer` that are the
    student's own classes (earlier exercises), one level down."""
    import keras

    found = []
    try:
        attributes = vars(layer)
    except TypeError:
        return found
    for name, value in attributes.items():
        items = value if isinstance(value, list | tuple) else [value]
        for item in items:
            own = isinstance(item, keras.layers.Layer) and not type(
                item
            ).__module__.startswith(("keras", "tensorflow", "tf_keras", "autograder"))
            if own and (name, type(item).__name__) not in found:
                found.append((name, type(item).__name__))
    return found


def parts_note(layer, message=""):
    """A layer that fails to run or to take its weights, built on the
    student's own parts: name them (a part that returns the wrong shape
    makes the layer fail where it uses the result)."""
    if "inside your" in message or "That sublayer is your" in message:
        return ""
    parts = list(dict.fromkeys(cls for _, cls in own_parts(layer)))
    if not parts:
        return ""
    from autograder.checks.taps import _snake

    names = ", ".join(f"`{p}` (check_{_snake(p)})" for p in parts)
    return (
        f"\nThis layer builds on your {names}: a part that returns the wrong "
        "shape makes this layer fail where it uses the result, so it cannot be "
        "judged until its parts are right. If a part's check fails, fix that "
        "exercise first."
    )


class LayerProbe:
    """Run a student's layer class on a case: build, inject, call.

    Args:
        cls: the student's class.
        outputs: names of the call's outputs, in order.
        round_trip: constructor arguments `get_config()` must return; on the
            first case the layer is rebuilt with `from_config(get_config())`,
            given the same weights and called again (outputs recorded with
            the suffix " after from_config").
        call: optional `(layer, case, kwargs) -> {name: tensor}` replacing a
            plain call (for example, through a functional model).
        weight_label: optional `name -> label` for messages.
        aliases: optional `{weight name: (path endings, ...)}`.
    """

    def __init__(
        self, cls, outputs, round_trip=(), call=None, weight_label=None, aliases=None
    ):
        self.cls = cls
        self.outputs = outputs
        self.round_trip = list(round_trip)
        self.call = call
        self.weight_label = weight_label or (lambda name: name)
        self.aliases = aliases or {}

    def specs(self, case):
        return [
            WeightSpec(
                n, v, label=self.weight_label(n), aliases=self.aliases.get(n, ())
            )
            for n, v in case.weights.items()
        ]

    def build(self, cls, case):
        args = list(case.inputs.values())
        if not case.weights:
            from autograder.checks import taps

            arguments = ", ".join(f"{k}={v!r}" for k, v in case.init.items())
            with student_code(f"`{cls.__name__}({arguments})`"), taps.constructing():
                layer = cls(**case.init)
            _note_sublayers(layer)
            return layer
        return build_and_inject(
            cls, case.init, args, case.call_kwargs, self.specs(case)
        )

    def run(self, layer, case):
        if self.call is not None:
            return self.call(layer, case, dict(case.call_kwargs))
        return call_layer(
            layer,
            list(case.inputs.values()),
            case.call_kwargs,
            self.outputs,
            f"`{self.cls.__name__}`",
        )

    def __call__(self, case, index):
        from autograder.checks import taps

        with taps.recording(None, self.cls) as made:
            layer = self.build(self.cls, case)
        with taps.recording(layer, self.cls, seed=made) as recorder:
            outputs = dict(self.run(layer, case))
        if index == 1:
            with taps.recording(layer, self.cls) as again:
                second = self.run(layer, case)
            # a part of the student's own that is random by itself is that
            # part's mistake: the wiring judge names it
            if not taps.random_parts(recorder.arrays, again.arrays):
                same_again(self.cls.__name__, outputs, second)
        outputs.update(recorder.arrays)
        if index == 1 and self.round_trip:
            config_round_trip(self.cls.__name__, layer, self.round_trip)
            with student_code(f"`{self.cls.__name__}.from_config(get_config())`"):
                clone_cls = type(layer)
                clone = clone_cls.from_config(layer.get_config())
            if case.weights:
                with student_code("The rebuilt layer when first called (building)"):
                    build_eagerly(clone)
                    self.run(clone, case)
                inject(clone, self.specs(case))
            for name, value in self.run(clone, case).items():
                outputs[f"{name}{ROUND_TRIP}"] = value
        return outputs


def same_again(name, first, second):
    """Two identical calls must give the same outputs: a layer that is
    random at inference (dropout applied with `training=True`, or always)
    is named from that alone."""
    for key, value in first.items():
        try:
            a = np.asarray(_numpy(value), np.float64)
            b = np.asarray(_numpy(second.get(key)), np.float64)
        except (TypeError, ValueError):
            continue  # not an array: the comparison with the reference says so
        if a.shape != b.shape or not np.isfinite(a).all():
            continue
        gap = float(np.max(np.abs(a - b))) if a.size else 0.0
        if gap > 1e-6 * (1 + float(np.max(np.abs(a)))):
            raise CheckFailed(
                f"Two identical calls of `{name}` gave different outputs "
                f"(`{key}` differs by up to {gap:.3g}): the layer is random at "
                "inference.\nHint: Dropout must be off unless `training` is "
                "True: call your Dropout layers with `training=training` (never "
                "`training=True`) and apply no other randomness in `call`."
            )


def _numpy(value):
    if hasattr(value, "numpy") and callable(value.numpy):
        return value.numpy()
    return value


def config_round_trip(check_name, layer, required):
    """`get_config()` must hold the constructor arguments `required`.

    Whether `from_config` rebuilds the same layer is judged on outputs: the
    first case of a check calls the rebuilt layer too (`LayerProbe`).
    """
    cls = type(layer)
    with student_code(f"`{cls.__name__}.get_config()`"):
        config = layer.get_config()
    missing = [k for k in required if k not in config]
    if missing:
        raise CheckFailed(
            f"{check_name}: get_config round trip failed.\n"
            f"`get_config()` returned {sorted(config)}, without "
            f"{', '.join(f'`{m}`' for m in missing)}. Keras rebuilds a saved layer "
            "as `cls(**config)`: return `{**super().get_config(), "
            + ", ".join(f"'{m}': self.{m}" for m in missing)
            + "}`."
        )
