"""Checks for Assignment 1 (attention in seq2seq), one per graded exercise.

Each `check_*` takes the student's class (or function) and `cases`:
`"visible"` for the tests students see, `"hidden"` for the instructor's
other shapes, masks and batch sizes. It runs the student's code on every
case (this module: how each exercise is called) and then either decides
(in a notebook) or records the outputs for the grader (while grading); see
`autograder.checks.core.run_check`. The cases, the reference outputs and the
mistakes are not here: they are in `autograder.judge.seq2seq`.
"""

import numpy as np

from autograder.checks.core import check, run_check, student_code
from autograder.checks.layers import LayerProbe, call_layer

__all__ = [
    "check_bahdanau_attention",
    "check_bahdanau_decoder_step",
    "check_concat_score",
    "check_dot_score",
    "check_general_score",
    "check_luong_attention",
    "check_masked_softmax",
]


@check
def check_dot_score(DotScore, cases="visible"):
    """Luong's dot score `s_t . h_i` for every query and key."""
    __tracebackhide__ = True
    run_check("check_dot_score", cases, LayerProbe(DotScore, ["scores"]))


@check
def check_general_score(GeneralScore, cases="visible"):
    """Luong's general score `s_t . (W_a h_i)` with one weight `W_a`."""
    __tracebackhide__ = True
    run_check("check_general_score", cases, LayerProbe(GeneralScore, ["scores"]))


@check
def check_concat_score(ConcatScore, cases="visible"):
    """The concat (additive) score `v_a . tanh(W_1 s_t + W_2 h_i)`."""
    __tracebackhide__ = True
    run_check(
        "check_concat_score",
        cases,
        LayerProbe(ConcatScore, ["scores"], round_trip=["units"]),
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
    run_check(
        "check_luong_attention",
        cases,
        LayerProbe(
            LuongAttention,
            ["probs", "weights"],
            round_trip=["units", "output_dim"],
            call=_luong_call,
        ),
    )


@check
def check_bahdanau_attention(BahdanauAttention, cases="visible"):
    """Bahdanau's additive attention for one decoder step."""
    __tracebackhide__ = True
    run_check(
        "check_bahdanau_attention",
        cases,
        LayerProbe(BahdanauAttention, ["context", "weights"], round_trip=["units"]),
    )


@check
def check_bahdanau_decoder_step(BahdanauDecoderStep, cases="visible"):
    """One decoder step: embed, attend with s_{t-1}, GRU on [x; c], output."""
    __tracebackhide__ = True
    run_check(
        "check_bahdanau_decoder_step",
        cases,
        LayerProbe(
            BahdanauDecoderStep,
            ["logits", "state", "weights"],
            round_trip=["vocab_size", "embedding_dim", "units", "attention_units"],
            weight_label=lambda name: name.replace("_", " "),
        ),
    )
