"""Checks for Assignment 3 (the Transformer).

How each exercise is called; the cases, the expected outputs (from the
reference layers, built on `keras.layers.MultiHeadAttention`) and the
mistakes are in `autograder.judge.transformer`.

Layers made of sublayers get their weights sublayer by sublayer, through the
attribute names the exercises give (`self_attention`, `ffn`, `blocks`, ...).
"""

import numpy as np

from autograder.checks.core import CheckFailed, check, run_check, student_code
from autograder.checks.layers import (
    LayerProbe,
    as_tensor,
    build_eagerly,
    call_layer,
    config_round_trip,
    inject,
)

__all__ = [
    "ScriptedModel",
    "check_add_norm",
    "check_decoder",
    "check_decoder_layer",
    "check_encoder",
    "check_encoder_layer",
    "check_feed_forward",
    "check_greedy_decode",
    "check_masked_loss",
    "check_positional_embedding",
    "check_positional_encoding",
    "check_transformer",
    "check_warmup_schedule",
]

#: Keras's attention layers are allowed here; keras-hub's blocks are not.
BORROWING = "blocks"


def _run(check_name, cases, probe):
    run_check(check_name, cases, probe, borrowing=BORROWING)


def _mask_of(layer, tokens, what):
    with student_code(f"`{what}.compute_mask`"):
        mask = layer.compute_mask(as_tensor(tokens))
    if mask is None:
        raise CheckFailed(
            f"`{what}.compute_mask(tokens)` returned None: the padding mask "
            "(tokens != 0) must be carried on, as a Keras mask, so that the "
            "attention layers after it ignore padding. Use "
            "`Embedding(..., mask_zero=True)` and return its `compute_mask`."
            + _maskless_part(layer, tokens)
        )
    import keras

    return np.asarray(keras.ops.convert_to_numpy(mask)).astype(np.float64)


def _maskless_part(layer, tokens):
    """Name a part of the student's own whose `compute_mask` also returns
    None: the layer takes its mask from there."""
    from autograder.checks.layers import own_parts
    from autograder.checks.taps import _snake

    for attribute, cls in own_parts(layer):
        part = getattr(layer, attribute, None)
        try:
            mask = part.compute_mask(as_tensor(tokens))
        except Exception:
            continue
        if mask is None:
            return (
                f"\nYour `{type(layer).__name__}` takes its mask from your `{cls}` "
                f"(`self.{attribute}`), whose compute_mask returns None too: fix "
                f"check_{_snake(cls)} first; this layer cannot be judged until "
                "its part carries the mask."
            )
    return ""


@check
def check_positional_encoding(positional_encoding, cases="visible"):
    """`PE[p, 2i] = sin(p / 10000^(2i/d))`, `PE[p, 2i+1] = cos(...)`."""
    __tracebackhide__ = True

    def probe(case, index):
        kw = case.call_kwargs
        with student_code("`positional_encoding`"):
            encoding = positional_encoding(kw["length"], kw["depth"])
        return {"encoding": encoding}

    _run("check_positional_encoding", cases, probe)


def _with_mask(layer, case, kwargs):
    """Outputs and the Keras mask; in a `tf.function` for any length (the
    length is then a symbolic tensor, as in `fit` on batches of varying
    length) when the case asks for it."""
    name = type(layer).__name__
    if case.options.get("functional"):
        import tensorflow as tf

        @tf.function(input_signature=[tf.TensorSpec((None, None), tf.int32)])
        def compiled(tokens):
            return layer(tokens)

        with student_code(
            f"`{name}` in a tf.function for any length (the length is a tensor)"
        ):
            outputs = {"output": compiled(case.inputs["tokens"])}
        from autograder.checks import taps

        taps.eagerly(lambda: layer(case.inputs["tokens"]))
    else:
        outputs = call_layer(
            layer, list(case.inputs.values()), kwargs, ["output"], f"`{name}`"
        )
    outputs["mask"] = _mask_of(layer, case.inputs["tokens"], name)
    return outputs


@check
def check_positional_embedding(PositionalEmbedding, cases="visible"):
    """Token embedding times sqrt(d_model), plus the positional encoding."""
    __tracebackhide__ = True
    _run(
        "check_positional_embedding",
        cases,
        LayerProbe(
            PositionalEmbedding,
            ["output", "mask"],
            round_trip=["vocab_size", "d_model"],
            call=_with_mask,
        ),
    )


@check
def check_feed_forward(FeedForward, cases="visible"):
    """`max(0, x W_1 + b_1) W_2 + b_2` at every position."""
    __tracebackhide__ = True
    _run(
        "check_feed_forward",
        cases,
        LayerProbe(FeedForward, ["output"], round_trip=["d_model", "dff"]),
    )


