"""Assignment 1's cases, reference outputs and mistakes (trusted side).

The reference outputs come from `autograder.reference.seq2seq` run in
float64 with the case's weights; the mistake variants from the NumPy
formulas in `seq2seq_math`, which the package's tests prove equal to the
reference when no mistake is built in.
"""

import numpy as np

from autograder.checks.core import Case, fixed_array, fixed_literal
from autograder.checks.layers import WeightSpec, inject
from autograder.judge import Spec, register
from autograder.judge import seq2seq_math as M


def _mask(rows):
    return np.array(rows, dtype=bool)


def _weights(shapes, salt):
    """Fixed weights scaled like Glorot, so activations stay O(1)."""
    out = {}
    for i, (name, shape) in enumerate(shapes.items()):
        fan_in = shape[0] if len(shape) > 1 else 1
        out[name] = fixed_array(
            shape, salt * 31 + i, scale=1.0 / np.sqrt(max(fan_in, 1)) * 1.5
        )
    return out


def _run_reference(cls, case, names):
    """Run a reference layer in float64 with the case's weights."""
    import keras

    from autograder.reference import seq2seq as R

    layer = getattr(R, cls)(**case.init, dtype="float64")
    tensors = [keras.ops.convert_to_tensor(a) for a in case.inputs.values()]
    kwargs = dict(case.call_kwargs)
    layer(*tensors, **kwargs)
    inject(layer, [WeightSpec(n, v) for n, v in case.weights.items()])
    outputs = layer(*tensors, **kwargs)
    outputs = outputs if isinstance(outputs, tuple | list) else (outputs,)
    return {
        n: keras.ops.convert_to_numpy(o).astype(np.float64)
        for n, o in zip(names, outputs, strict=True)
    }


# ------------------------------------------------------------------ scores

_TRANSPOSED = (
    "transposed",
    "Your scores are transposed: they should have shape (batch, queries, keys), "
    "one row per query. Multiply the queries by the *transposed keys*.",
)


def _score_cases(sizes, salt, weight_shapes, init, weight_salt):
    cases = []
    for i, (b, tq, tk, dq, dk) in enumerate(sizes):
        q = fixed_array((b, tq, dq), salt + 10 * i)
        k = fixed_array((b, tk, dk), salt + 10 * i + 1)
        shapes = weight_shapes(dq, dk, init)
        square = [n for n, s in shapes.items() if len(s) == 2 and s[0] == s[1]]
        title = f"scores for {b} sequences, {tq} queries and {tk} keys"
        if square:
            names = " and ".join(f"`{n}`" for n in square)
            title += f" ({names} square: stored either way round)"
        cases.append(
            Case(
                title=title,
                inputs={"query": q, "keys": k},
                init=dict(init),
                weights=_weights(shapes, weight_salt + b),
            )
        )
    return cases


def _score_spec(
    name, ref, visible, hidden, shapes, formula, mistakes, init=None, weight_salt=0
):
    init = init or {}

    def variant(mistake):
        return lambda case: {
            "scores": formula(
                case.inputs["query"],
                case.inputs["keys"],
                *case.weights.values(),
                mistake=mistake,
            )
        }

    return register(
        Spec(
            name=name,
            visible=lambda: _score_cases(*visible, shapes, init, weight_salt),
            hidden=lambda: _score_cases(*hidden, shapes, init, weight_salt),
            reference=lambda case: _run_reference(ref, case, ["scores"]),
            formula=variant(None),
            mistakes=[(m, hint, variant(m)) for m, hint in mistakes],
            generic_hint="Compare your formula with the exercise's, one term at a "
            "time.",
            round_trip=bool(init),
        )
    )


