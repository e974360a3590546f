"""The checks of Assignment 3: right code passes, wrong code is named.

The judge's NumPy formulas are proven equal to the reference layers on
every case (so the mistake variants are built on the right base); every
mistake changes the outputs of some visible or hidden case, and a
submission with that mistake gets that mistake's hint. Right code written
differently from the reference (its own layer norm, its own Dense
sublayers) passes; keras-hub's ready-made blocks are refused, Keras's
MultiHeadAttention is not.
"""

import keras
import numpy as np
import pytest
from keras import ops

from autograder import checks, judge
from autograder.checks import CheckFailed
from autograder.checks.core import compare, decide
from autograder.judge import transformer as J
from autograder.reference import transformer as T

A3 = [
    "check_positional_encoding",
    "check_positional_embedding",
    "check_feed_forward",
    "check_add_norm",
    "check_encoder_layer",
    "check_decoder_layer",
    "check_encoder",
    "check_decoder",
    "check_transformer",
    "check_warmup_schedule",
    "check_masked_loss",
    "check_greedy_decode",
]

CORRECT = {
    "check_positional_encoding": J._pe_variant(None),
    "check_positional_embedding": J._embedding_variant(None),
    "check_feed_forward": J._ffn_variant(None),
    "check_add_norm": J._add_norm_variant(None),
    "check_encoder_layer": J._encoder_layer_variant(None),
    "check_decoder_layer": J._decoder_layer_variant(None),
    "check_encoder": J._encoder_variant(None),
    "check_decoder": J._decoder_variant(None),
    "check_transformer": J._transformer_variant(None),
    "check_warmup_schedule": J._schedule_variant(None),
    "check_masked_loss": J._loss_variant(None),
    "check_greedy_decode": J._greedy_variant(None),
}


def _cases(name):
    spec = judge.spec(name)
    return spec.cases("visible") + spec.cases("hidden")


@pytest.mark.parametrize("name", A3)
def test_numpy_formulas_equal_the_reference_layers(name):
    for case in _cases(name):
        expected = judge.spec(name).reference(case)
        formula = CORRECT[name](case)
        for output, value in formula.items():
            valid = case.valid.get(output)
            problem = compare(
                np.asarray(value, np.float64),
                np.asarray(expected[output], np.float64),
                valid,
                checks.core.Tolerance(rtol=1e-6, atol=1e-6),
            )
            assert problem is None, f"{name} / {case.title} / {output}: {problem}"


@pytest.mark.parametrize("name", A3)
def test_every_mistake_is_caught_and_named(name):
    spec = judge.spec(name)
    cases_of = {which: spec.cases(which) for which in ("visible", "hidden")}
    expected_of = {which: spec.expectations(c) for which, c in cases_of.items()}
    for mistake, hint, outputs in spec.mistakes:
        caught = False
        for which in ("visible", "hidden"):
            cases = cases_of[which]
            observations = []
            for case in cases:
                try:
                    observed = dict(outputs(case))
                except Exception:  # the mistake does not apply: right outputs
                    observed = dict(CORRECT[name](case))
                if spec.round_trip and not observations:
                    observed.update(
                        {f"{k} after from_config": v for k, v in observed.items()}
                    )
                observations.append(
                    {k: np.asarray(v, np.float64) for k, v in observed.items()}
                )
            try:
                decide(name, cases, observations, expected_of[which])
            except CheckFailed as failure:
                caught = True
                assert hint in failure.message, (mistake, failure.message)
                break
        assert caught, f"{name}: the mistake {mistake!r} passes every case"


#: For `verdict_table.py`: (check, right code) and (check, one mistake).
def catalog():
    singles = {k: v[0] for k, v in REFERENCE_ANSWERS.items() if len(v) == 1}
    right = [(getattr(checks, k), v) for k, v in singles.items()]
    right.append((checks.check_add_norm, HandNorm))
    wrong = [
        (checks.check_encoder_layer, PreNormEncoderLayer),
        (checks.check_decoder_layer, NoCausalDecoderLayer),
        (checks.check_warmup_schedule, FromZero),
    ]
    return right, wrong