@check
def check_add_norm(AddNorm, cases="visible"):
    """`LayerNorm(x + Dropout(y))`, post-norm, epsilon 1e-5."""
    __tracebackhide__ = True
    _run(
        "check_add_norm",
        cases,
        LayerProbe(AddNorm, ["output"], round_trip=["dropout"]),
    )


def _encoder_layer_call(layer, case, kwargs):
    """Plainly, or in a functional model where the mask is a Keras mask."""
    import keras

    name = f"`{type(layer).__name__}`"
    if not case.options.get("keras_mask"):
        return call_layer(layer, list(case.inputs.values()), kwargs, ["output"], name)
    x = case.inputs["x"]
    inputs = keras.Input(shape=(None, x.shape[-1]))
    with student_code(f"{name} called on a symbolic Keras tensor with a Keras mask"):
        model = keras.Model(inputs, layer(keras.layers.Masking(0.0)(inputs)))
    with student_code(f"the functional model around {name}"):
        output = model(x.astype(np.float32))
    return {"output": output}


_BLOCK_CONFIG = ["d_model", "num_heads", "dff"]


@check
def check_encoder_layer(EncoderLayer, cases="visible"):
    """Self-attention and feed-forward, each inside Add & Norm."""
    __tracebackhide__ = True
    _run(
        "check_encoder_layer",
        cases,
        LayerProbe(
            EncoderLayer, ["output"], round_trip=_BLOCK_CONFIG, call=_encoder_layer_call
        ),
    )


def _decoder_layer_call(layer, case, kwargs):
    names = (
        ["output", "scores"] if kwargs.get("return_attention_scores") else ["output"]
    )
    return call_layer(
        layer, list(case.inputs.values()), kwargs, names, f"`{type(layer).__name__}`"
    )


@check
def check_decoder_layer(DecoderLayer, cases="visible"):
    """Masked self-attention, cross-attention, feed-forward, with Add & Norm."""
    __tracebackhide__ = True
    _run(
        "check_decoder_layer",
        cases,
        LayerProbe(
            DecoderLayer, ["output"], round_trip=_BLOCK_CONFIG, call=_decoder_layer_call
        ),
    )


_STACK_CONFIG = ["num_layers", "d_model", "num_heads", "dff", "vocab_size"]


@check
def check_encoder(Encoder, cases="visible"):
    """Positional embedding, then `num_layers` encoder layers."""
    __tracebackhide__ = True
    _run(
        "check_encoder",
        cases,
        LayerProbe(
            Encoder, ["output", "mask"], round_trip=_STACK_CONFIG, call=_with_mask
        ),
    )


@check
def check_decoder(Decoder, cases="visible"):
    """Positional embedding, then `num_layers` decoder layers."""
    __tracebackhide__ = True
    _run(
        "check_decoder",
        cases,
        LayerProbe(Decoder, ["output"], round_trip=_STACK_CONFIG),
    )


class _ModelProbe(LayerProbe):
    """A model called on one tuple `(source, target)`."""

    def _pair(self, case):
        return (as_tensor(case.inputs["source"]), as_tensor(case.inputs["target"]))

    def build(self, cls, case):
        from autograder.checks import taps

        arguments = ", ".join(f"{k}={v!r}" for k, v in case.init.items())
        with student_code(f"`{cls.__name__}({arguments})`"), taps.constructing():
            model = cls(**case.init)
        from autograder.checks.layers import parts_note

        try:
            with student_code(f"`{cls.__name__}` when first called (building)"):
                build_eagerly(model)
                model(self._pair(case))
            inject(model, self.specs(case))
        except CheckFailed as failure:
            raise CheckFailed(
                failure.message + parts_note(model, failure.message)
            ) from None
        return model

    def run(self, layer, case):
        with student_code(f"`{type(layer).__name__}` when called on (source, target)"):
            logits = layer(self._pair(case))
        if isinstance(logits, tuple | list):
            raise CheckFailed(
                f"`{type(layer).__name__}` returned a {type(logits).__name__}; it "
                "should return the logits alone, (B, T, target_vocab)."
            )
        return {"logits": logits}

    def __call__(self, case, index):
        from autograder.checks import taps

        with taps.recording(None, self.cls) as made:
            model = self.build(self.cls, case)
        with taps.recording(model, self.cls, seed=made) as recorder:
            outputs = self.run(model, case)
        if index == 1:
            config_round_trip(self.cls.__name__, model, self.round_trip)
            with student_code(f"`{self.cls.__name__}.from_config(get_config())`"):
                clone = type(model).from_config(model.get_config())
                clone(self._pair(case))
            inject(clone, self.specs(case))
            outputs["logits after from_config"] = self.run(clone, case)["logits"]
        outputs.update(recorder.arrays)
        return outputs