_score_spec(
    "check_dot_score",
    "DotScore",
    ([(2, 3, 5, 4, 4), (1, 1, 6, 4, 4)], 1),
    ([(3, 4, 2, 8, 8), (5, 7, 7, 3, 3), (1, 2, 9, 16, 16)], 2),
    lambda dq, dk, init: {},
    M.dot_score,
    [
        (
            "scaled",
            "Your scores are divided by sqrt(d): that is the scaled "
            "dot product of the Transformer. Luong's dot score has no scaling.",
        ),
        _TRANSPOSED,
    ],
)
_WEIGHT_TRANSPOSED = (
    "weight_transposed",
    "Your scores are those of a square weight used the other way round. The "
    "checks give each weight its values in the orientation your layer creates "
    "(read where the sizes differ): a Keras kernel (d_in, d_out) used as x @ W, "
    "or the papers' (d_out, d_in) used as W x. Your layer creates one and "
    "computes with the other; where d_q != d_k that product does not even run. "
    "Make the shape you create and the product you compute agree.",
)
_score_spec(
    "check_general_score",
    "GeneralScore",
    ([(2, 3, 5, 4, 6), (1, 2, 4, 3, 3)], 3),
    ([(3, 4, 2, 5, 3), (1, 1, 7, 2, 9), (2, 3, 3, 4, 4)], 4),
    lambda dq, dk, init: {"W_a": (dk, dq)},
    M.general_score,
    [_TRANSPOSED, _WEIGHT_TRANSPOSED],
    weight_salt=5,
)
_score_spec(
    "check_concat_score",
    "ConcatScore",
    ([(2, 3, 5, 4, 6), (1, 2, 4, 3, 5)], 6),
    ([(3, 4, 2, 5, 2), (1, 1, 7, 2, 9), (2, 2, 3, 6, 3)], 7),
    lambda dq, dk, init: {
        "W_1": (dq, init["units"]),
        "W_2": (dk, init["units"]),
        "v_a": (init["units"],),
    },
    M.concat_score,
    [
        ("no_tanh", "The tanh is missing: the score is tanh(s W_1 + h W_2) . v_a."),
        ("no_v", "Your scores sum the tanh units without weighting them by v_a."),
        _TRANSPOSED,
        _WEIGHT_TRANSPOSED,
    ],
    init={"units": 3},
    weight_salt=8,
)


# ----------------------------------------------------------- masked softmax


def _softmax_cases(specs, salt):
    cases = []
    for i, (title, shape, mask, scale) in enumerate(specs):
        inputs = {"scores": fixed_array(shape, salt + i, scale=2.0) * scale}
        if mask is not None:
            inputs["mask"] = np.asarray(mask, bool)
        cases.append(Case(title=title, inputs=inputs))
    return cases


def _softmax_visible():
    return _softmax_cases(
        [
            ("no mask: a plain softmax over the last axis", (2, 3, 4), None, 1),
            (
                "a padding mask (batch, keys): padded keys get zero weight",
                (2, 3, 5),
                _mask([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]),
                1,
            ),
            (
                "a sequence whose keys are all padding: zeros, no NaN",
                (2, 2, 3),
                _mask([[0, 0, 0], [1, 0, 1]]),
                1,
            ),
        ],
        salt=20,
    )


def _softmax_hidden():
    cases = _softmax_cases(
        [
            (
                "a full (batch, queries, keys) mask",
                (2, 3, 4),
                np.tril(np.ones((3, 4), bool))[None].repeat(2, 0),
                1,
            ),
            (
                "one query, many keys, batch of 4",
                (4, 1, 9),
                _mask([[1] * 9, [1] * 4 + [0] * 5, [1] + [0] * 8, [0] * 9]),
                1,
            ),
            (
                "large scores (overflow check)",
                (1, 2, 6),
                _mask([[1, 1, 1, 1, 0, 0]]),
                500.0,
            ),
        ],
        salt=30,
    )
    cases.append(
        Case(
            title="the gradient through a row whose keys are all padding (finite)",
            inputs={
                "scores": fixed_array((2, 2, 3), 40),
                "mask": _mask([[0, 0, 0], [1, 1, 0]]),
            },
            options={"probe": "gradient"},
            notes=("loss = sum(masked_softmax(scores, mask) * [0, 1, 2])",),
        )
    )
    return cases


