"""Checks for Assignment 1 (attention in seq2seq), one per graded exercise.

Each `check_*` takes the student's class (or function) and `cases`:
`"visible"` for the tests students see, `"hidden"` for the instructor's
other shapes, masks and batch sizes. It runs the student's code on every
case (this module: how each exercise is called) and then either decides
(in a notebook) or records the outputs for the grader (while grading); see
`autograder.checks.core.run_check`. The cases, the reference outputs and the
mistakes are not here: they are in `autograder.judge.seq2seq`.

**Either orientation of a weight.** The notebook writes row vectors and
Keras kernels, `x W` with `W` of shape `(d_in, d_out)`; the papers write
column vectors, `W x`, with the transpose. An exercise's own matrices
(`W_a`, `W_1`, `W_2`, `W_c`, ...) may be created either way, as long as the
layer computes with the orientation it creates. The checks give each weight
its values in the orientation the layer created: by shape when the matrix
is not square (`checks.layers.inject`), and when it is square (`d_q == d_k`,
where both orientations have the same shape) from the shape the same layer
creates for a wider copy of the case, where they differ (`OrientedProbe`).
A layer that creates one orientation and computes with the other crashes
where the matrix is not square, and where it is, its outputs are those of
the transposed weight, which the judge names. A passing check says which
orientation it found.
"""

import contextlib
import dataclasses

import numpy as np

from autograder.checks.core import check, run_check, student_code
from autograder.checks.layers import LayerProbe, as_tensor, call_layer

__all__ = [
    "check_bahdanau_attention",
    "check_bahdanau_decoder_step",
    "check_concat_score",
    "check_dot_score",
    "check_general_score",
    "check_luong_attention",
    "check_masked_softmax",
]


KERNEL, TRANSPOSED = "kernel", "transposed"


def _matches(variables, name, shape):
    """The student's variables that may hold the exercise's weight `name` of
    `shape`: by name (in either orientation), else by shape."""
    both = {tuple(shape), tuple(shape)[::-1]}
    named = [
        v for v in variables if v.path.split("/")[-1] == name and tuple(v.shape) in both
    ]
    return named or [v for v in variables if tuple(v.shape) in both]


def _orientation(variables, name, shape):
    """KERNEL or TRANSPOSED when every variable that may hold `name` (not
    square) agrees, else None."""
    found = {
        KERNEL if tuple(v.shape) == tuple(shape) else TRANSPOSED
        for v in _matches(variables, name, shape)
    }
    return found.pop() if len(found) == 1 else None


def _square(shape):
    return len(shape) == 2 and shape[0] == shape[1]


