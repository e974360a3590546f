"""Checks for Assignment 1 (attention in seq2seq), one per graded exercise.

Each `check_*` takes the student's class (or function) and `cases`:
`"visible"` for the tests students see, `"hidden"` for the instructor's
other shapes, masks and batch sizes. It prints one line when every case
passes and raises `CheckFailed` otherwise.
"""

import numpy as np

from autograder.checks import seq2seq_math as M
from autograder.checks.core import (
    Case,
    CheckFailed,
    Mistake,
    check,
    fixed_array,
    run_cases,
)
from autograder.checks.layers import (
    WeightSpec,
    build_and_inject,
    call_layer,
    config_round_trip,
    inject,
)

__all__ = [
    "check_bahdanau_attention",
    "check_bahdanau_decoder_step",
    "check_concat_score",
    "check_dot_score",
    "check_general_score",
    "check_luong_attention",
    "check_masked_softmax",
]


def _choose(cases, visible, hidden):
    if cases == "visible":
        return visible()
    if cases == "hidden":
        return hidden()
    raise ValueError(
        "Received an invalid value for argument `cases`, expected one of "
        f"('visible', 'hidden'). Received: cases={cases!r}"
    )


def _passed(name, count):
    print(f"{name}: all {count} cases passed.")


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


def _reference(cls, init, args, kwargs, names, weights):
    """Run a reference layer in float64 with the given weights."""
    import keras

    layer = cls(**init, dtype="float64")
    tensors = [keras.ops.convert_to_tensor(a) for a in args]
    layer(*tensors, **kwargs)
    inject(layer, [WeightSpec(n, v) for n, v in weights.items()])
    outputs = layer(*tensors, **kwargs)
    outputs = outputs if isinstance(outputs, tuple | list) else (outputs,)
    return {
        n: keras.ops.convert_to_numpy(o).astype(np.float64)
        for n, o in zip(names, outputs, strict=True)
    }


def _score_cases(sizes, salt):
    cases = []
    for i, (b, tq, tk, dq, dk) in enumerate(sizes):
        q = fixed_array((b, tq, dq), salt + 10 * i)
        k = fixed_array((b, tk, dk), salt + 10 * i + 1)
        cases.append(
            Case(
                title=f"scores for {b} sequences, {tq} queries and {tk} keys",
                inputs={"query": q, "keys": k},
            )
        )
    return cases


def _check_score(
    cls, cases, name, ref_name, weight_shapes, math_fn, mistakes, init=None, salt=0
):
    from autograder.reference import seq2seq as R

    init = init or {}
    ref_cls = getattr(R, ref_name)

    def weights_for(case):
        q, k = case.inputs["query"], case.inputs["keys"]
        shapes = weight_shapes(q.shape[-1], k.shape[-1], init)
        return _weights(shapes, salt + q.shape[0])

    def run_student(case):
        args = list(case.inputs.values())
        specs = [WeightSpec(n, v) for n, v in weights_for(case).items()]
        if specs:
            layer = build_and_inject(cls, init, args, {}, specs)
        else:
            layer = build_and_inject_nothing(cls, init)
        return call_layer(layer, args, {}, ["scores"], f"`{cls.__name__}`")

    def run_reference(case):
        return _reference(
            ref_cls, init, list(case.inputs.values()), {}, ["scores"], weights_for(case)
        )

    def variant(mistake):
        def outputs(case):
            w = weights_for(case)
            return {
                "scores": math_fn(
                    case.inputs["query"],
                    case.inputs["keys"],
                    *w.values(),
                    mistake=mistake,
                )
            }

        return outputs

    count = run_cases(
        name,
        cases,
        run_student,
        run_reference,
        [Mistake(m, hint, variant(m)) for m, hint in mistakes],
        generic_hint="Compare your formula with the exercise's, one term at a time.",
    )
    if init:
        layer = cls(**init)
        config_round_trip(name, layer, list(init))
    return count