def _softmax_reference(case):
    import tensorflow as tf

    from autograder.reference import seq2seq as R

    scores = case.inputs["scores"]
    mask = case.inputs.get("mask")
    if case.options.get("probe") == "gradient":
        variable = tf.Variable(scores.astype(np.float64))
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(
                R.masked_softmax(variable, tf.constant(mask))
                * np.arange(scores.shape[-1], dtype=np.float64)
            )
        return {"gradient": tape.gradient(loss, variable).numpy()}
    return {"weights": M.masked_softmax(scores, mask)}


def _softmax_variant(mistake):
    def outputs(case):
        if case.options.get("probe") == "gradient":
            raise ValueError("no variant for gradients")
        return {
            "weights": M.masked_softmax(
                case.inputs["scores"], case.inputs.get("mask"), mistake
            )
        }

    return outputs


register(
    Spec(
        name="check_masked_softmax",
        visible=_softmax_visible,
        hidden=_softmax_hidden,
        reference=_softmax_reference,
        formula=_softmax_variant(None),
        mistakes=[
            (m, hint, _softmax_variant(m))
            for m, hint in [
                ("no_mask", "Padded keys got weight: the mask was not applied."),
                (
                    "inverted",
                    "Your mask is inverted: True means 'may attend' "
                    "(a real token), False means padding.",
                ),
                (
                    "wrong_axis",
                    "Your weights sum to 1 over the queries (axis -2); "
                    "the softmax runs over the keys, the last axis.",
                ),
                (
                    "uniform_empty",
                    "Where every key is padding your weights are 1/keys. "
                    "Padded keys must get exactly zero weight even then: zero them "
                    "after the softmax with `ops.where(mask, weights, 0)`.",
                ),
            ]
        ],
        generic_hint="Fill padded scores with a large negative number (not -inf, "
        "which turns an all-padded row into 0/0 = NaN and gives NaN gradients), "
        "take the softmax over the last axis, then set the padded weights to "
        "exactly 0.",
    )
)


# ------------------------------------------------------------------- Luong

_LUONG_INIT = {"units": 6, "output_dim": 7}


def _luong_cases(specs, salt):
    cases = []
    for i, (title, b, tq, tk, d, mask, keras_mask) in enumerate(specs):
        query = fixed_array((b, tq, d), salt + 3 * i)
        values = fixed_array((b, tk, d), salt + 3 * i + 1)
        kwargs = {"return_attention_scores": True}
        if mask is not None:
            mask = np.asarray(mask, bool)
            values[~mask] = 0.0  # padded steps are zero, as after a Masking layer
            kwargs["values_mask"] = mask
        cases.append(
            Case(
                title=title,
                inputs={"query": query, "values": values},
                init=dict(_LUONG_INIT),
                call_kwargs=kwargs,
                weights=_weights(
                    {"W_c": (2 * d, 6), "b_c": (6,), "W_y": (6, 7), "b_y": (7,)},
                    salt=70 + d,
                ),
                options={"keras_mask": keras_mask},
            )
        )
    return cases


def _luong_visible():
    return _luong_cases(
        [
            ("no padding: probs and attention weights", 2, 3, 5, 4, None, False),
            (
                "padded encoder steps given as `values_mask`",
                2,
                3,
                5,
                4,
                [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]],
                False,
            ),
            (
                "a Keras mask (Masking layer), inside a functional model",
                2,
                3,
                5,
                4,
                [[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]],
                True,
            ),
        ],
        salt=50,
    )


def _luong_hidden():
    return _luong_cases(
        [
            (
                "batch of 4, one decoder step",
                4,
                1,
                6,
                3,
                [[1] * 6, [1] * 2 + [0] * 4, [1] * 5 + [0], [1] + [0] * 5],
                False,
            ),
            ("longer decoder than encoder", 1, 8, 3, 5, [[1, 1, 0]], False),
            (
                "Keras mask, batch of 3",
                3,
                2,
                7,
                2,
                [[1] * 7, [1] * 3 + [0] * 4, [1] * 6 + [0]],
                True,
            ),
        ],
        salt=60,
    )


PLAIN = "probs (return_attention_scores=False)"


def _luong_reference(case):
    outputs = _run_reference("LuongAttention", case, ["probs", "weights"])
    if not case.options.get("keras_mask"):
        outputs[PLAIN] = outputs["probs"]
    return outputs