class OrientedProbe(LayerProbe):
    """A `LayerProbe` for layers whose own matrices may be stored either way
    round (see the module's docstring).

    Args:
        cls, outputs, **kwargs: as `LayerProbe`.
        free: `{weight name: (input shapes, init) -> shape}`, the exercise's
            matrices that may be transposed, with their shape as the
            exercise gives it (a Keras kernel, `(d_in, d_out)`).
        widen: `(case, extra) -> (init, inputs)`, a copy of the case with
            other sizes (`extra` = 1, 2, ...), where the layer is built only
            to read the shapes it creates.
    """

    def __init__(self, cls, outputs, free, widen, **kwargs):
        super().__init__(cls, outputs, **kwargs)
        self.free = free
        self.widen = widen
        #: `{weight name: {KERNEL, TRANSPOSED}}` found over the cases
        self.found = {}

    def _note(self, name, orientation):
        if orientation is not None:
            self.found.setdefault(name, set()).add(orientation)

    def _wider(self, case):
        """A wider copy of the case where no free matrix is square."""
        for extra in range(1, 8):
            init, inputs = self.widen(case, extra)
            shapes = {k: np.shape(v) for k, v in inputs.items()}
            wanted = {
                n: tuple(shape(shapes, init))
                for n, shape in self.free.items()
                if n in case.weights
            }
            seen = [s for shape in wanted.values() for s in (shape, shape[::-1])]
            if not any(_square(s) for s in wanted.values()) and len(seen) == len(
                set(seen)
            ):
                return init, inputs, wanted
        return None

    def square_orientations(self, case, names):
        """`{name: KERNEL | TRANSPOSED | None}` of the square matrices
        `names`: the orientation the student's layer creates for them in a
        wider copy of the case (built and called there; a crash in that
        call does not matter, only the shapes the build created)."""
        wider = self._wider(case)
        if wider is None:
            return dict.fromkeys(names)
        init, inputs, wanted = wider
        try:
            layer = self.cls(**init)
        except Exception:  # the real case says what is wrong
            return dict.fromkeys(names)
        # a crash in the call does not matter: the build ran before it
        with contextlib.suppress(Exception):
            layer(*[as_tensor(a) for a in inputs.values()], **case.call_kwargs)
        try:
            variables = list(layer.weights)
        except Exception:
            return dict.fromkeys(names)
        return {n: _orientation(variables, n, wanted[n]) for n in names}

    def __call__(self, case, index):
        square = [
            n
            for n in self.free
            if n in case.weights and _square(np.shape(case.weights[n]))
        ]
        if square:
            found = self.square_orientations(case, square)
            for name, orientation in found.items():
                self._note(name, orientation)
            flipped = {n for n, o in found.items() if o == TRANSPOSED}
            if flipped:
                weights = {
                    n: (np.asarray(v).T if n in flipped else v)
                    for n, v in case.weights.items()
                }
                case = dataclasses.replace(case, weights=weights)
        return super().__call__(case, index)

    def build(self, cls, case):
        layer = super().build(cls, case)
        try:
            variables = list(layer.weights)
        except Exception:
            return layer
        for name in self.free:
            shape = np.shape(case.weights.get(name, ()))
            if len(shape) == 2 and not _square(shape):
                self._note(name, _orientation(variables, name, shape))
        return layer

    def note(self):
        """One line saying which orientation each matrix was found in."""
        if not self.found:
            return ""
        parts = []
        for name, found in self.found.items():
            if found == {KERNEL}:
                parts.append(f"`{name}` as a Keras kernel (d_in, d_out), used as x @ W")
            elif found == {TRANSPOSED}:
                parts.append(
                    f"`{name}` transposed, (d_out, d_in) as the papers write it, "
                    "used as W x (x @ W^T)"
                )
            else:
                parts.append(
                    f"`{name}` in one orientation for some sizes, the other for others"
                )
        return (
            "Note: your weights were found stored "
            + "; ".join(parts)
            + ". Either orientation is right if your formula uses the one you "
            "create; the checks gave each weight its values that way."
        )


def _run_oriented(check_name, cases, probe):
    __tracebackhide__ = True
    run_check(check_name, cases, probe)
    note = probe.note()
    if note:
        print(note)


def _with_features(inputs, names, extra):
    """`inputs` with `extra` more features (last axis) on the arrays `names`."""
    out = dict(inputs)
    for name in names:
        a = np.asarray(inputs[name])
        pad = np.full((*a.shape[:-1], extra), 0.5, a.dtype)
        out[name] = np.concatenate([a, pad], axis=-1)
    return out


def _more_units(*keys):
    """A `widen` that adds to the constructor sizes `keys`."""

    def widen(case, extra):
        init = dict(case.init)
        for i, key in enumerate(keys):
            init[key] = init[key] + extra * (i + 1)
        return init, dict(case.inputs)

    return widen


@check
def check_dot_score(DotScore, cases="visible"):
    """Luong's dot score `s_t . h_i` for every query and key."""
    __tracebackhide__ = True
    run_check("check_dot_score", cases, LayerProbe(DotScore, ["scores"]))


@check
def check_general_score(GeneralScore, cases="visible"):
    """Luong's general score `s_t . (h_i W_a)` with one weight `W_a`."""
    __tracebackhide__ = True
    _run_oriented("check_general_score", cases, general_score_probe(GeneralScore))


def general_score_probe(GeneralScore):
    """The probe of `check_general_score`: `W_a` either way round."""
    return OrientedProbe(
        GeneralScore,
        ["scores"],
        free={"W_a": lambda s, init: (s["keys"][-1], s["query"][-1])},
        widen=lambda case, extra: (
            dict(case.init),
            _with_features(case.inputs, ["keys"], extra),
        ),
    )


@check
def check_concat_score(ConcatScore, cases="visible"):
    """The concat (additive) score `tanh(s_t W_1 + h_i W_2) . v_a`."""
    __tracebackhide__ = True
    _run_oriented("check_concat_score", cases, concat_score_probe(ConcatScore))


def concat_score_probe(ConcatScore):
    """The probe of `check_concat_score`: `W_1`, `W_2` either way round."""
    return OrientedProbe(
        ConcatScore,
        ["scores"],
        free={
            "W_1": lambda s, init: (s["query"][-1], init["units"]),
            "W_2": lambda s, init: (s["keys"][-1], init["units"]),
        },
        widen=_more_units("units"),
        round_trip=["units"],
    )


