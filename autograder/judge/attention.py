"""Assignment 2's cases, reference outputs and mistakes (trusted side).

Expected outputs of `check_multi_head_attention` come from
`keras.layers.MultiHeadAttention` itself, in float64, with the case's weights
transferred: a student's layer that passes is equal to Keras's, weight for
weight. The functions' expected outputs come from the reference
(`autograder.reference.attention`); the mistakes from NumPy formulas
(`attention_math`).
"""

import numpy as np

from autograder.checks.core import (
    Case,
    current_draw,
    fixed_array,
    fixed_generator,
    fixed_literal,
)
from autograder.judge import Spec, register
from autograder.judge import attention_math as M

# ------------------------------------------------- scaled dot-product attention


def _sdpa_case(title, lead, t, s, dk, dv, mask, salt):
    inputs = {
        "q": fixed_array((*lead, t, dk), salt),
        "k": fixed_array((*lead, s, dk), salt + 1),
        "v": fixed_array((*lead, s, dv), salt + 2),
    }
    if mask is not None:
        inputs["mask"] = np.asarray(mask, bool)
    # Every row is compared: one with no allowed key must be all zeros.
    return Case(title=title, inputs=inputs)


def _padding(batch_rows, lead_extra=0):
    mask = np.array(batch_rows, bool)[:, None, :]  # (B, 1, S)
    for _ in range(lead_extra):
        mask = mask[:, None]
    return mask


def _sdpa_visible():
    tril = np.tril(np.ones((4, 4), bool))
    return [
        _sdpa_case("(B, T, d) inputs, no mask", (2,), 3, 4, 5, 5, None, 200),
        _sdpa_case(
            "(B, h, T, d) inputs with a padding mask (B, 1, 1, S)",
            (2, 3),
            2,
            5,
            4,
            6,
            _padding([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], 1),
            210,
        ),
        _sdpa_case("a causal mask (T, T) for every batch", (2,), 4, 4, 3, 3, tril, 220),
    ]


def _sdpa_hidden():
    return [
        _sdpa_case(
            "(T, d) inputs, no batch at all, a (1, S) mask",
            (),
            3,
            6,
            4,
            2,
            np.array([[1, 1, 0, 1, 1, 0]], bool),
            230,
        ),
        _sdpa_case(
            "d_k = 64: the scale matters; a full (B, T, S) mask, T != S",
            (2,),
            3,
            5,
            64,
            8,
            np.array(
                [
                    [[1, 1, 1, 0, 0], [1, 0, 1, 0, 1], [0, 1, 1, 1, 1]],
                    [[1, 1, 1, 1, 1], [0, 0, 1, 1, 0], [1, 1, 0, 0, 1]],
                ],
                bool,
            ),
            240,
        ),
        _sdpa_case(
            "(B, h, g, T, d): three leading axes, a mask with an all-masked row",
            (2, 2, 2),
            3,
            4,
            5,
            3,
            np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], bool),
            250,
        ),
    ]


def _sdpa_reference(case):
    import keras

    from autograder.reference import attention as A

    tensors = {k: keras.ops.convert_to_tensor(v) for k, v in case.inputs.items()}
    output, weights = A.scaled_dot_product_attention(
        tensors["q"], tensors["k"], tensors["v"], tensors.get("mask")
    )
    return {
        "output": keras.ops.convert_to_numpy(output),
        "weights": keras.ops.convert_to_numpy(weights),
    }


def _sdpa_variant(mistake):
    def outputs(case):
        i = case.inputs
        output, weights = M.sdpa(i["q"], i["k"], i["v"], i.get("mask"), mistake)
        return {"output": output, "weights": weights}

    return outputs


_SDPA_MISTAKES = [
    ("no_scale", "Your scores are not scaled: divide q k^T by sqrt(d_k)."),
    (
        "scale_by_d",
        "Your scores are divided by d_k; the scale is 1 / sqrt(d_k) (the square "
        "root keeps the variance of the scores at 1).",
    ),
    (
        "wrong_axis",
        "Your weights sum to 1 over the queries (axis -2); the softmax runs "
        "over the keys, the last axis.",
    ),
    (
        "inverted",
        "Your mask is inverted: True means 'may attend' (as in Keras), False "
        "means masked.",
    ),
    (
        "wrong_sign",
        "Masked scores got +1e9 instead of -1e9: the weights went to the masked "
        "positions.",
    ),
    ("no_mask", "The mask was not applied."),
]