def _luong_variant(mistake):
    return lambda case: M.luong(
        case.inputs["query"],
        case.inputs["values"],
        case.call_kwargs.get("values_mask"),
        *case.weights.values(),
        mistake=mistake,
    )


register(
    Spec(
        name="check_luong_attention",
        visible=_luong_visible,
        hidden=_luong_hidden,
        reference=_luong_reference,
        formula=_luong_variant(None),
        mistakes=[
            (m, hint, _luong_variant(m))
            for m, hint in [
                (
                    "no_mask",
                    "Padded encoder steps got attention weight: pass `values_mask` "
                    "to your masked softmax.",
                ),
                (
                    "concat_order",
                    "The concatenation is in the wrong order: it is [a_t; s_t], "
                    "the context first, then the decoder state.",
                ),
                (
                    "no_tanh",
                    "The tanh is missing from s~_t = tanh([a_t; s_t] W_c + b_c).",
                ),
                (
                    "scaled",
                    "Your scores are divided by sqrt(d): Luong's dot score is not "
                    "scaled.",
                ),
                (
                    "wrong_axis",
                    "Your attention weights sum to 1 over the decoder steps; the "
                    "softmax runs over the encoder steps (the last axis of the "
                    "scores).",
                ),
                (
                    "logits",
                    "You return logits: the output is the distribution "
                    "softmax(s~_t W_y + b_y).",
                ),
            ]
        ],
        generic_hint="scores, masked softmax, context a_t, [a_t; s_t], "
        "tanh(W_c . + b_c), softmax(W_y . + b_y); the padding mask comes as "
        "`values_mask` (with a Keras mask too: `self.supports_masking = True`); "
        "`return_attention_scores` does not change the output.",
        round_trip=True,
    )
)


# ---------------------------------------------------------------- Bahdanau


def _bahdanau_cases(specs, salt):
    cases = []
    for i, (title, b, tk, ds, dh, mask) in enumerate(specs):
        kwargs = {}
        if mask is not None:
            kwargs["values_mask"] = np.asarray(mask, bool)
        cases.append(
            Case(
                title=title,
                inputs={
                    "query": fixed_array((b, ds), salt + 2 * i),
                    "values": fixed_array((b, tk, dh), salt + 2 * i + 1),
                },
                init={"units": 3},
                call_kwargs=kwargs,
                weights=_weights(
                    {"W_b": (ds, 3), "W_c": (dh, 3), "w_a": (3,)}, salt=95 + ds
                ),
            )
        )
    return cases


def _bahdanau_variant(mistake):
    return lambda case: M.bahdanau(
        case.inputs["query"],
        case.inputs["values"],
        case.call_kwargs.get("values_mask"),
        *case.weights.values(),
        mistake=mistake,
    )


register(
    Spec(
        name="check_bahdanau_attention",
        visible=lambda: _bahdanau_cases(
            [
                ("no padding", 2, 5, 4, 6, None),
                ("padded encoder steps", 2, 5, 4, 6, [[1, 1, 1, 0, 0], [1] * 5]),
            ],
            salt=80,
        ),
        hidden=lambda: _bahdanau_cases(
            [
                (
                    "batch of 4 with one all-padded sequence",
                    4,
                    3,
                    2,
                    5,
                    [[1, 1, 1], [1, 0, 0], [0, 0, 0], [1, 1, 0]],
                ),
                ("long encoder", 1, 12, 7, 2, None),
                (
                    "a state as wide as the attention (`W_b` square: stored either "
                    "way round)",
                    2,
                    4,
                    3,
                    5,
                    [[1, 1, 1, 1], [1, 1, 0, 0]],
                ),
            ],
            salt=90,
        ),
        reference=lambda case: _run_reference(
            "BahdanauAttention", case, ["context", "weights"]
        ),
        formula=_bahdanau_variant(None),
        mistakes=[
            (
                "no_mask",
                "Padded encoder steps got attention weight: apply "
                "`values_mask` in the softmax.",
                _bahdanau_variant("no_mask"),
            ),
            (
                "no_tanh",
                "The tanh is missing: e = tanh(s W_b + h W_c) . w_a.",
                _bahdanau_variant("no_tanh"),
            ),
            (
                "no_v",
                "The scores sum the tanh units without weighting them by w_a.",
                _bahdanau_variant("no_v"),
            ),
        ],
        generic_hint="Broadcast s_{t-1} W_b (batch, 1, units) against H W_c "
        "(batch, keys, units), then reduce with w_a over the units.",
        round_trip=True,
    )
)