@check
def check_masked_softmax(masked_softmax, cases="visible"):
    """Softmax over keys that gives padded keys zero weight and never NaN."""
    __tracebackhide__ = True

    def probe(case, index):
        import keras

        scores = case.inputs["scores"].astype(np.float32)
        mask = case.inputs.get("mask")
        if case.options.get("probe") == "gradient":
            return {"gradient": _gradient(masked_softmax, scores, mask)}
        tensors = [keras.ops.convert_to_tensor(scores)]
        if mask is not None:
            tensors.append(keras.ops.convert_to_tensor(mask))
        with student_code("`masked_softmax`"):
            return {"weights": masked_softmax(*tensors)}

    run_check("check_masked_softmax", cases, probe)


def _gradient(masked_softmax, scores, mask):
    import tensorflow as tf

    variable = tf.Variable(scores)
    with (
        student_code("`masked_softmax` under tf.GradientTape"),
        tf.GradientTape() as tape,
    ):
        loss = tf.reduce_sum(
            masked_softmax(variable, tf.constant(mask))
            * np.arange(scores.shape[-1], dtype=np.float32)
        )
    gradient = tape.gradient(loss, variable)
    if gradient is None:  # no path from the scores to the loss
        return np.full(scores.shape, np.nan)
    return gradient


def _luong_call(layer, case, kwargs):
    """With scores, without them, or through a functional model."""
    import keras

    args = list(case.inputs.values())
    if not case.options.get("keras_mask"):
        outputs = call_layer(
            layer, args, kwargs, ["probs", "weights"], "`LuongAttention`"
        )
        plain = {k: v for k, v in kwargs.items() if k != "return_attention_scores"}
        outputs["probs (return_attention_scores=False)"] = call_layer(
            layer, args, plain, ["probs"], "`LuongAttention` without scores"
        )["probs"]
        return outputs
    q_in = keras.Input(shape=(None, args[0].shape[-1]))
    v_in = keras.Input(shape=(None, args[1].shape[-1]))
    with student_code("`LuongAttention` called on symbolic Keras tensors"):
        symbolic = layer(
            q_in, keras.layers.Masking(0.0)(v_in), return_attention_scores=True
        )
        model = keras.Model([q_in, v_in], symbolic)
    with student_code("the functional model around `LuongAttention`"):
        probs, weights = model([a.astype(np.float32) for a in args])
    return {"probs": probs, "weights": weights}


@check
def check_luong_attention(LuongAttention, cases="visible"):
    """Luong's dot attention: weights, context, attentional state and output."""
    __tracebackhide__ = True
    _run_oriented(
        "check_luong_attention",
        cases,
        OrientedProbe(
            LuongAttention,
            ["probs", "weights"],
            free={
                "W_c": lambda s, init: (
                    s["query"][-1] + s["values"][-1],
                    init["units"],
                ),
                "W_y": lambda s, init: (init["units"], init["output_dim"]),
            },
            widen=_more_units("units", "output_dim"),
            round_trip=["units", "output_dim"],
            call=_luong_call,
        ),
    )


@check
def check_bahdanau_attention(BahdanauAttention, cases="visible"):
    """Bahdanau's additive attention for one decoder step."""
    __tracebackhide__ = True
    _run_oriented(
        "check_bahdanau_attention",
        cases,
        OrientedProbe(
            BahdanauAttention,
            ["context", "weights"],
            free={
                "W_b": lambda s, init: (s["query"][-1], init["units"]),
                "W_c": lambda s, init: (s["values"][-1], init["units"]),
            },
            widen=_more_units("units"),
            round_trip=["units"],
        ),
    )


@check
def check_bahdanau_decoder_step(BahdanauDecoderStep, cases="visible"):
    """One decoder step: embed, attend with s_{t-1}, GRU on [x; c], output."""
    __tracebackhide__ = True
    _run_oriented(
        "check_bahdanau_decoder_step",
        cases,
        OrientedProbe(
            BahdanauDecoderStep,
            ["logits", "state", "weights"],
            free={
                "W_b": lambda s, init: (s["state"][-1], init["attention_units"]),
                "W_c": lambda s, init: (s["values"][-1], init["attention_units"]),
            },
            widen=_more_units("attention_units"),
            round_trip=["vocab_size", "embedding_dim", "units", "attention_units"],
            weight_label=lambda name: name.replace("_", " "),
        ),
    )