@check
def check_transformer(Transformer, cases="visible"):
    """Encoder, decoder and the final projection: logits for every position."""
    __tracebackhide__ = True
    _run(
        "check_transformer",
        cases,
        _ModelProbe(
            Transformer,
            ["logits"],
            round_trip=[
                "num_layers",
                "d_model",
                "num_heads",
                "dff",
                "input_vocab",
                "target_vocab",
            ],
        ),
    )


@check
def check_warmup_schedule(WarmupSchedule, cases="visible"):
    """`d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)`, steps from 1."""
    __tracebackhide__ = True
    import keras

    def rates(schedule, case):
        steps = case.inputs["steps"]
        if case.options.get("optimizer"):
            with student_code("`keras.optimizers.Adam(learning_rate=your schedule)`"):
                optimizer = keras.optimizers.Adam(learning_rate=schedule)
                values = []
                for step in steps:
                    optimizer.iterations.assign(int(step))
                    values.append(float(optimizer.learning_rate))
            return np.array(values)
        with student_code("your schedule called on a step"):
            return np.array(
                [float(schedule(keras.ops.convert_to_tensor(int(s)))) for s in steps]
            )

    def probe(case, index):
        init = dict(case.init)
        if case.options.get("default_warmup"):  # the text fixes the default
            init.pop("warmup_steps", None)
        arguments = ", ".join(f"{k}={v!r}" for k, v in init.items())
        with student_code(f"`WarmupSchedule({arguments})`"):
            schedule = WarmupSchedule(**init)
        if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            raise CheckFailed(
                "`WarmupSchedule` should subclass "
                "keras.optimizers.schedules.LearningRateSchedule (so an optimizer "
                "calls it with its step count, and a saved model keeps it)."
            )
        # Rates are about 1e-3: compared as 1000 x rate, at the usual tolerance.
        outputs = {"1000 x rate": 1000.0 * rates(schedule, case)}
        if index == 1:
            with student_code("`WarmupSchedule.from_config(schedule.get_config())`"):
                clone = type(schedule).from_config(schedule.get_config())
            outputs["1000 x rate after from_config"] = 1000.0 * rates(clone, case)
        return outputs

    _run("check_warmup_schedule", cases, probe)


def _scalar(value, what):
    import keras

    array = np.asarray(keras.ops.convert_to_numpy(value))
    if array.size != 1:
        raise CheckFailed(
            f"`{what}` returned shape {array.shape}; it should return one number "
            "for the whole batch (the mean over real tokens)."
        )
    return array.reshape(())


@check
def check_masked_loss(masked_loss, masked_accuracy, cases="visible"):
    """Cross-entropy and accuracy over real tokens only (label 0 is padding)."""
    __tracebackhide__ = True

    def probe(case, index):
        labels, logits = (
            as_tensor(case.inputs["labels"]),
            as_tensor(case.inputs["logits"]),
        )
        smoothing = case.call_kwargs["label_smoothing"]
        with student_code("`masked_loss`"):
            if smoothing:
                loss = masked_loss(labels, logits, label_smoothing=smoothing)
            else:
                loss = masked_loss(labels, logits)
        with student_code("`masked_accuracy`"):
            accuracy = masked_accuracy(labels, logits)
        return {
            "loss": _scalar(loss, "masked_loss"),
            "accuracy": _scalar(accuracy, "masked_accuracy"),
        }

    _run("check_masked_loss", cases, probe)


def scripted_answers(script, vocab, start_id, end_id):
    """What a scripted model answers, as a function of the tokens it is fed.

    Row `r` fed the right first `n + 1` tokens (`start_id`, then
    `script[r][:n]`, the tokens after the row's `end_id` either its script's
    or padding 0) answers `script[r][n]`; fed any other tokens it answers
    another token (never `script[r][n]`), so a decoder that does not feed its
    own predictions back decodes something else.

    Returns `answer(row, prefix) -> token`. The answers are kept under a keyed
    digest of (row, prefix), each token masked by its digest: nothing the
    model holds lists them.
    """
    import hashlib

    script = np.asarray(script, np.int64)
    vocab = int(vocab)
    secret = hashlib.blake2b(
        script.tobytes() + np.asarray([start_id, end_id], np.int64).tobytes(),
        digest_size=16,
    ).digest()

    def digest(row, prefix, person=b"prefix"):
        data = np.asarray([row, *prefix], np.int64).tobytes()
        return hashlib.blake2b(data, key=secret, person=person, digest_size=16).digest()

    table = {}
    for row, tokens in enumerate(script.tolist()):
        for step, token in enumerate(tokens):
            key = digest(row, [step], b"step")
            table[key] = token ^ key[0]
        for padded in (True, False):
            prefix, done = [int(start_id)], False
            for token in tokens:
                key = digest(row, prefix)
                table[key] = token ^ key[0]
                fed = 0 if done and padded else token
                done = done or fed == end_id
                prefix.append(fed)
    del script

    def answer(row, prefix):
        prefix = [int(t) for t in prefix]
        key = digest(row, prefix)
        if key in table:
            return table[key] ^ key[0]
        step = digest(row, [len(prefix) - 1], b"step")
        right = table[step] ^ step[0] if step in table else 0
        others = [t for t in range(1, vocab) if t != right]
        return others[key[1] % len(others)]

    return answer