def build_and_inject_nothing(cls, init):
    from autograder.checks.core import student_code

    arguments = ", ".join(f"{k}={v!r}" for k, v in init.items())
    with student_code(f"`{cls.__name__}({arguments})`"):
        return cls(**init)


_TRANSPOSED = (
    "transposed",
    "Your scores are transposed: they should have shape (batch, queries, keys), "
    "one row per query. Multiply the queries by the *transposed keys*.",
)


@check
def check_dot_score(DotScore, cases="visible"):
    """Luong's dot score `s_t . h_i` for every query and key."""
    __tracebackhide__ = True
    chosen = _choose(
        cases,
        lambda: _score_cases([(2, 3, 5, 4, 4), (1, 1, 6, 4, 4)], salt=1),
        lambda: _score_cases(
            [(3, 4, 2, 8, 8), (5, 7, 7, 3, 3), (1, 2, 9, 16, 16)], salt=2
        ),
    )
    count = _check_score(
        DotScore,
        chosen,
        "check_dot_score",
        "DotScore",
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
    _passed("check_dot_score", count)


@check
def check_general_score(GeneralScore, cases="visible"):
    """Luong's general score `s_t . (W_a h_i)` with one weight `W_a`."""
    __tracebackhide__ = True
    chosen = _choose(
        cases,
        lambda: _score_cases([(2, 3, 5, 4, 6)], salt=3),
        lambda: _score_cases([(3, 4, 2, 5, 3), (1, 1, 7, 2, 9)], salt=4),
    )
    count = _check_score(
        GeneralScore,
        chosen,
        "check_general_score",
        "GeneralScore",
        lambda dq, dk, init: {"W_a": (dk, dq)},
        M.general_score,
        [_TRANSPOSED],
        salt=5,
    )
    _passed("check_general_score", count)


@check
def check_concat_score(ConcatScore, cases="visible"):
    """The concat (additive) score `v_a . tanh(W_1 s_t + W_2 h_i)`."""
    __tracebackhide__ = True
    chosen = _choose(
        cases,
        lambda: _score_cases([(2, 3, 5, 4, 6)], salt=6),
        lambda: _score_cases([(3, 4, 2, 5, 2), (1, 1, 7, 2, 9)], salt=7),
    )
    count = _check_score(
        ConcatScore,
        chosen,
        "check_concat_score",
        "ConcatScore",
        lambda dq, dk, init: {
            "W_1": (dq, init["units"]),
            "W_2": (dk, init["units"]),
            "v_a": (init["units"],),
        },
        M.concat_score,
        [
            ("no_tanh", "The tanh is missing: the score is v_a . tanh(W_1 s + W_2 h)."),
            ("no_v", "Your scores sum the tanh units without weighting them by v_a."),
            _TRANSPOSED,
        ],
        init={"units": 3},
        salt=8,
    )
    _passed("check_concat_score", count)


# ---------------------------------------------------------------- masked softmax


def _softmax_cases(specs, salt):
    cases = []
    for i, (title, shape, mask) in enumerate(specs):
        scores = fixed_array(shape, salt + i, scale=2.0)
        inputs = {"scores": scores}
        notes = []
        if mask is not None:
            inputs["mask"] = np.asarray(mask, bool)
        cases.append(Case(title=title, inputs=inputs, notes=notes))
    return cases


@check
def check_masked_softmax(masked_softmax, cases="visible"):
    """Softmax over keys that gives padded keys zero weight and never NaN."""
    __tracebackhide__ = True
    import keras

    def visible():
        return _softmax_cases(
            [
                ("no mask: a plain softmax over the last axis", (2, 3, 4), None),
                (
                    "a padding mask (batch, keys): padded keys get zero weight",
                    (2, 3, 5),
                    _mask([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]),
                ),
                (
                    "a sequence whose keys are all padding: zeros, no NaN",
                    (2, 2, 3),
                    _mask([[0, 0, 0], [1, 0, 1]]),
                ),
            ],
            salt=20,
        )

    def hidden():
        return _softmax_cases(
            [
                (
                    "a full (batch, queries, keys) mask",
                    (2, 3, 4),
                    np.tril(np.ones((3, 4), bool))[None].repeat(2, 0),
                ),
                (
                    "one query, many keys, batch of 4",
                    (4, 1, 9),
                    _mask([[1] * 9, [1] * 4 + [0] * 5, [1] + [0] * 8, [0] * 9]),
                ),
                (
                    "large scores (overflow check)",
                    (1, 2, 6),
                    _mask([[1, 1, 1, 1, 0, 0]]),
                ),
            ],
            salt=30,
        )

    chosen = _choose(cases, visible, hidden)
    if cases == "hidden":
        chosen[-1].inputs["scores"] = chosen[-1].inputs["scores"] * 500.0

    def run_student(case):
        from autograder.checks.core import student_code

        scores = keras.ops.convert_to_tensor(case.inputs["scores"].astype(np.float32))
        mask = case.inputs.get("mask")
        with student_code("`masked_softmax`"):
            if mask is None:
                out = masked_softmax(scores)
            else:
                out = masked_softmax(scores, keras.ops.convert_to_tensor(mask))
        return {"weights": out}

    def run_reference(case):
        return {
            "weights": M.masked_softmax(case.inputs["scores"], case.inputs.get("mask"))
        }

    def variant(m):
        return lambda case: {
            "weights": M.masked_softmax(
                case.inputs["scores"], case.inputs.get("mask"), m
            )
        }

    count = run_cases(
        "check_masked_softmax",
        chosen,
        run_student,
        run_reference,
        [
            Mistake(
                "no_mask",
                "Padded keys got weight: the mask was not applied.",
                variant("no_mask"),
            ),
            Mistake(
                "inverted",
                "Your mask is inverted: True means 'may attend' "
                "(a real token), False means padding.",
                variant("inverted"),
            ),
            Mistake(
                "wrong_axis",
                "Your weights sum to 1 over the queries (axis -2); "
                "the softmax runs over the keys, the last axis.",
                variant("wrong_axis"),
            ),
            Mistake(
                "uniform_empty",
                "Where every key is padding your weights are 1/keys. "
                "Padded keys must get exactly zero weight even then: zero them "
                "after the softmax with `ops.where(mask, weights, 0)`.",
                variant("uniform_empty"),
            ),
        ],
        generic_hint="Fill padded scores with a large negative number (not -inf, "
        "which turns an all-padded row into 0/0 = NaN), take the softmax over the "
        "last axis, then set the padded weights to exactly 0.",
    )
    if cases == "hidden":
        _check_finite_gradient(masked_softmax)
        count += 1
    _passed("check_masked_softmax", count)


def _check_finite_gradient(masked_softmax):
    import tensorflow as tf

    from autograder.checks.core import student_code

    scores = tf.Variable(fixed_array((2, 2, 3), 40).astype(np.float32))
    mask = tf.constant(_mask([[0, 0, 0], [1, 1, 0]]))
    with (
        student_code("`masked_softmax` under tf.GradientTape"),
        tf.GradientTape() as tape,
    ):
        loss = tf.reduce_sum(
            masked_softmax(scores, mask) * np.arange(3, dtype=np.float32)
        )
    grad = tape.gradient(loss, scores)
    if grad is None or not np.isfinite(grad.numpy()).all():
        raise CheckFailed(
            "check_masked_softmax: the gradient through a row whose keys are all "
            "padding is not finite (or missing).\nHint: fill padded scores with a "
            "large finite negative number such as -1e9, not -inf: where(mask, x, "
            "-inf) has NaN gradients."
        )


# ----------------------------------------------------------------- Luong


def _luong_cases(specs, salt):
    cases = []
    for i, (title, b, tq, tk, d, mask, keras_mask) in enumerate(specs):
        query = fixed_array((b, tq, d), salt + 3 * i)
        values = fixed_array((b, tk, d), salt + 3 * i + 1)
        inputs = {"query": query, "values": values}
        if mask is not None:
            mask = np.asarray(mask, bool)
            values[~mask] = 0.0  # padded steps are zero, as after a Masking layer
            inputs["values_mask"] = mask
        cases.append(
            Case(
                title=title,
                inputs=inputs,
                init={"units": 6, "output_dim": 7},
                call_kwargs={"keras_mask": keras_mask},
            )
        )
    return cases


_LUONG_MISTAKES = [
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
    ("no_tanh", "The tanh is missing from s~_t = tanh(W_c [a_t; s_t] + b_c)."),
    ("scaled", "Your scores are divided by sqrt(d): Luong's dot score is not scaled."),
    (
        "wrong_axis",
        "Your attention weights sum to 1 over the decoder steps; the "
        "softmax runs over the encoder steps (the last axis of the scores).",
    ),
    (
        "logits",
        "You return logits: the output is the distribution softmax(W_y s~_t + b_y).",
    ),
]


@check
def check_luong_attention(LuongAttention, cases="visible"):
    """Luong's dot attention: weights, context, attentional state and output."""
    __tracebackhide__ = True
    import keras

    from autograder.reference import seq2seq as R

    def visible():
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

    def hidden():
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

    chosen = _choose(cases, visible, hidden)

    def weights_for(case):
        d = case.inputs["query"].shape[-1]
        return _weights(
            {"W_c": (2 * d, 6), "b_c": (6,), "W_y": (6, 7), "b_y": (7,)}, salt=70 + d
        )

    def run_student(case):
        args = [case.inputs["query"], case.inputs["values"]]
        kwargs = {"return_attention_scores": True}
        explicit = dict(kwargs)
        if "values_mask" in case.inputs:
            explicit["values_mask"] = case.inputs["values_mask"]
        specs = [WeightSpec(n, v) for n, v in weights_for(case).items()]
        layer = build_and_inject(LuongAttention, case.init, args, explicit, specs)
        if not case.call_kwargs.get("keras_mask"):
            out = call_layer(
                layer, args, explicit, ["probs", "weights"], "`LuongAttention`"
            )
            plain = call_layer(
                layer,
                args,
                {k: v for k, v in explicit.items() if k != "return_attention_scores"},
                ["probs"],
                "`LuongAttention` without return_attention_scores",
            )
            if not np.allclose(
                np.asarray(plain["probs"]), np.asarray(out["probs"]), atol=1e-6
            ):
                raise CheckFailed(
                    "`return_attention_scores` must not change the output."
                )
            return out
        from autograder.checks.core import student_code

        q_in = keras.Input(shape=(None, args[0].shape[-1]))
        v_in = keras.Input(shape=(None, args[1].shape[-1]))
        with student_code("`LuongAttention` called on symbolic Keras tensors"):
            outputs = layer(q_in, keras.layers.Masking(0.0)(v_in), **kwargs)
            model = keras.Model([q_in, v_in], outputs)
        with student_code("the functional model around `LuongAttention`"):
            probs, weights = model([a.astype(np.float32) for a in args])
        return {"probs": probs, "weights": weights}

    def run_reference(case):
        kwargs = {"return_attention_scores": True}
        if "values_mask" in case.inputs:
            kwargs["values_mask"] = case.inputs["values_mask"]
        return _reference(
            R.LuongAttention,
            case.init,
            [case.inputs["query"], case.inputs["values"]],
            kwargs,
            ["probs", "weights"],
            weights_for(case),
        )

    def variant(m):
        def outputs(case):
            return M.luong(
                case.inputs["query"],
                case.inputs["values"],
                case.inputs.get("values_mask"),
                *weights_for(case).values(),
                mistake=m,
            )

        return outputs

    mistakes = [Mistake(m, h, variant(m)) for m, h in _LUONG_MISTAKES]
    keras_mask_hint = (
        "With a Keras mask the padding did not reach your layer: name the call "
        "argument `values_mask` (Keras fills `<argument>_mask` from that argument's "
        "mask) and set `self.supports_masking = True`."
    )
    count = run_cases(
        "check_luong_attention",
        chosen,
        run_student,
        run_reference,
        mistakes,
        generic_hint="Check each step against the formulas: scores, masked softmax, "
        "context, [a_t; s_t], tanh(W_c . + b_c), softmax(W_y . + b_y). "
        + keras_mask_hint,
    )
    config_round_trip(
        "check_luong_attention",
        LuongAttention(units=6, output_dim=7),
        ["units", "output_dim"],
    )
    _passed("check_luong_attention", count + 1)


# ----------------------------------------------------------------- Bahdanau


def _bahdanau_cases(specs, salt):
    cases = []
    for i, (title, b, tk, ds, dh, mask) in enumerate(specs):
        inputs = {
            "query": fixed_array((b, ds), salt + 2 * i),
            "values": fixed_array((b, tk, dh), salt + 2 * i + 1),
        }
        if mask is not None:
            inputs["values_mask"] = np.asarray(mask, bool)
        cases.append(Case(title=title, inputs=inputs, init={"units": 3}))
    return cases


@check
def check_bahdanau_attention(BahdanauAttention, cases="visible"):
    """Bahdanau's additive attention for one decoder step."""
    __tracebackhide__ = True
    from autograder.reference import seq2seq as R

    chosen = _choose(
        cases,
        lambda: _bahdanau_cases(
            [
                ("no padding", 2, 5, 4, 6, None),
                (
                    "padded encoder steps",
                    2,
                    5,
                    4,
                    6,
                    [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]],
                ),
            ],
            salt=80,
        ),
        lambda: _bahdanau_cases(
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
            ],
            salt=90,
        ),
    )

    def weights_for(case):
        ds = case.inputs["query"].shape[-1]
        dh = case.inputs["values"].shape[-1]
        return _weights({"W_b": (ds, 3), "W_c": (dh, 3), "w_a": (3,)}, salt=95 + ds)

    def call_kwargs(case):
        return (
            {"values_mask": case.inputs["values_mask"]}
            if "values_mask" in case.inputs
            else {}
        )

    def run_student(case):
        args = [case.inputs["query"], case.inputs["values"]]
        specs = [WeightSpec(n, v) for n, v in weights_for(case).items()]
        layer = build_and_inject(
            BahdanauAttention, case.init, args, call_kwargs(case), specs
        )
        return call_layer(
            layer,
            args,
            call_kwargs(case),
            ["context", "weights"],
            "`BahdanauAttention`",
        )

    def run_reference(case):
        return _reference(
            R.BahdanauAttention,
            case.init,
            [case.inputs["query"], case.inputs["values"]],
            call_kwargs(case),
            ["context", "weights"],
            weights_for(case),
        )

    def variant(m):
        return lambda case: M.bahdanau(
            case.inputs["query"],
            case.inputs["values"],
            case.inputs.get("values_mask"),
            *weights_for(case).values(),
            mistake=m,
        )

    count = run_cases(
        "check_bahdanau_attention",
        chosen,
        run_student,
        run_reference,
        [
            Mistake(
                "no_mask",
                "Padded encoder steps got attention weight: apply "
                "`values_mask` in the softmax.",
                variant("no_mask"),
            ),
            Mistake(
                "no_tanh",
                "The tanh is missing: e = w_a . tanh(W_b s + W_c h).",
                variant("no_tanh"),
            ),
            Mistake(
                "no_v",
                "The scores sum the tanh units without weighting them by w_a.",
                variant("no_v"),
            ),
        ],
        generic_hint="Broadcast W_b s_{t-1} (batch, 1, units) against W_c H "
        "(batch, keys, units), then reduce with w_a over the units.",
    )
    config_round_trip("check_bahdanau_attention", BahdanauAttention(units=3), ["units"])
    _passed("check_bahdanau_attention", count + 1)