register(
    Spec(
        name="check_scaled_dot_product_attention",
        visible=_sdpa_visible,
        hidden=_sdpa_hidden,
        reference=_sdpa_reference,
        formula=_sdpa_variant(None),
        mistakes=[(m, h, _sdpa_variant(m)) for m, h in _SDPA_MISTAKES],
        generic_hint="scores = q k^T / sqrt(d_k) over the last two axes "
        "(ops.matmul with ops.swapaxes(k, -1, -2) works for any leading axes); "
        "masked scores -> -1e9; softmax over the last axis; zero the masked "
        "weights; output = weights v.",
    )
)

# ------------------------------------------------------------------- masks

_IDS_VISIBLE = np.array([[5, 3, 9, 0, 0], [7, 1, 4, 2, 8]])
_IDS_HIDDEN = np.array([[4, 0, 0, 0], [0, 0, 0, 0], [1, 2, 3, 4]])


def _visible_lengths(rng):
    """(2, S) ids: a row padded at the end, then a full row."""
    total = int(rng.integers(4, 9))
    return total, (int(rng.integers(1, total)), total)


def _hidden_lengths(rng):
    """(3, S) ids: one real token, all padding, a full row."""
    total = int(rng.integers(3, 9))
    return total, (1, 0, total)


def _token_ids(today, kind, seed):
    """`today`'s ids at draw 0. At any other draw, rows of the same kinds
    (`kind`: generator -> (S, row lengths)) with other lengths, so the masks
    differ too, and other nonzero ids."""
    lengths = (today.shape[1], tuple(int(n) for n in (today != 0).sum(1)))
    total, lengths = fixed_literal(lengths, kind, seed)
    if current_draw() == 0:
        return today
    ids = fixed_generator(seed + 1).integers(1, 10, size=(len(lengths), total))
    ids[np.arange(total)[None, :] >= np.asarray(lengths)[:, None]] = 0
    return ids


def _causal_lengths(today, seed):
    """`causal_mask` lengths: at a fresh draw, others near each; a length of 1
    (one position) is the edge case it is and stays."""
    return [
        n
        if n == 1
        else fixed_literal(
            n, lambda rng, n=n: int(rng.integers(max(2, n - 3), n + 4)), seed + n
        )
        for n in today
    ]


def _with_pad_id(ids, pad_id):
    """The same rows with padding `pad_id` and real tokens one less (so 0 is
    a real token): a mask of `ids != 0` is wrong on them."""
    return np.where(ids == 0, pad_id, ids - 1)


def _mask_cases(ids, lengths, salt, pad_id=0):
    kwargs = {} if pad_id == 0 else {"pad_id": pad_id}
    of = f"token ids {ids.shape}" + (f", pad_id={pad_id}" if pad_id else "")
    ids = ids if pad_id == 0 else _with_pad_id(ids, pad_id)
    cases = [
        Case(
            title=f"padding_mask of {of}",
            inputs={"token_ids": ids.astype(np.int32)},
            call_kwargs=dict(kwargs),
            options={"function": "padding_mask"},
        )
    ]
    for length in lengths:
        cases.append(
            Case(
                title=f"causal_mask({length})",
                inputs={},
                call_kwargs={"length": length},
                options={"function": "causal_mask"},
            )
        )
    cases.append(
        Case(
            title=f"combined_mask of {of}",
            inputs={"token_ids": ids.astype(np.int32)},
            call_kwargs=dict(kwargs),
            options={"function": "combined_mask"},
        )
    )
    return cases


def _mask_reference(case):
    fn = case.options["function"]
    pad_id = case.call_kwargs.get("pad_id", 0)
    if fn == "padding_mask":
        value = M.padding_mask(case.inputs["token_ids"], pad_id)
    elif fn == "causal_mask":
        value = M.causal_mask(case.call_kwargs["length"])
    else:
        value = M.combined_mask(case.inputs["token_ids"], pad_id)
    return {"mask": value.astype(np.float64)}


def _mask_variant(function, mistake):
    def outputs(case):
        if case.options["function"] != function:
            raise ValueError("another function")
        pad_id = case.call_kwargs.get("pad_id", 0)
        if mistake == "pad_zero" and pad_id == 0:
            raise ValueError("pad_id is 0 in this case")
        if function == "padding_mask":
            value = M.padding_mask(case.inputs["token_ids"], pad_id, mistake)
        elif function == "causal_mask":
            value = M.causal_mask(case.call_kwargs["length"], mistake)
        else:
            value = M.combined_mask(case.inputs["token_ids"], pad_id, mistake)
        return {"mask": value.astype(np.float64)}

    return outputs