class ScriptedModel:
    """A stand-in for a trained model whose next tokens are known in advance.

    Called on `(source, output_so_far)` `(B, t)`, it returns logits
    `(B, t, vocab)`; the argmax at position `j` is what row `r` answers when
    fed its first `j + 1` tokens (`scripted_answers`): the scripted next token
    when those tokens are the right ones (the start token, then the tokens
    the model answered before, 0 after the row's end token), another token
    otherwise. The script itself is not kept.
    """

    __slots__ = ("_answer", "_rows", "_steps", "calls", "source", "vocab")

    def __init__(self, script, vocab, start_id, end_id):
        script = np.asarray(script, np.int64)
        self._rows, self._steps = script.shape
        self._answer = scripted_answers(script, vocab, start_id, end_id)
        self.vocab = int(vocab)
        self.calls = 0
        self.source = None

    def __call__(self, inputs, training=None, **kwargs):
        import keras

        if not isinstance(inputs, tuple | list) or len(inputs) != 2:
            raise CheckFailed(
                "The model was called on one tensor; call it on the pair "
                "(source, output_so_far), as model((source, output), training=False)."
            )
        if training is not None and bool(training):
            raise CheckFailed(
                "The model was called with training=True while decoding: its "
                "dropout would be on at inference, and every decoded sentence "
                "would come out different. Call it as model((source, output), "
                "training=False)."
            )
        source, output = (keras.ops.convert_to_numpy(x) for x in inputs)
        if self.source is not None and not np.array_equal(source, self.source):
            raise CheckFailed(
                "The source given to the model changed between steps; give it "
                "the same source batch at every step."
            )
        if output.ndim != 2 or output.shape[0] != self._rows:
            raise CheckFailed(
                f"The tokens so far should be (B, t) = ({self._rows}, t); "
                f"the model was given shape {output.shape}."
            )
        t = output.shape[1]
        if t > self._steps:
            raise CheckFailed(
                f"The model was called with {t} tokens so far, more than "
                f"max_length = {self._steps}: stop after max_length steps."
            )
        self.calls += 1
        output = output.astype(np.int64)
        tokens = [
            [self._answer(row, output[row, : j + 1]) % self.vocab for j in range(t)]
            for row in range(self._rows)
        ]
        logits = np.eye(self.vocab, dtype=np.float32)[np.asarray(tokens)] * 10.0
        return keras.ops.convert_to_tensor(logits.reshape(self._rows, t, -1))

    def predict(self, inputs, verbose=0, **kwargs):
        import keras

        return keras.ops.convert_to_numpy(self(inputs))


@check
def check_greedy_decode(greedy_decode, cases="visible"):
    """Batched greedy decoding that stops at the end token."""
    __tracebackhide__ = True

    def probe(case, index):
        kw = case.call_kwargs
        model = ScriptedModel(
            case.options["script"], case.options["vocab"], kw["start_id"], kw["end_id"]
        )
        model.source = case.inputs["source"]
        with student_code("`greedy_decode`"):
            ids = greedy_decode(
                model,
                case.inputs["source"],
                kw["start_id"],
                kw["end_id"],
                kw["max_length"],
            )
        import keras

        ids = np.asarray(keras.ops.convert_to_numpy(ids))
        width = kw["max_length"] + 1
        if ids.ndim != 2 or ids.shape[0] != len(case.inputs["source"]):
            raise CheckFailed(
                f"`greedy_decode` returned shape {ids.shape}; expected (B, length) "
                f"with B = {len(case.inputs['source'])}."
            )
        if ids.shape[1] > width:
            raise CheckFailed(
                f"`greedy_decode` returned {ids.shape[1]} tokens per row; at most "
                f"max_length = {kw['max_length']} are generated."
            )
        padded = np.zeros((ids.shape[0], width))
        padded[:, : ids.shape[1]] = ids
        return {"ids": padded}

    _run("check_greedy_decode", cases, probe)