def masked_loss(labels, logits, label_smoothing=0.0):
    return T.masked_loss(label_smoothing)(labels, logits)


REFERENCE_ANSWERS = {
    "check_positional_encoding": (T.positional_encoding,),
    "check_positional_embedding": (T.PositionalEmbedding,),
    "check_feed_forward": (T.FeedForward,),
    "check_add_norm": (T.AddNorm,),
    "check_encoder_layer": (T.EncoderLayer,),
    "check_decoder_layer": (T.DecoderLayer,),
    "check_encoder": (T.Encoder,),
    "check_decoder": (T.Decoder,),
    "check_transformer": (T.Transformer,),
    "check_warmup_schedule": (T.WarmupSchedule,),
    "check_masked_loss": (masked_loss, T.masked_accuracy),
    "check_greedy_decode": (T.greedy_decode,),
}


@pytest.mark.parametrize("name", A3)
@pytest.mark.parametrize("which", ["visible", "hidden"])
def test_reference_passes(name, which, capsys):
    getattr(checks, name)(*REFERENCE_ANSWERS[name], cases=which)
    assert "passed" in capsys.readouterr().out


class HandNorm(keras.layers.Layer):
    """Add & Norm with its own weights and epsilon: the same numbers."""

    def __init__(self, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        self.dropout = dropout
        self.drop = keras.layers.Dropout(dropout)

    def build(self, x_shape, y_shape=None):
        d = x_shape[-1]
        self.gamma = self.add_weight(name="gamma", shape=(d,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(d,), initializer="zeros")

    def call(self, x, y, training=None):
        h = x + self.drop(y, training=training)
        mean = ops.mean(h, axis=-1, keepdims=True)
        var = ops.mean(ops.square(h - mean), axis=-1, keepdims=True)
        return (h - mean) * ops.rsqrt(var + 1e-5) * self.gamma + self.beta

    def get_config(self):
        return {**super().get_config(), "dropout": self.dropout}


def test_hand_written_add_norm_passes(capsys):
    checks.check_add_norm(HandNorm, cases="hidden")
    assert "passed" in capsys.readouterr().out


class PreNormEncoderLayer(T.EncoderLayer):
    def call(self, x, mask=None, training=None):
        normed = self.attention_norm.norm(x)
        x = x + self.self_attention(normed, normed, attention_mask=T._keys(mask, x))
        return x + self.ffn(self.ffn_norm.norm(x))


def test_pre_norm_encoder_layer_is_named():
    with pytest.raises(CheckFailed, match="pre-norm"):
        checks.check_encoder_layer(PreNormEncoderLayer)


class NoCausalDecoderLayer(T.DecoderLayer):
    def call(self, x, context, mask=None, context_mask=None, training=None, **kw):
        x = self.self_norm(
            x, self.self_attention(x, x, attention_mask=T._keys(mask, x))
        )
        crossed, scores = self.cross_attention(
            x,
            context,
            attention_mask=T._keys(context_mask, x),
            return_attention_scores=True,
        )
        x = self.cross_norm(x, crossed)
        x = self.ffn_norm(x, self.ffn(x))
        return (x, scores) if kw.get("return_attention_scores") else x


def test_decoder_layer_without_causal_mask_is_named():
    with pytest.raises(CheckFailed, match="sees the future"):
        checks.check_decoder_layer(NoCausalDecoderLayer)


class RenamedEncoderLayer(T.EncoderLayer):
    """The sublayers under other names: the check says which name it needs."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.attention = self.self_attention
        del self.self_attention

    def call(self, x, mask=None, training=None):
        attended = self.attention(x, x, attention_mask=T._keys(mask, x))
        x = self.attention_norm(x, attended)
        return self.ffn_norm(x, self.ffn(x))


def test_missing_sublayer_name_is_explained():
    with pytest.raises(CheckFailed, match="no attribute `self_attention`"):
        checks.check_encoder_layer(RenamedEncoderLayer)


def test_keras_hub_encoder_is_borrowing_but_keras_mha_is_not():
    import keras_hub

    class HubEncoderLayer(keras.layers.Layer):
        def __init__(self, d_model, num_heads, dff, dropout=0.1, **kwargs):
            super().__init__(**kwargs)
            self.d_model, self.num_heads, self.dff = d_model, num_heads, dff
            self.block = keras_hub.layers.TransformerEncoder(dff, num_heads)

        def call(self, x, mask=None):
            return self.block(x, padding_mask=mask)

    with pytest.raises(CheckFailed, match="keras-hub's ready-made blocks"):
        checks.check_encoder_layer(HubEncoderLayer)
    # The reference is built on keras.layers.MultiHeadAttention and passes.
    checks.check_encoder_layer(T.EncoderLayer)


def test_greedy_decode_that_never_stops_is_named():
    def endless(model, source, start_id, end_id, max_length):
        output = np.full((len(source), 1), start_id)
        for _ in range(max_length):
            logits = model((source, output), training=False)
            following = np.asarray(ops.argmax(logits[:, -1], axis=-1))
            output = np.concatenate([output, following[:, None]], axis=1)
        return output[:, 1:]

    with pytest.raises(CheckFailed, match="end token: once a row"):
        checks.check_greedy_decode(endless)


def test_greedy_decode_must_feed_its_predictions_back():
    """The scripted model answers from the tokens it is fed: a decoder that
    feeds it anything but its own predictions decodes something else."""

    def start_tokens_only(model, source, start_id, end_id, max_length):
        output = np.full((len(source), 1), start_id)
        done = np.zeros(len(source), bool)
        for _ in range(max_length):
            fed = np.full_like(output, start_id)  # never the predictions
            logits = model((source, fed), training=False)
            following = np.asarray(ops.argmax(logits[:, -1], axis=-1))
            following = np.where(done, 0, following)
            output = np.concatenate([output, following[:, None]], axis=1)
            done |= following == end_id
            if done.all():
                break
        return output[:, 1:]

    def first_only(model, source, start_id, end_id, max_length):
        return T.greedy_decode(
            lambda inputs, training=None: model((inputs[0], inputs[1][:, :1])),
            source,
            start_id,
            end_id,
            max_length,
        )

    with pytest.raises(CheckFailed):
        checks.check_greedy_decode(start_tokens_only)
    with pytest.raises(CheckFailed, match="predictions fed back"):
        checks.check_greedy_decode(first_only)
    checks.check_greedy_decode(T.greedy_decode, cases="hidden")


def test_the_scripted_model_keeps_no_script():
    """Nothing a student can read off the model lists its answers."""
    script = [[5, 6, 2, 7], [4, 2, 6, 6]]
    from autograder.checks.transformer import ScriptedModel

    model = ScriptedModel(script, 8, 1, 2)
    assert not hasattr(model, "__dict__")
    held = [getattr(model, name) for name in type(model).__slots__]
    for value in held:
        assert not isinstance(value, list | tuple | np.ndarray), value
    ids = T.greedy_decode(model, np.ones((2, 3), np.int32), 1, 2, 4)
    np.testing.assert_array_equal(ids, [[5, 6, 2], [4, 2, 0]])


class FromZero(T.WarmupSchedule):
    """Steps counted from 0: one step behind."""

    def __call__(self, step):
        step = ops.cast(step, "float32")
        return ops.minimum(ops.rsqrt(step), step * self.warmup_steps**-1.5) * ops.rsqrt(
            ops.cast(self.d_model, "float32")
        )


def test_schedule_from_step_zero_is_named():
    with pytest.raises(CheckFailed, match="one step behind"):
        checks.check_warmup_schedule(FromZero)


class ZeroedEncoder(T.Encoder):
    """A correct encoder that also zeroes its padded positions."""

    def call(self, tokens, training=None):
        x = super().call(tokens, training=training)
        return x * ops.cast(ops.not_equal(tokens, 0), x.dtype)[..., None]


@pytest.mark.parametrize("which", ["visible", "hidden"])
def test_padded_positions_are_not_compared_after_a_config_round_trip(which):
    """The rebuilt layer's outputs are compared where the layer's own are:
    not at padded positions (a correct stack may put anything there)."""
    checks.check_encoder(ZeroedEncoder, cases=which)