_LEAK = (
    "A mask that lets a position see the next token makes training look "
    "perfect (the answer is visible) and inference fail."
)
_MASK_MISTAKES = [
    (
        "padding_mask",
        "inverted",
        "Your padding mask is True on padding: True "
        "means a real token (may be attended to).",
    ),
    (
        "padding_mask",
        "pad_zero",
        "Your padding mask ignores `pad_id`: padding is the tokens equal to "
        "`pad_id` (0 only by default), so compare the ids with `pad_id`.",
    ),
    (
        "combined_mask",
        "pad_zero",
        "Your combined mask ignores `pad_id`: give it to `padding_mask`.",
    ),
    (
        "padding_mask",
        "on_queries",
        "Your padding mask has shape (B, S, 1): it "
        "masks queries. Mask the keys: (B, 1, S), so every query ignores padding.",
    ),
    (
        "causal_mask",
        "no_diagonal",
        "Your causal mask hides the diagonal: a "
        "position may attend to itself (key <= query).",
    ),
    (
        "causal_mask",
        "one_ahead",
        "Your causal mask lets each position see the next one (off by one). " + _LEAK,
    ),
    (
        "causal_mask",
        "inverted",
        "Your causal mask is inverted: True must be on "
        "and below the diagonal (the past and the present). " + _LEAK,
    ),
    (
        "causal_mask",
        "upper",
        "Your causal mask is upper-triangular: it allows "
        "the future. Use key <= query (ops.tril or arange comparisons). " + _LEAK,
    ),
    (
        "combined_mask",
        "or",
        "Your combined mask allows a key when *either* mask "
        "does; it must be allowed by both (logical and).",
    ),
]

register(
    Spec(
        name="check_masks",
        visible=lambda: _mask_cases(
            _token_ids(_IDS_VISIBLE, _visible_lengths, 260),
            _causal_lengths([4], 270),
            0,
        ),
        hidden=lambda: _mask_cases(
            _token_ids(_IDS_HIDDEN, _hidden_lengths, 280),
            _causal_lengths([1, 6], 290),
            1,
            pad_id=9,
        ),
        reference=_mask_reference,
        formula=_mask_reference,
        mistakes=[(m, h, _mask_variant(f, m)) for f, m, h in _MASK_MISTAKES],
        generic_hint="padding_mask: ids != pad_id, shape (B, 1, S); causal_mask: "
        "True where key <= query, shape (T, T); combined_mask: both, (B, T, T).",
        borrowing=False,
    )
)

# ------------------------------------------------------- multi-head attention

MHA_WEIGHTS = ("W_q", "b_q", "W_k", "b_k", "W_v", "b_v", "W_o", "b_o")


def _mha_weights(dq, dk_in, dv_in, h, dk, dv, out, salt):
    shapes = {
        "W_q": (dq, h, dk),
        "b_q": (h, dk),
        "W_k": (dk_in, h, dk),
        "b_k": (h, dk),
        "W_v": (dv_in, h, dv),
        "b_v": (h, dv),
        "W_o": (h, dv, out),
        "b_o": (out,),
    }
    weights = {}
    for i, (name, shape) in enumerate(shapes.items()):
        fan_in = shape[0] if len(shape) > 1 else 1
        scale = 0.3 if name.startswith("b") else 1.2 / np.sqrt(fan_in)
        weights[name] = fixed_array(shape, salt * 17 + i, scale=scale)
    return weights


