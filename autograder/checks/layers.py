"""Running a student's Keras layer beside a reference: build, inject, call.

Weights are matched to the student's variables by name first (`W_a`,
`kernel`, ...), then by shape, which the checks keep unique by choosing
distinct sizes. A weight stored transposed (`(units, d)` instead of
`(d, units)`) is accepted and transposed on the way in.
"""

import numpy as np

from autograder.checks.core import CheckFailed, student_code

__all__ = ["WeightSpec", "build_and_inject", "call_layer", "config_round_trip"]


class WeightSpec:
    """An expected weight: the name the exercise gives it, and its value."""

    def __init__(self, name, value, label=None):
        self.name = name
        self.value = np.asarray(value)
        self.label = label or name

    @property
    def shape(self):
        return tuple(self.value.shape)


def _leaf(path):
    return path.split("/")[-1]


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

        by_name = [
            v
            for v in free
            if _leaf(v.path) == spec.name and (fits(v) or fits_transposed(v))
        ]
        candidates = (
            by_name
            or [v for v in free if fits(v)]
            or [v for v in free if fits_transposed(v)]
        )
        if len(candidates) != 1:
            return None, spec, candidates
        chosen = candidates[0]
        if fits(chosen):
            value = spec.value
        elif len(spec.shape) == 1:
            value = spec.value.reshape(tuple(chosen.shape))
        else:
            value = spec.value.T
        plan.append((chosen, value))
        free.remove(chosen)
    return plan, free, None


def _describe_weights(variables):
    if not variables:
        return "none"
    return ", ".join(f"`{v.path}` {tuple(v.shape)}" for v in variables)


def inject(layer, specs):
    """Give `layer` the values of `specs`; raise CheckFailed if they do not fit."""
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
                f"{_describe_weights(variables)}."
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
    import keras

    with student_code(f"{what} when called"):
        converted = [
            keras.ops.convert_to_tensor(
                a.astype(np.float32) if a.dtype.kind == "f" else a
            )
            for a in args
        ]
        outputs = layer(*converted, **kwargs)
    return _structure(outputs, names, what)


def build_and_inject(cls, init, args, kwargs, specs):
    """Construct `cls(**init)`, build it by calling it, give it `specs`."""
    arguments = ", ".join(f"{k}={v!r}" for k, v in init.items())
    with student_code(f"`{cls.__name__}({arguments})`"):
        layer = cls(**init)
    import keras

    if not isinstance(layer, keras.layers.Layer):
        raise CheckFailed(
            f"`{cls.__name__}` should be a subclass of keras.layers.Layer; it is "
            f"a {type(layer).__mro__[1].__name__} subclass."
        )
    with student_code(f"`{cls.__name__}` when first called (building)"):
        converted = [
            keras.ops.convert_to_tensor(
                a.astype(np.float32) if a.dtype.kind == "f" else a
            )
            for a in args
        ]
        layer(*converted, **kwargs)
    inject(layer, specs)
    return layer


def config_round_trip(check_name, layer, required):
    """`from_config(get_config())` must give a layer with the same arguments."""
    try:
        _config_round_trip(layer, required)
    except CheckFailed as failure:
        raise CheckFailed(
            f"{check_name}: get_config round trip failed.\n{failure}"
        ) from None


def _config_round_trip(layer, required):
    cls = type(layer)
    with student_code(f"`{cls.__name__}.get_config()`"):
        config = layer.get_config()
    missing = [k for k in required if k not in config]
    if missing:
        raise CheckFailed(
            f"`get_config()` returned {sorted(config)}, without "
            f"{', '.join(f'`{m}`' for m in missing)}. Keras rebuilds a saved layer "
            "as `cls(**config)`: return `{**super().get_config(), "
            + ", ".join(f"'{m}': self.{m}" for m in missing)
            + "}`."
        )
    with student_code(f"`{cls.__name__}.from_config(config)`"):
        clone = cls.from_config(config)
        again = clone.get_config()
    for key in required:
        if again.get(key) != config[key]:
            raise CheckFailed(
                f"After `from_config(get_config())`, `{key}` is {again.get(key)!r}; "
                f"expected {config[key]!r}. Store constructor arguments on `self`."
            )