# --------------------------------------------------- Bahdanau decoder step

STEP_INIT = {"vocab_size": 11, "embedding_dim": 4, "units": 5, "attention_units": 3}


def _step_weights(dh):
    shapes = {
        "embeddings": (11, 4),
        "W_b": (5, 3),
        "W_c": (dh, 3),
        "w_a": (3,),
        "kernel": (4 + dh, 15),
        "recurrent_kernel": (5, 15),
        "bias": (2, 15),
        "output_kernel": (5, 11),
        "output_bias": (11,),
    }
    return _weights(shapes, salt=100 + dh)


def _step_tokens(b, salt):
    """`b` token ids of the vocabulary of 11 (any id, 0 included)."""
    return fixed_literal(
        ((np.arange(b) * 7 + salt) % 11).astype(np.int32),
        lambda rng: rng.integers(0, 11, size=b).astype(np.int32),
        seed=7013 * (salt + 1),
    )


def _step_cases(specs, salt):
    out = []
    for i, (title, b, tk, dh, mask) in enumerate(specs):
        kwargs = {}
        if mask is not None:
            kwargs["values_mask"] = np.asarray(mask, bool)
        out.append(
            Case(
                title=title,
                inputs={
                    "tokens": _step_tokens(b, salt),
                    "state": fixed_array((b, 5), salt + 3 * i),
                    "values": fixed_array((b, tk, dh), salt + 3 * i + 1),
                },
                init=dict(STEP_INIT),
                call_kwargs=kwargs,
                weights=_step_weights(dh),
            )
        )
    return out


def _step_variant(mistake):
    return lambda case: M.decoder_step(
        case.inputs["tokens"],
        case.inputs["state"],
        case.inputs["values"],
        case.call_kwargs.get("values_mask"),
        case.weights,
        mistake=mistake,
    )


register(
    Spec(
        name="check_bahdanau_decoder_step",
        visible=lambda: _step_cases(
            [("one step, padded encoder", 2, 5, 6, [[1] * 5, [1, 1, 1, 0, 0]])],
            salt=110,
        ),
        hidden=lambda: _step_cases(
            [
                ("batch of 3, no mask", 3, 4, 2, None),
                ("batch of 1, long encoder", 1, 9, 7, [[1] * 6 + [0] * 3]),
                (
                    "encoder states as wide as the attention (`W_c` square: "
                    "stored either way round)",
                    2,
                    4,
                    3,
                    [[1, 1, 1, 1], [1, 1, 1, 0]],
                ),
            ],
            salt=120,
        ),
        reference=lambda case: _run_reference(
            "BahdanauDecoderStep", case, ["logits", "state", "weights"]
        ),
        formula=_step_variant(None),
        mistakes=[
            (
                "concat_order",
                "The cell input is in the wrong order: it is "
                "[x_t; c_t], the embedding first, then the context.",
                _step_variant("concat_order"),
            ),
            (
                "no_mask",
                "Padded encoder steps got attention weight: pass "
                "`values_mask` to the attention.",
                _step_variant("no_mask"),
            ),
            (
                "old_state_output",
                "The logits come from s_{t-1}: compute them "
                "from the new state s_t the cell returns.",
                _step_variant("old_state_output"),
            ),
            (
                "softmax_output",
                "You return probabilities: the step returns "
                "logits (the loss applies the softmax).",
                _step_variant("softmax_output"),
            ),
        ],
        generic_hint="x = embedding(tokens); context, weights = attention(state, "
        "values, values_mask); new_state = GRUCell([x; context], state); logits "
        "= output_layer(new_state); return logits, new_state, weights.",
        round_trip=True,
    )
)