def _mha_case(
    title,
    b,
    t,
    s,
    dq,
    dv_in,
    h,
    dk,
    salt,
    dv=None,
    out=None,
    value_mask=None,
    attention_mask=None,
    causal=False,
    keras_mask=None,
    key=False,
    compile=False,
    query_mask=None,
):
    dv = dv or dk
    init = {"num_heads": h, "key_dim": dk}
    if dv != dk:
        init["value_dim"] = dv
    if out is not None:
        init["output_dim"] = out
    self_attention = s is None
    s = t if self_attention else s
    query = fixed_array((b, t, dq), salt)
    value = query if self_attention else fixed_array((b, s, dv_in), salt + 1)
    inputs = {"query": query, "value": value}
    dk_in = dv_in
    if key:
        dk_in = dv_in + 1
        inputs["key"] = fixed_array((b, s, dk_in), salt + 2)
    kwargs = {"return_attention_scores": True}
    if query_mask is not None:
        kwargs["query_mask"] = np.asarray(query_mask, bool)
    if value_mask is not None:
        kwargs["value_mask"] = np.asarray(value_mask, bool)
    if attention_mask is not None:
        kwargs["attention_mask"] = np.asarray(attention_mask, bool)
    if causal:
        kwargs["use_causal_mask"] = True
    options = {"keras_mask": keras_mask is not None, "compile": compile}
    if keras_mask is not None:  # padded steps are zero vectors: Masking(0.0)
        q_mask, v_mask = (np.asarray(m, bool) for m in keras_mask)
        query = query * q_mask[..., None]
        value = (value if not self_attention else query) * v_mask[..., None]
        inputs = {"query": query, "value": value}
    case = Case(
        title=title,
        inputs=inputs,
        init=init,
        call_kwargs=kwargs,
        weights=_mha_weights(
            dq, dk_in, dv_in if not self_attention else dq, h, dk, dv, out or dq, salt
        ),
        options=options,
    )
    mask = combined(case)
    if mask is not None:
        rows = mask.any(-1)  # (B, T): queries with something to attend to
        if keras_mask is not None:
            rows = rows & np.asarray(keras_mask[0], bool)
        case.valid = {"output": rows[..., None], "weights": rows[:, None, :, None]}
    return case


def combined(case):
    """The (B, T, S) mask a case asks for, combined as Keras combines it."""
    q, v = case.inputs["query"], case.inputs["value"]
    b, t, s = q.shape[0], q.shape[1], v.shape[1]
    mask = np.ones((b, t, s), bool)
    used = False
    kw = case.call_kwargs
    if case.options.get("keras_mask"):
        mask &= np.any(q != 0, -1)[:, :, None] & np.any(v != 0, -1)[:, None, :]
        used = True
    if "query_mask" in kw:
        mask &= kw["query_mask"][:, :, None]
        used = True
    if "value_mask" in kw:
        mask &= kw["value_mask"][:, None, :]
        used = True
    if "attention_mask" in kw:
        mask &= kw["attention_mask"]
        used = True
    if kw.get("use_causal_mask"):
        mask &= np.tril(np.ones((t, s), bool))[None]
        used = True
    return mask if used else None


def _mha_visible():
    return [
        _mha_case("self-attention, no mask", 2, 5, None, 8, 8, 2, 4, 300),
        _mha_case(
            "cross-attention, padded keys given as `value_mask`",
            2,
            3,
            6,
            8,
            6,
            2,
            4,
            310,
            value_mask=[[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]],
        ),
        _mha_case(
            "causal self-attention (`use_causal_mask=True`)",
            2,
            5,
            None,
            8,
            8,
            2,
            4,
            320,
            causal=True,
        ),
        _mha_case(
            "an explicit `attention_mask` (B, T, S)",
            1,
            3,
            4,
            6,
            6,
            3,
            2,
            330,
            attention_mask=[[[1, 0, 1, 0], [1, 1, 0, 0], [0, 1, 1, 1]]],
        ),
        _mha_case(
            "Keras masks (Masking layers) in a functional model",
            2,
            4,
            5,
            6,
            6,
            2,
            3,
            340,
            keras_mask=(
                [[1, 1, 1, 0], [1, 1, 1, 1]],
                [[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]],
            ),
        ),
    ]


def _mha_hidden():
    return [
        _mha_case(
            "4 heads, value_dim 3, output_dim 5, padded keys",
            3,
            2,
            7,
            6,
            4,
            4,
            2,
            400,
            dv=3,
            out=5,
            value_mask=[[1] * 7, [1, 1, 1, 0, 0, 0, 0], [1] * 6 + [0]],
        ),
        _mha_case("one query, batch of 1", 1, 1, 5, 4, 4, 2, 2, 410),
        _mha_case(
            "padding and causal mask together",
            2,
            5,
            None,
            6,
            6,
            3,
            2,
            420,
            causal=True,
            value_mask=[[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]],
        ),
        _mha_case(
            "a separate `key` tensor, a `query_mask` (B, T), causal "
            "cross-attention with more keys than queries (top-left, as Keras)",
            2,
            3,
            4,
            5,
            5,
            2,
            3,
            430,
            key=True,
            causal=True,
            query_mask=[[1, 1, 0], [1, 1, 1]],
        ),
        _mha_case(
            "under tf.function(jit_compile=True), causal",
            2,
            4,
            None,
            8,
            8,
            2,
            4,
            440,
            causal=True,
            compile=True,
        ),
    ]


