"""Assignment 3's cases, reference outputs and mistakes (trusted side).

Expected outputs come from the reference layers
(`autograder.reference.transformer`, built on `keras.layers.MultiHeadAttention`
and proven equal to keras-hub's `TransformerEncoder`/`TransformerDecoder`),
run in float64 with the case's weights. The mistakes come from the NumPy
formulas in `transformer_math`.

Layers made of sublayers get their weights by sublayer: the key
`"blocks.0.self_attention:query/kernel"` is the weight ending in
`query/kernel` of `layer.blocks[0].self_attention`. The exercises name those
attributes (`self_attention`, `ffn`, `blocks`, ...).
"""

import contextlib

import numpy as np

from autograder.checks.core import (
    Case,
    fixed_array,
    fixed_generator,
    fixed_literal,
)
from autograder.checks.layers import WeightSpec, inject
from autograder.judge import Spec, register
from autograder.judge import transformer_math as M

#: A3's answers may use Keras's attention layers, not keras-hub's blocks.
BORROWING = "blocks"

# ------------------------------------------------------------------ weights


def _array(shape, salt, scale):
    return fixed_array(shape, salt, scale=scale)


def mha_weights(prefix, d, heads, key_dim, salt, d_context=None):
    d_context = d_context or d
    shapes = {
        "query/kernel": (d, heads, key_dim),
        "query/bias": (heads, key_dim),
        "key/kernel": (d_context, heads, key_dim),
        "key/bias": (heads, key_dim),
        "value/kernel": (d_context, heads, key_dim),
        "value/bias": (heads, key_dim),
        "attention_output/kernel": (heads, key_dim, d),
        "attention_output/bias": (d,),
    }
    out = {}
    for i, (name, shape) in enumerate(shapes.items()):
        if name.endswith("bias"):
            scale = 0.2
        else:  # the output projection's inputs are all heads' values
            fan_in = shape[0] * (shape[1] if name.startswith("attention_output") else 1)
            scale = 1.2 / np.sqrt(fan_in)
        out[f"{prefix}:{name}"] = _array(shape, salt * 13 + i, scale)
    return out


def norm_weights(prefix, d, salt):
    return {
        M.key(prefix, "gamma"): 1.0 + _array((d,), salt * 13, 0.2),
        M.key(prefix, "beta"): _array((d,), salt * 13 + 1, 0.1),
    }


def ffn_weights(prefix, d, dff, salt):
    return {
        M.key(prefix, "W_1"): _array((d, dff), salt * 13, 1.2 / np.sqrt(d)),
        M.key(prefix, "b_1"): _array((dff,), salt * 13 + 1, 0.2),
        M.key(prefix, "W_2"): _array((dff, d), salt * 13 + 2, 1.2 / np.sqrt(dff)),
        M.key(prefix, "b_2"): _array((d,), salt * 13 + 3, 0.2),
    }