# ------------------------------------------------------- Bahdanau decoder step

_STEP_INIT = {"vocab_size": 11, "embedding_dim": 4, "units": 5, "attention_units": 3}


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


@check
def check_bahdanau_decoder_step(BahdanauDecoderStep, cases="visible"):
    """One decoder step: embed, attend with s_{t-1}, GRU on [x; c], output."""
    __tracebackhide__ = True
    from autograder.reference import seq2seq as R

    def make(specs, salt):
        out = []
        for i, (title, b, tk, dh, mask) in enumerate(specs):
            inputs = {
                "tokens": (np.arange(b) * 7 + salt) % 11,
                "state": fixed_array((b, 5), salt + 3 * i),
                "values": fixed_array((b, tk, dh), salt + 3 * i + 1),
            }
            if mask is not None:
                inputs["values_mask"] = np.asarray(mask, bool)
            out.append(Case(title=title, inputs=inputs, init=dict(_STEP_INIT)))
        return out

    chosen = _choose(
        cases,
        lambda: make(
            [("one step, padded encoder", 2, 5, 6, [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])],
            salt=110,
        ),
        lambda: make(
            [
                ("batch of 3, no mask", 3, 4, 2, None),
                ("batch of 1, long encoder", 1, 9, 7, [[1] * 6 + [0] * 3]),
            ],
            salt=120,
        ),
    )

    def call_kwargs(case):
        return (
            {"values_mask": case.inputs["values_mask"]}
            if "values_mask" in case.inputs
            else {}
        )

    def args(case):
        return [
            case.inputs["tokens"].astype(np.int32),
            case.inputs["state"],
            case.inputs["values"],
        ]

    def weights_for(case):
        return _step_weights(case.inputs["values"].shape[-1])

    def run_student(case):
        specs = [
            WeightSpec(n, v, label=n.replace("_", " "))
            for n, v in weights_for(case).items()
        ]
        layer = build_and_inject(
            BahdanauDecoderStep, case.init, args(case), call_kwargs(case), specs
        )
        return call_layer(
            layer,
            args(case),
            call_kwargs(case),
            ["logits", "state", "weights"],
            "`BahdanauDecoderStep`",
        )

    def run_reference(case):
        return _reference(
            R.BahdanauDecoderStep,
            case.init,
            args(case),
            call_kwargs(case),
            ["logits", "state", "weights"],
            weights_for(case),
        )

    def variant(m):
        return lambda case: M.decoder_step(
            case.inputs["tokens"],
            case.inputs["state"],
            case.inputs["values"],
            case.inputs.get("values_mask"),
            weights_for(case),
            mistake=m,
        )

    count = run_cases(
        "check_bahdanau_decoder_step",
        chosen,
        run_student,
        run_reference,
        [
            Mistake(
                "concat_order",
                "The cell input is in the wrong order: it is "
                "[x_t; c_t], the embedding first, then the context.",
                variant("concat_order"),
            ),
            Mistake(
                "no_mask",
                "Padded encoder steps got attention weight: pass "
                "`values_mask` to the attention.",
                variant("no_mask"),
            ),
            Mistake(
                "old_state_output",
                "The logits come from s_{t-1}: compute them "
                "from the new state s_t the cell returns.",
                variant("old_state_output"),
            ),
            Mistake(
                "softmax_output",
                "You return probabilities: the step returns "
                "logits (the loss applies the softmax).",
                variant("softmax_output"),
            ),
        ],
        generic_hint="Attend with the previous state s_{t-1} (Bahdanau), not with "
        "the new one; use keras.layers.GRUCell with its defaults.",
    )
    config_round_trip(
        "check_bahdanau_decoder_step",
        BahdanauDecoderStep(**_STEP_INIT),
        list(_STEP_INIT),
    )
    _passed("check_bahdanau_decoder_step", count + 1)