def _mha_reference(case):
    """`keras.layers.MultiHeadAttention` (float64) with the case's weights."""
    import keras

    init = case.init
    layer = keras.layers.MultiHeadAttention(
        num_heads=init["num_heads"],
        key_dim=init["key_dim"],
        value_dim=init.get("value_dim"),
        output_shape=init.get("output_dim"),
        dtype="float64",
    )
    query = keras.ops.convert_to_tensor(case.inputs["query"])
    value = keras.ops.convert_to_tensor(case.inputs["value"])
    key = case.inputs.get("key")
    key = None if key is None else keras.ops.convert_to_tensor(key)
    layer(query, value, key=key)
    for part, names in (
        (layer._query_dense, ("W_q", "b_q")),
        (layer._key_dense, ("W_k", "b_k")),
        (layer._value_dense, ("W_v", "b_v")),
        (layer._output_dense, ("W_o", "b_o")),
    ):
        part.kernel.assign(case.weights[names[0]])
        part.bias.assign(case.weights[names[1]])
    mask = combined(case)
    output, weights = layer(
        query,
        value,
        key=key,
        attention_mask=None if mask is None else keras.ops.convert_to_tensor(mask),
        return_attention_scores=True,
    )
    return {
        "output": keras.ops.convert_to_numpy(output),
        "weights": keras.ops.convert_to_numpy(weights),
    }


def _mha_variant(mistake):
    def outputs(case):
        mask = combined(case)
        if mistake in ("no_diagonal", "one_ahead"):
            if not case.call_kwargs.get("use_causal_mask"):
                raise ValueError("no causal mask in this case")
            t, s = case.inputs["query"].shape[1], case.inputs["value"].shape[1]
            wrong = M.causal_mask(t, mistake, s)[None]
            base = combined_without_causal(case)
            mask = wrong if base is None else base & wrong
        inner = None if mistake in ("no_diagonal", "one_ahead") else mistake
        output, weights = M.mha(
            case.inputs["query"],
            case.inputs["value"],
            case.inputs.get("key"),
            case.weights,
            mask,
            inner,
        )
        return {"output": output, "weights": weights}

    return outputs


def combined_without_causal(case):
    kw = dict(case.call_kwargs)
    kw.pop("use_causal_mask", None)
    return combined(
        Case(title="", inputs=case.inputs, call_kwargs=kw, options=case.options)
    )


_MHA_MISTAKES = [
    (
        "no_scale",
        "Your scores are not scaled: divide each head's q k^T by sqrt(key_dim).",
    ),
    (
        "scale_d_model",
        "Your scores are divided by sqrt(d_model); each head's "
        "scale is 1 / sqrt(d_k), with d_k = key_dim, the size of one head.",
    ),
    (
        "wrong_axis",
        "Your attention weights sum to 1 over the queries; the "
        "softmax runs over the keys (the last axis).",
    ),
    ("inverted", "Your mask is inverted: True means 'may attend'."),
    ("wrong_sign", "Masked scores got +1e9 instead of -1e9."),
    (
        "split_wrong_axis",
        "Your heads are split along the wrong axis: reshape "
        "(B, T, h * d_k) to (B, T, h, d_k) (heads first), then move the head axis "
        "before T; merge back in the same order.",
    ),
    (
        "merge_wrong_order",
        "The heads are merged in the wrong order: move the "
        "head axis back next to d_v, (B, T, h, d_v), before reshaping to "
        "(B, T, h * d_v).",
    ),
    (
        "no_output_projection",
        "The output projection W_o is missing: the "
        "concatenated heads go through W_o (and b_o).",
    ),
    (
        "no_diagonal",
        "Your causal mask hides the diagonal: a position may attend to itself.",
    ),
    (
        "one_ahead",
        "Your causal mask lets each position see the next one: "
        "the future leaks, training looks perfect and inference fails.",
    ),
]

register(
    Spec(
        name="check_multi_head_attention",
        visible=_mha_visible,
        hidden=_mha_hidden,
        reference=_mha_reference,
        formula=_mha_variant(None),
        mistakes=[(m, h, _mha_variant(m)) for m, h in _MHA_MISTAKES],
        generic_hint="Project Q, K and V, split into heads (B, h, T, d_k), "
        "attend in every head at once, merge to (B, T, h * d_v), project with "
        "W_o. Combine query_mask, value_mask, attention_mask and the causal "
        "mask with a logical and.",
        round_trip=True,
    )
)