def encoder_layer_weights(prefix, d, heads, dff, salt):
    p = f"{prefix}." if prefix else ""
    return {
        **mha_weights(f"{p}self_attention", d, heads, d // heads, salt),
        **norm_weights(f"{p}attention_norm", d, salt + 1),
        **ffn_weights(f"{p}ffn", d, dff, salt + 2),
        **norm_weights(f"{p}ffn_norm", d, salt + 3),
    }


def decoder_layer_weights(prefix, d, heads, dff, salt):
    p = f"{prefix}." if prefix else ""
    return {
        **mha_weights(f"{p}self_attention", d, heads, d // heads, salt),
        **norm_weights(f"{p}self_norm", d, salt + 1),
        **mha_weights(f"{p}cross_attention", d, heads, d // heads, salt + 2),
        **norm_weights(f"{p}cross_norm", d, salt + 3),
        **ffn_weights(f"{p}ffn", d, dff, salt + 4),
        **norm_weights(f"{p}ffn_norm", d, salt + 5),
    }


def stack_weights(prefix, layer_weights, layers, d, heads, dff, vocab, salt):
    p = f"{prefix}." if prefix else ""
    out = {f"{p}embedding:embeddings": _array((vocab, d), salt, 0.3)}
    for i in range(layers):
        out.update(layer_weights(f"{p}blocks.{i}", d, heads, dff, salt + 10 * (i + 1)))
    return out


def _tokens(lengths, total, vocab, salt):
    """Token ids `(B, total)`: row i has `lengths[i]` real ids, then padding."""
    rng = fixed_generator(7919 * (salt + 1))
    ids = rng.integers(1, vocab, size=(len(lengths), total))
    ids[np.arange(total)[None, :] >= np.asarray(lengths)[:, None]] = 0
    return ids.astype(np.int32)


def _real(lengths, total):
    return np.arange(total)[None, :] < np.asarray(lengths)[:, None]


# --------------------------------------------------------- running references


@contextlib.contextmanager
def _float64():
    import keras

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def reference_layer(cls_name, case, *args):
    """A reference layer in float64, built (called on `args`) and given the
    case's weights."""
    from autograder.reference import transformer as T

    layer = getattr(T, cls_name)(**case.init)
    layer(*args)
    inject(layer, [WeightSpec(n, v) for n, v in case.weights.items()])
    return layer


def _numpy(value):
    import keras

    return keras.ops.convert_to_numpy(value).astype(np.float64)


def _tensor(value):
    import keras

    return keras.ops.convert_to_tensor(value)


# -------------------------------------------------------- positional encoding


def _pe_size(length, depth):
    """Another `(length, depth)` of the same kind: a length of 1 stays 1 (one
    position), others within a factor of two; the depth even, within a factor
    of two, a multiple of 4 or not as the original is (an odd number of sine
    and cosine pairs)."""

    def sample(rng):
        drawn = 1 if length == 1 else int(rng.integers(length // 2, 2 * length + 1))
        quarter = depth // 4
        pairs = int(rng.integers(max(1, quarter // 2), 2 * quarter + 2))
        return drawn, 4 * pairs + depth % 4

    return sample


def _pe_case(length, depth, seed):
    length, depth = fixed_literal((length, depth), _pe_size(length, depth), seed)
    return Case(
        title=f"positional_encoding({length}, {depth})",
        inputs={},
        call_kwargs={"length": length, "depth": depth},
    )


def _pe_reference(case):
    from autograder.reference import transformer as T

    kw = case.call_kwargs
    return {
        "encoding": T.positional_encoding(kw["length"], kw["depth"], dtype="float64")
    }


def _pe_variant(mistake):
    def outputs(case):
        kw = case.call_kwargs
        return {"encoding": M.positional_encoding(kw["length"], kw["depth"], mistake)}

    return outputs


def _mistakes(pairs, variant):
    return [(m, h, variant(m)) for m, h in pairs]


register(
    Spec(
        name="check_positional_encoding",
        visible=lambda: [_pe_case(6, 8, 490), _pe_case(10, 16, 491)],
        hidden=lambda: [
            _pe_case(1, 4, 492),
            _pe_case(50, 128, 493),
            _pe_case(7, 6, 494),
        ],
        reference=_pe_reference,
        formula=_pe_variant(None),
        mistakes=_mistakes(
            [
                (
                    "concatenated",
                    "Your sines fill the first half of the dimensions and the cosines "
                    "the second. The paper interleaves them: PE[p, 2i] = sin(angle), "
                    "PE[p, 2i + 1] = cos(angle), one angle per pair.",
                ),
                (
                    "exponent_i",
                    "Dimension i uses 10000^(i / d): both members of a pair "
                    "(2i, 2i + 1) share the angle p / 10000^(2i / d). "
                    "Use 2 * (i // 2).",
                ),
                (
                    "swapped",
                    "Sine and cosine are swapped: sine at even dimensions, cosine "
                    "at odd ones.",
                ),
            ],
            _pe_variant,
        ),
        generic_hint="angles = positions[:, None] / 10000 ** (2 * (i // 2) / depth) "
        "for dimensions i; sin where i is even, cos where i is odd; shape "
        "(length, depth), float32.",
        borrowing=BORROWING,
    )
)

# ------------------------------------------------------ positional embedding


def _embedding_case(title, vocab, d, lengths, total, salt, functional=False):
    return Case(
        title=title,
        inputs={"tokens": _tokens(lengths, total, vocab, salt)},
        init={"vocab_size": vocab, "d_model": d},
        weights={"embeddings": _array((vocab, d), salt, 0.3)},
        notes=(f"token lengths {list(lengths)}, padded with 0 to {total}",),
        options={"functional": functional},
    )


def _masked_reference(cls_name):
    """The outputs and Keras mask of a reference layer called on token ids."""

    def reference(case):
        tokens = _tensor(case.inputs["tokens"])
        with _float64():
            layer = reference_layer(cls_name, case, tokens)
            output = layer(tokens)
            mask = layer.compute_mask(tokens)
        return {"output": _numpy(output), "mask": _numpy(mask)}

    return reference


def _embedding_variant(mistake):
    def outputs(case):
        out, mask = M.embed(case.inputs["tokens"], case.weights["embeddings"], mistake)
        return {"output": out, "mask": mask.astype(np.float64)}

    return outputs


_SCALE_HINT = (
    "The token embeddings are not multiplied by sqrt(d_model) before the "
    "positional encoding is added. Embedding values are small (about "
    "1/sqrt(d)); the scale keeps them from being drowned by the encoding."
)

register(
    Spec(
        name="check_positional_embedding",
        visible=lambda: [
            _embedding_case("vocabulary 11, d_model 8, padded", 11, 8, [5, 3], 5, 500),
            _embedding_case("no padding", 11, 8, [4], 4, 501),
        ],
        hidden=lambda: [
            _embedding_case(
                "vocabulary 20, d_model 16, in a tf.function for any length "
                "(the length is a tensor, as when batches vary in length)",
                20,
                16,
                [12, 7, 1],
                12,
                510,
                functional=True,
            ),
            _embedding_case("a single token", 6, 4, [1], 1, 511),
        ],
        reference=_masked_reference("PositionalEmbedding"),
        formula=_embedding_variant(None),
        mistakes=_mistakes(
            [
                ("no_scale", _SCALE_HINT),
                (
                    "scale_both",
                    "The sum is multiplied by sqrt(d_model); only the token "
                    "embeddings are scaled, then the encoding is added.",
                ),
                (
                    "no_positional",
                    "The positional encoding is missing: add "
                    "positional_encoding(length, d_model) to the scaled embeddings "
                    "(sliced to the input's length).",
                ),
            ],
            _embedding_variant,
        ),
        generic_hint="output = Embedding(vocab, d, mask_zero=True)(tokens) * "
        "sqrt(d_model) + positional_encoding(T, d_model); compute_mask returns "
        "tokens != 0 (the Embedding's own compute_mask).",
        round_trip=True,
        borrowing=BORROWING,
    )
)

# ------------------------------------------------------------- feed-forward


def _ffn_case(title, shape, dff, salt):
    d = shape[-1]
    return Case(
        title=title,
        inputs={"x": _array(shape, salt, 1.0)},
        init={"d_model": d, "dff": dff},
        weights=ffn_weights("", d, dff, salt),
    )


def _ffn_reference(case):
    x = _tensor(case.inputs["x"])
    with _float64():
        layer = reference_layer("FeedForward", case, x)
        return {"output": _numpy(layer(x))}


def _ffn_variant(mistake):
    def outputs(case):
        return {"output": M.feed_forward(case.inputs["x"], case.weights, "", mistake)}

    return outputs


register(
    Spec(
        name="check_feed_forward",
        visible=lambda: [
            _ffn_case("(B, T, d) = (2, 4, 8), dff 12", (2, 4, 8), 12, 520)
        ],
        hidden=lambda: [
            _ffn_case("(B, T, d) = (3, 5, 6), dff 10", (3, 5, 6), 10, 530),
            _ffn_case("a 4-D input (2, 2, 3, 4), dff 7", (2, 2, 3, 4), 7, 531),
        ],
        reference=_ffn_reference,
        formula=_ffn_variant(None),
        mistakes=_mistakes(
            [
                (
                    "no_relu",
                    "The inner layer has no ReLU: max(0, x W_1 + b_1); two linear "
                    "maps in a row are just one linear map.",
                ),
                (
                    "relu_on_output",
                    "The output went through a ReLU too: only the inner layer has "
                    "the activation; x W_2 + b_2 is linear (it feeds a residual sum).",
                ),
            ],
            _ffn_variant,
        ),
        generic_hint="Dense(dff, activation='relu') then Dense(d_model), applied "
        "to the last axis.",
        round_trip=True,
        borrowing=BORROWING,
    )
)

# ---------------------------------------------------------------- Add & Norm


def _add_norm_case(title, shape, salt, scale=1.0):
    d = shape[-1]
    return Case(
        title=title,
        inputs={"x": _array(shape, salt, scale), "y": _array(shape, salt + 1, scale)},
        init={"dropout": 0.1},
        weights=norm_weights("", d, salt),
        notes=(f"inputs of standard deviation {scale:g}",),
    )


def _add_norm_reference(case):
    x, y = _tensor(case.inputs["x"]), _tensor(case.inputs["y"])
    with _float64():
        layer = reference_layer("AddNorm", case, x, y)
        return {"output": _numpy(layer(x, y))}


def _add_norm_variant(mistake):
    def outputs(case):
        i = case.inputs
        return {"output": M.add_norm(i["x"], i["y"], case.weights, "", mistake)}

    return outputs


register(
    Spec(
        name="check_add_norm",
        visible=lambda: [
            _add_norm_case("(B, T, d) = (2, 4, 8)", (2, 4, 8), 540),
            _add_norm_case(
                "small activations: the epsilon 1e-5 shows", (1, 3, 8), 545, 0.01
            ),
        ],
        hidden=lambda: [
            _add_norm_case("d = 6", (3, 2, 6), 550),
            _add_norm_case(
                "small activations: the epsilon shows", (2, 3, 8), 551, 0.01
            ),
        ],
        reference=_add_norm_reference,
        formula=_add_norm_variant(None),
        mistakes=_mistakes(
            [
                (
                    "pre_norm",
                    "You normalised the sublayer's output and then added x "
                    "(x + LayerNorm(y)). The paper's Add & Norm is post-norm: "
                    "LayerNorm(x + Dropout(y)).",
                ),
                (
                    "no_residual",
                    "The residual is missing: LayerNorm(x + Dropout(y)), not "
                    "LayerNorm(y). Without it, deep stacks do not train.",
                ),
                (
                    "default_epsilon",
                    "Your LayerNormalization uses Keras's default epsilon 1e-3; the "
                    "exercise (and keras-hub's Transformer layers) use 1e-5. It "
                    "matters when activations are small.",
                ),
            ],
            _add_norm_variant,
        ),
        generic_hint="LayerNormalization(epsilon=1e-5)(x + Dropout(rate)(y)); the "
        "checks call it at inference (dropout off).",
        round_trip=True,
        borrowing=BORROWING,
    )
)

# ------------------------------------------------------------- encoder layer

D, HEADS, DFF = 8, 2, 12


def _encoder_layer_case(
    title, b, t, salt, lengths=None, d=D, heads=HEADS, dff=DFF, keras_mask=False
):
    x = _array((b, t, d), salt, 1.0)
    kwargs = {}
    valid = {}
    if lengths is not None:
        real = _real(lengths, t)
        valid = {"output": real[..., None]}
        if keras_mask:
            x = x * real[..., None]  # Masking(0.0) finds the padding
        else:
            kwargs["mask"] = real
    return Case(
        title=title,
        inputs={"x": x},
        init={"d_model": d, "num_heads": heads, "dff": dff, "dropout": 0.1},
        call_kwargs=kwargs,
        weights=encoder_layer_weights("", d, heads, dff, salt),
        valid=valid,
        options={"keras_mask": keras_mask},
        notes=() if lengths is None else (f"real lengths {list(lengths)} of {t}",),
    )


def _padding_of(case):
    """The case's `(B, S)` padding mask, however it is given."""
    if case.options.get("keras_mask"):
        return np.any(case.inputs["x"] != 0, -1)
    return case.call_kwargs.get("mask")


def _encoder_layer_reference(case):
    x = _tensor(case.inputs["x"])
    mask = _padding_of(case)
    with _float64():
        layer = reference_layer("EncoderLayer", case, x)
        return {"output": _numpy(layer(x, mask=mask))}


def _encoder_layer_variant(mistake):
    def outputs(case):
        out = M.encoder_layer(
            case.inputs["x"], case.weights, "", _padding_of(case), mistake
        )
        return {"output": out}

    return outputs


_PRE_NORM = (
    "Your layer is pre-norm (x + f(LayerNorm(x))). Pre-norm trains more easily "
    "in deep stacks and is what many newer models use, but this exercise (like "
    "the paper and keras-hub's default) is post-norm: LayerNorm(x + f(x))."
)
_NO_RESIDUAL = "A residual connection is missing: each sublayer is LayerNorm(x + f(x))."

register(
    Spec(
        name="check_encoder_layer",
        visible=lambda: [
            _encoder_layer_case(
                "(B, T, d) = (2, 5, 8), 2 heads, no padding", 2, 5, 600
            ),
            _encoder_layer_case(
                "padding given as `mask=` (B, T)", 2, 5, 601, lengths=[3, 5]
            ),
        ],
        hidden=lambda: [
            _encoder_layer_case(
                "4 heads, d_model 8, dff 16, padding",
                3,
                4,
                610,
                [4, 2, 1],
                heads=4,
                dff=16,
            ),
            _encoder_layer_case(
                "padding as a Keras mask (Masking layer, functional model)",
                2,
                6,
                611,
                lengths=[6, 2],
                keras_mask=True,
            ),
            _encoder_layer_case("a batch of 1, padded", 1, 5, 612, lengths=[3]),
        ],
        reference=_encoder_layer_reference,
        formula=_encoder_layer_variant(None),
        mistakes=_mistakes(
            [
                ("pre_norm", _PRE_NORM),
                ("no_residual", _NO_RESIDUAL),
                (
                    "mask_ignored",
                    "The padding mask is not used: padded positions are attended to. "
                    "Give the self-attention attention_mask = mask[:, None, :] "
                    "(every query ignores padded keys).",
                ),
            ],
            _encoder_layer_variant,
        ),
        generic_hint="x = attention_norm(x, self_attention(x, x, attention_mask="
        "mask[:, None, :])); return ffn_norm(x, ffn(x)), with "
        "keras.layers.MultiHeadAttention(num_heads, key_dim=d_model // num_heads).",
        round_trip=True,
        borrowing=BORROWING,
    )
)

# ------------------------------------------------------------- decoder layer


def _decoder_layer_case(
    title,
    b,
    t,
    s,
    salt,
    lengths=None,
    context_lengths=None,
    heads=HEADS,
    dff=DFF,
    scores=False,
):
    d = D
    kwargs = {}
    valid = {}
    if lengths is not None:
        real = _real(lengths, t)
        kwargs["mask"] = real
        valid = {"output": real[..., None], "scores": real[:, None, :, None]}
    if context_lengths is not None:
        kwargs["context_mask"] = _real(context_lengths, s)
    if scores:
        kwargs["return_attention_scores"] = True
    return Case(
        title=title,
        inputs={
            "x": _array((b, t, d), salt, 1.0),
            "context": _array((b, s, d), salt + 1, 1.0),
        },
        init={"d_model": d, "num_heads": heads, "dff": dff, "dropout": 0.1},
        call_kwargs=kwargs,
        weights=decoder_layer_weights("", d, heads, dff, salt),
        valid=valid,
        notes=tuple(
            note
            for note in (
                None if lengths is None else f"target lengths {list(lengths)} of {t}",
                None
                if context_lengths is None
                else f"context lengths {list(context_lengths)} of {s}",
            )
            if note
        ),
    )


def _decoder_layer_reference(case):
    x, context = _tensor(case.inputs["x"]), _tensor(case.inputs["context"])
    kw = dict(case.call_kwargs)
    with _float64():
        layer = reference_layer("DecoderLayer", case, x, context)
        result = layer(x, context, **kw)
    if kw.get("return_attention_scores"):
        return {"output": _numpy(result[0]), "scores": _numpy(result[1])}
    return {"output": _numpy(result)}


def _decoder_layer_variant(mistake):
    def outputs(case):
        kw = case.call_kwargs
        out, scores = M.decoder_layer(
            case.inputs["x"],
            case.inputs["context"],
            case.weights,
            "",
            kw.get("mask"),
            kw.get("context_mask"),
            mistake,
        )
        if kw.get("return_attention_scores"):
            if (
                mistake == "cross_on_self"
                and scores.shape[-1] != case.inputs["context"].shape[1]
            ):
                return {"output": out}
            return {"output": out, "scores": scores}
        return {"output": out}

    return outputs


_DECODER_MISTAKES = [
    (
        "no_causal",
        "The decoder's self-attention sees the future: pass use_causal_mask=True. "
        "Training would look perfect (the answer is visible) and generation fail.",
    ),
    (
        "context_mask_ignored",
        "The cross-attention attends to the source's padding: give it "
        "attention_mask = context_mask[:, None, :].",
    ),
    (
        "cross_on_self",
        "The cross-attention's keys and values are the decoder's own states; they "
        "are the encoder's output (`context`): cross_attention(x, context).",
    ),
    ("pre_norm", _PRE_NORM),
    ("no_residual", _NO_RESIDUAL),
]

register(
    Spec(
        name="check_decoder_layer",
        visible=lambda: [
            _decoder_layer_case("target 4, source 6, no padding", 2, 4, 6, 620),
            _decoder_layer_case(
                "padded target and source, return_attention_scores=True",
                2,
                5,
                6,
                621,
                lengths=[5, 3],
                context_lengths=[4, 6],
                scores=True,
            ),
        ],
        hidden=lambda: [
            _decoder_layer_case(
                "4 heads, two target tokens, padded source",
                3,
                2,
                5,
                630,
                context_lengths=[5, 2, 1],
                heads=4,
                scores=True,
            ),
            _decoder_layer_case(
                "a batch of 1, a padded target and no `context_mask`",
                1,
                4,
                3,
                632,
                lengths=[3],
            ),
            _decoder_layer_case(
                "target longer than source, both padded",
                2,
                7,
                3,
                631,
                lengths=[7, 4],
                context_lengths=[2, 3],
                dff=16,
            ),
        ],
        reference=_decoder_layer_reference,
        formula=_decoder_layer_variant(None),
        mistakes=_mistakes(_DECODER_MISTAKES, _decoder_layer_variant),
        generic_hint="x = self_norm(x, self_attention(x, x, attention_mask=mask[:, "
        "None, :], use_causal_mask=True)); x = cross_norm(x, cross_attention(x, "
        "context, attention_mask=context_mask[:, None, :])); return "
        "ffn_norm(x, ffn(x)) (and the cross-attention's scores when asked).",
        round_trip=True,
        borrowing=BORROWING,
    )
)

# -------------------------------------------------------------------- stacks

SRC_VOCAB, TGT_VOCAB = 11, 13


def _stack_init(layers, vocab, heads=HEADS, dff=DFF):
    return {
        "num_layers": layers,
        "d_model": D,
        "num_heads": heads,
        "dff": dff,
        "vocab_size": vocab,
        "dropout": 0.1,
    }


def _encoder_case(title, layers, lengths, total, salt, heads=HEADS):
    return Case(
        title=title,
        inputs={"tokens": _tokens(lengths, total, SRC_VOCAB, salt)},
        init=_stack_init(layers, SRC_VOCAB, heads),
        weights=stack_weights(
            "", encoder_layer_weights, layers, D, heads, DFF, SRC_VOCAB, salt
        ),
        valid={"output": _real(lengths, total)[..., None]},
        notes=(f"token lengths {list(lengths)}, padded with 0 to {total}",),
    )


def _encoder_variant(mistake):
    def outputs(case):
        out, mask = M.encoder(
            case.inputs["tokens"], case.weights, case.init["num_layers"], "", mistake
        )
        return {"output": out, "mask": mask.astype(np.float64)}

    return outputs


_STACK_MISTAKES = [
    ("no_scale", _SCALE_HINT),
    (
        "no_positional",
        "The positional encoding is missing: without it the stack cannot tell "
        "one word order from another.",
    ),
    ("pre_norm", _PRE_NORM),
]

register(
    Spec(
        name="check_encoder",
        visible=lambda: [
            _encoder_case("2 layers, padded source", 2, [5, 3], 5, 640),
        ],
        hidden=lambda: [
            _encoder_case("1 layer, 4 heads", 1, [4, 4, 1], 4, 650, heads=4),
            _encoder_case("3 layers", 3, [6, 2], 6, 651),
        ],
        reference=_masked_reference("Encoder"),
        formula=_encoder_variant(None),
        mistakes=_mistakes(
            [
                *_STACK_MISTAKES,
                (
                    "mask_ignored",
                    "The padding mask is not passed to the layers: "
                    "mask = embedding.compute_mask(tokens), then layer(x, mask=mask).",
                ),
            ],
            _encoder_variant,
        ),
        generic_hint="x = dropout(embedding(tokens)); mask = "
        "embedding.compute_mask(tokens); x = block(x, mask=mask) for each block; "
        "compute_mask returns the padding mask.",
        round_trip=True,
        borrowing=BORROWING,
    )
)


def _decoder_case(title, layers, lengths, total, context_lengths, s, salt, heads=HEADS):
    real = _real(lengths, total)
    return Case(
        title=title,
        inputs={
            "tokens": _tokens(lengths, total, TGT_VOCAB, salt),
            "context": _array((len(lengths), s, D), salt + 1, 1.0),
        },
        init=_stack_init(layers, TGT_VOCAB, heads),
        call_kwargs={"context_mask": _real(context_lengths, s)},
        weights=stack_weights(
            "", decoder_layer_weights, layers, D, heads, DFF, TGT_VOCAB, salt
        ),
        valid={"output": real[..., None]},
        notes=(
            f"target lengths {list(lengths)} of {total}; context lengths "
            f"{list(context_lengths)} of {s}",
        ),
    )


def _decoder_reference(case):
    tokens, context = _tensor(case.inputs["tokens"]), _tensor(case.inputs["context"])
    kw = case.call_kwargs
    with _float64():
        layer = reference_layer("Decoder", case, tokens, context)
        return {"output": _numpy(layer(tokens, context, **kw))}


def _decoder_variant(mistake):
    def outputs(case):
        out = M.decoder(
            case.inputs["tokens"],
            case.inputs["context"],
            case.weights,
            case.init["num_layers"],
            "",
            case.call_kwargs["context_mask"],
            mistake,
        )
        return {"output": out}

    return outputs


register(
    Spec(
        name="check_decoder",
        visible=lambda: [
            _decoder_case(
                "2 layers, padded target and source", 2, [4, 2], 4, [6, 3], 6, 660
            ),
        ],
        hidden=lambda: [
            _decoder_case(
                "1 layer, 4 heads", 1, [3, 3, 1], 3, [2, 5, 5], 5, 670, heads=4
            ),
            _decoder_case(
                "3 layers, target longer than source", 3, [7, 5], 7, [3, 2], 3, 671
            ),
        ],
        reference=_decoder_reference,
        formula=_decoder_variant(None),
        mistakes=_mistakes(
            [*_STACK_MISTAKES, *_DECODER_MISTAKES[:2]], _decoder_variant
        ),
        generic_hint="x = dropout(embedding(tokens)); mask = "
        "embedding.compute_mask(tokens); x = block(x, context, mask=mask, "
        "context_mask=context_mask) for each block.",
        round_trip=True,
        borrowing=BORROWING,
    )
)

# -------------------------------------------------------------- Transformer


def _transformer_case(title, layers, src_lengths, s, tgt_lengths, t, salt, heads=HEADS):
    weights = {
        **stack_weights(
            "encoder", encoder_layer_weights, layers, D, heads, DFF, SRC_VOCAB, salt
        ),
        **stack_weights(
            "decoder",
            decoder_layer_weights,
            layers,
            D,
            heads,
            DFF,
            TGT_VOCAB,
            salt + 100,
        ),
        "final:kernel": _array((D, TGT_VOCAB), salt + 200, 1.0 / np.sqrt(D)),
        "final:bias": _array((TGT_VOCAB,), salt + 201, 0.2),
    }
    return Case(
        title=title,
        inputs={
            "source": _tokens(src_lengths, s, SRC_VOCAB, salt),
            "target": _tokens(tgt_lengths, t, TGT_VOCAB, salt + 1),
        },
        init={
            "num_layers": layers,
            "d_model": D,
            "num_heads": heads,
            "dff": DFF,
            "input_vocab": SRC_VOCAB,
            "target_vocab": TGT_VOCAB,
            "dropout": 0.1,
        },
        weights=weights,
        valid={"logits": _real(tgt_lengths, t)[..., None]},
        notes=(
            f"source lengths {list(src_lengths)} of {s}; target lengths "
            f"{list(tgt_lengths)} of {t}",
        ),
    )


def _transformer_reference(case):
    source, target = _tensor(case.inputs["source"]), _tensor(case.inputs["target"])
    with _float64():
        model = reference_layer("Transformer", case, (source, target))
        return {"logits": _numpy(model((source, target)))}


def _transformer_variant(mistake):
    def outputs(case):
        logits = M.transformer(
            case.inputs["source"],
            case.inputs["target"],
            case.weights,
            case.init["num_layers"],
            mistake,
        )
        return {"logits": logits}

    return outputs


register(
    Spec(
        name="check_transformer",
        visible=lambda: [
            _transformer_case(
                "2 layers, padded source and target", 2, [5, 2], 5, [4, 3], 4, 700
            ),
        ],
        hidden=lambda: [
            _transformer_case(
                "1 layer, 4 heads, batch of 3",
                1,
                [3, 1, 4],
                4,
                [2, 5, 1],
                5,
                710,
                heads=4,
            ),
        ],
        reference=_transformer_reference,
        formula=_transformer_variant(None),
        mistakes=_mistakes(
            [
                (
                    "softmax",
                    "Your model returns probabilities (a softmax on the last layer). "
                    "Return logits: the loss applies the softmax itself, more "
                    "stably (from_logits=True).",
                ),
                _DECODER_MISTAKES[1],
                _DECODER_MISTAKES[0],
            ],
            _transformer_variant,
        ),
        generic_hint="context = encoder(source); x = decoder(target, context, "
        "context_mask=encoder.compute_mask(source)); return final(x), a "
        "Dense(target_vocab) with no activation.",
        round_trip=True,
        borrowing=BORROWING,
    )
)

# ------------------------------------------------------------ warm-up schedule

STEPS = (0, 1, 10, 99, 399, 400, 401, 1000, 10000)
# Learning rates are about 1e-3: compared as 1000 x rate, so the checks'
# tolerance (5e-3) is relative to them.
SCALE = 1000.0
RATE = "1000 x rate"


def _schedule_sizes(widths, warmups):
    """Another `(d_model, warmup_steps)`: a width from `widths`, a warm-up in
    `warmups` (inclusive). The ranges keep the first step's rate, the one a
    schedule counting from 0 gets wrong, well above the tolerance."""
    low, high = warmups
    return lambda rng: (int(rng.choice(widths)), int(rng.integers(low, high + 1)))


def _schedule_steps(today_warmup, warmup, seed):
    """`STEPS` at draw 0. At any other draw, steps in the same places
    relative to the warm-up: 0 and 1 stay, the peak (step + 1 = warmup) and
    the steps just after it follow the warm-up, the others are drawn inside
    the warm-up or after it (up to 30 warm-ups)."""

    def place(rng, step):
        if step in (0, 1):
            return step
        if today_warmup - 1 <= step <= today_warmup + 1:
            return warmup + step - today_warmup
        if step + 1 < today_warmup:
            return int(rng.integers(2, warmup - 1))
        return int(rng.integers(warmup + 2, 30 * warmup + 1))

    def sample(rng):
        while True:
            steps = sorted(place(rng, step) for step in STEPS)
            if len(set(steps)) == len(steps):
                return tuple(steps)

    return fixed_literal(STEPS, sample, seed)


def _schedule_case(title, d, warmup, seed, options=None, sizes=None):
    """`sizes` (a sampler of `(d_model, warmup)`) draws other sizes at a
    fresh draw; without it they stay and only the steps are drawn. `title`
    may name them as `{d_model}` and `{warmup}`."""
    today_warmup = warmup
    if sizes is not None:
        d, warmup = fixed_literal((d, warmup), sizes, seed)
    steps = _schedule_steps(today_warmup, warmup, seed + 1)
    return Case(
        title=title.format(d_model=d, warmup=warmup),
        inputs={"steps": np.array(steps, np.int64)},
        init={"d_model": d, "warmup_steps": warmup},
        options=options or {},
        notes=(f"steps {list(steps)}",),
    )


def _schedule_reference(case):
    import keras

    from autograder.reference import transformer as T

    schedule = T.WarmupSchedule(**case.init)
    rates = [
        float(schedule(keras.ops.convert_to_tensor(s))) for s in case.inputs["steps"]
    ]
    return {RATE: SCALE * np.array(rates, np.float64)}


def _schedule_variant(mistake):
    def outputs(case):
        i = case.init
        rate = M.warmup_schedule(
            case.inputs["steps"], i["d_model"], i["warmup_steps"], mistake
        )
        return {RATE: SCALE * rate}

    return outputs


register(
    Spec(
        name="check_warmup_schedule",
        visible=lambda: [
            _schedule_case(
                "d_model {d_model}, warmup {warmup}",
                64,
                400,
                740,
                sizes=_schedule_sizes(range(16, 65, 8), (100, 400)),
            ),
            _schedule_case(
                "the default warm-up: WarmupSchedule(d_model={d_model}), 4000 steps",
                128,
                4000,
                746,
                {"default_warmup": True},
            ),
        ],
        hidden=lambda: [
            _schedule_case("the paper's d_model 512, warmup 4000", 512, 4000, 742),
            _schedule_case(
                "inside an Adam optimizer, steps as int64 tensors",
                128,
                100,
                744,
                {"optimizer": True},
                sizes=_schedule_sizes(range(64, 257, 32), (50, 200)),
            ),
        ],
        reference=_schedule_reference,
        formula=_schedule_variant(None),
        mistakes=_mistakes(
            [
                (
                    "from_zero",
                    "Your schedule is one step behind: Keras counts optimizer steps "
                    "from 0, so the rate of the first step is 0 and that update is "
                    "lost. Use step + 1 (the formula counts steps from 1).",
                ),
                (
                    "warmup_sqrt",
                    "The warm-up term is step * warmup^-0.5; it is step * "
                    "warmup^-1.5, so both terms meet at step = warmup.",
                ),
                (
                    "no_d_model",
                    "The factor d_model^-0.5 is missing: wider models take smaller "
                    "steps.",
                ),
            ],
            _schedule_variant,
        ),
        round_trip=True,
        generic_hint="step = cast(step, float32) + 1; return d_model ** -0.5 * "
        "minimum(step ** -0.5, step * warmup_steps ** -1.5); get_config returns "
        "d_model and warmup_steps.",
        borrowing=BORROWING,
    )
)

# ------------------------------------------------------------- masked loss


def _loss_case(title, b, t, v, lengths, salt, smoothing=0.0, right=0.5):
    rng = fixed_generator(104729 * (salt + 1))
    labels = rng.integers(1, v, size=(b, t))
    labels[~_real(lengths, t)] = 0
    logits = _array((b, t, v), salt, 2.0)
    hit = rng.random((b, t)) < right  # some predictions right, so accuracy is not 0
    rows, cols = np.nonzero(hit)
    logits[rows, cols, labels[rows, cols]] += 6.0
    return Case(
        title=title,
        inputs={"labels": labels.astype(np.int32), "logits": logits},
        call_kwargs={"label_smoothing": smoothing},
        notes=(f"real lengths {list(lengths)} of {t}, vocabulary {v}",),
    )


def _loss_reference(case):
    import keras

    from autograder.reference import transformer as T

    labels = keras.ops.convert_to_tensor(case.inputs["labels"])
    logits = keras.ops.convert_to_tensor(case.inputs["logits"])
    loss = T.masked_loss(case.call_kwargs["label_smoothing"])(labels, logits)
    accuracy = T.masked_accuracy(labels, logits)
    return {"loss": _numpy(loss), "accuracy": _numpy(accuracy)}


def _loss_variant(mistake):
    def outputs(case):
        labels, logits = case.inputs["labels"], case.inputs["logits"]
        smoothing = case.call_kwargs["label_smoothing"]
        if mistake == "smoothing_rest" and not smoothing:
            raise ValueError("no smoothing in this case")
        return {
            "loss": np.float64(M.masked_loss(labels, logits, smoothing, mistake)),
            "accuracy": np.float64(
                M.masked_accuracy(
                    labels, logits, "pad_counted" if mistake == "pad_counted" else None
                )
            ),
        }

    return outputs


def _accuracy_only(mistake):
    def outputs(case):
        labels, logits = case.inputs["labels"], case.inputs["logits"]
        smoothing = case.call_kwargs["label_smoothing"]
        return {
            "loss": np.float64(M.masked_loss(labels, logits, smoothing)),
            "accuracy": np.float64(M.masked_accuracy(labels, logits, mistake)),
        }

    return outputs


_PAD_COUNTED = (
    "Padding is counted: average over real tokens only (labels != 0). With "
    "padding counted, a model is rewarded for predicting padding."
)

register(
    Spec(
        name="check_masked_loss",
        visible=lambda: [
            _loss_case("padded labels, no smoothing", 2, 5, 7, [5, 2], 720),
            _loss_case("label_smoothing=0.1", 2, 4, 6, [3, 4], 721, smoothing=0.1),
        ],
        hidden=lambda: [
            _loss_case("no padding at all", 3, 3, 9, [3, 3, 3], 730),
            _loss_case(
                "mostly padding, label_smoothing=0.2", 3, 8, 5, [1, 2, 8], 731, 0.2
            ),
        ],
        reference=_loss_reference,
        formula=_loss_variant(None),
        mistakes=[
            ("pad_counted", _PAD_COUNTED, _loss_variant("pad_counted")),
            (
                "smoothing_rest",
                "Your smoothing spreads eps over the V - 1 wrong classes; the "
                "usual (Keras's) label smoothing is one_hot * (1 - eps) + eps / V.",
                _loss_variant("smoothing_rest"),
            ),
            (
                "sum",
                "The loss is a sum over tokens; divide by the number of real tokens "
                "(the loss must not grow with the batch's length).",
                _loss_variant("sum"),
            ),
            (
                "accuracy_pad_counted",
                "masked_accuracy: " + _PAD_COUNTED,
                _accuracy_only("pad_counted"),
            ),
        ],
        generic_hint="loss: per-token cross-entropy from logits against "
        "one_hot * (1 - eps) + eps / V, summed over real tokens and divided by "
        "their number; accuracy: argmax == label over real tokens.",
        borrowing=BORROWING,
    )
)

# ----------------------------------------------------------- greedy decoding


_NO_STOP = (
    "Rows go on after their end token: once a row has produced end_id, append "
    "0 (padding) to it until every row is done."
)


def _relabelled(script, start_id, end_id, vocab):
    """The same script with every token renamed (a permutation of 1 ..
    vocab - 1 that moves each id in use): the same rows end at the same
    steps, the same tokens repeat, and every decoded id changes."""
    used = np.unique([*np.ravel(script), start_id, end_id])

    def sample(rng):
        while True:
            rename = np.concatenate([[0], rng.permutation(np.arange(1, vocab))])
            if (rename[used] != used).all():
                renamed = rename[script].astype(np.int32)
                return renamed, int(rename[start_id]), int(rename[end_id])

    return sample


def _greedy_case(title, script, start_id, end_id, max_length, seed, vocab=8):
    """`title` may name the ids as `{start_id}` and `{end_id}`."""
    script = np.asarray(script, np.int32)
    rows = script.shape[0]
    script, start_id, end_id = fixed_literal(
        (script, start_id, end_id), _relabelled(script, start_id, end_id, vocab), seed
    )
    source = fixed_literal(
        np.arange(1, 1 + 3 * rows, dtype=np.int32).reshape(rows, 3),
        lambda rng: rng.integers(1, 10, size=(rows, 3)).astype(np.int32),
        seed + 1,
    )
    return Case(
        title=title.format(start_id=start_id, end_id=end_id),
        inputs={"source": source},
        call_kwargs={"start_id": start_id, "end_id": end_id, "max_length": max_length},
        options={"script": script.tolist(), "vocab": vocab},
        notes=(
            "a scripted model: fed the start token and the tokens it answered "
            "before (0 after the row's end), row r answers script[r][n] after n "
            f"decoded tokens, script = {script.tolist()}; fed other tokens, "
            "another token",
        ),
    )


def greedy_width(case):
    """Outputs are padded with 0 to `max_length + 1` columns, so a row of any
    length (a start token kept too) can be compared."""
    return case.call_kwargs["max_length"] + 1


def _pad(ids, width):
    out = np.zeros((ids.shape[0], width))
    out[:, : ids.shape[1]] = ids
    return out


def _greedy_reference(case):
    from autograder.checks.transformer import ScriptedModel
    from autograder.reference import transformer as T

    kw = case.call_kwargs
    model = ScriptedModel(
        case.options["script"], case.options["vocab"], kw["start_id"], kw["end_id"]
    )
    ids = T.greedy_decode(
        model, case.inputs["source"], kw["start_id"], kw["end_id"], kw["max_length"]
    )
    return {"ids": _pad(np.asarray(ids), greedy_width(case))}


def _greedy_variant(mistake):
    def outputs(case):
        kw = case.call_kwargs
        ids = M.greedy(
            np.asarray(case.options["script"]),
            kw["start_id"],
            kw["end_id"],
            kw["max_length"],
            mistake,
        )
        return {"ids": _pad(ids, greedy_width(case))}

    return outputs


register(
    Spec(
        name="check_greedy_decode",
        visible=lambda: [
            _greedy_case(
                "3 rows ending at different steps (end_id {end_id})",
                [[5, 6, 2, 7, 7, 7], [4, 2, 6, 6, 6, 6], [7, 7, 7, 5, 2, 3]],
                1,
                2,
                6,
                750,
            ),
            _greedy_case(
                "a row that never ends: stop at max_length",
                [[5, 5, 5, 5], [3, 2, 4, 4]],
                1,
                2,
                4,
                752,
            ),
        ],
        hidden=lambda: [
            _greedy_case(
                "a batch of one, end at the first step", [[3, 4, 4]], 1, 3, 3, 760
            ),
            _greedy_case(
                "start {start_id}, end {end_id}, max_length 5",
                [[1, 2, 7, 1, 1], [7, 1, 1, 1, 1], [2, 2, 2, 2, 7]],
                6,
                7,
                5,
                762,
            ),
            _greedy_case("max_length 1", [[4], [2]], 1, 2, 1, 764),
        ],
        reference=_greedy_reference,
        formula=_greedy_variant(None),
        mistakes=_mistakes(
            [
                (
                    "keeps_start",
                    "The start token is in your output: return the generated "
                    "tokens only (drop column 0).",
                ),
                ("no_stop", _NO_STOP),
                ("never_stops", _NO_STOP),
                (
                    "first_token",
                    "Every step decoded the row's first token again: call the "
                    "model on all the tokens so far, `model((source, output))` "
                    "with each step's token appended to `output` (predictions fed "
                    "back), and take the argmax at the *last* position, "
                    "`logits[:, -1]`.",
                ),
                (
                    "stops_at_first",
                    "Decoding stops when the first row ends; the batch stops when "
                    "*every* row has produced end_id (keep a `done` flag per row).",
                ),
            ],
            _greedy_variant,
        ),
        generic_hint="output = [[start_id]] * B; repeat up to max_length times: "
        "logits = model((source, output), training=False); next = argmax of the "
        "last position; 0 where a row is done; append; stop when every row is "
        "done. Return output[:, 1:].",
        borrowing=BORROWING,
    )
)
