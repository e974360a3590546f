"""Diagnosis of Assignment 3's composite blocks (`judge.diagnose_blocks`):
the encoder and decoder layers, the stacks and the Transformer are judged on
their own wiring, and a hint names a wrong connection only when the evidence
shows it.

* Through the real checks and `decide` (as the grader decides), students'
  layers with wiring mistakes that are *not* in the mistake catalog
  (written after the diagnosers, held out from their tuning) are each named,
  and every hint is absent from the messages of the other mistakes.
* From hand-made taps (`tap:<sublayer>#<k>:<param>`), the wiring is read
  with the student's parts as black boxes: a part that is wrong does not
  make a connection look wrong.
"""

import contextlib

import numpy as np
import pytest

from autograder import judge
from autograder.checks import core
from autograder.checks import transformer as C
from autograder.checks.core import CheckFailed
from autograder.judge import transformer_math as M
from autograder.reference import transformer as R

_keys = R._keys


def _grader(monkeypatch, taps=True):
    """`check(cls) -> message`, decided with the judge's diagnosis; without
    the taps when `taps` is False (the diagnosis then refits the wiring)."""
    original = core.decide

    def decide(name, cases, observations, expectations, failure=None, hint="", **_):
        if not taps:
            observations = [
                {k: v for k, v in got.items() if not k.startswith("tap:")}
                for got in observations
            ]
        return original(
            name,
            cases,
            observations,
            expectations,
            failure,
            hint,
            diagnose=judge.spec(name).diagnose,
        )

    monkeypatch.setattr(core, "decide", decide)

    def run(check, cls, cases="visible"):
        with pytest.raises(CheckFailed) as failure:
            check(cls, cases=cases)
        return str(failure.value)

    return run


@pytest.fixture
def graded(monkeypatch):
    return _grader(monkeypatch)


@pytest.fixture
def graded_without_taps(monkeypatch):
    return _grader(monkeypatch, taps=False)


def hints(message):
    return " ".join(
        line for line in message.splitlines() if line.startswith("Hint:")
    ).lower()


# ------------------------------------------------ held-out students' mistakes


class EncoderSkipsFeedForward(R.EncoderLayer):
    """Returns after the first Add & Norm: the feed-forward sublayer is lost."""

    def call(self, x, mask=None, training=None):
        attended = self.self_attention(
            x, x, attention_mask=_keys(mask, x), training=training
        )
        return self.attention_norm(x, attended, training=training)


class EncoderFfnReadsInput(R.EncoderLayer):
    """The feed-forward is called on the layer's input (`inputs`)."""

    def call(self, inputs, mask=None, training=None):
        attended = self.self_attention(
            inputs, inputs, attention_mask=_keys(mask, inputs), training=training
        )
        x = self.attention_norm(inputs, attended, training=training)
        return self.ffn_norm(x, self.ffn(inputs), training=training)


class DecoderCrossQueriesFromInput(R.DecoderLayer):
    """The cross-attention's queries are the layer's input, not the updated x."""

    def call(
        self,
        inputs,
        context,
        mask=None,
        context_mask=None,
        training=None,
        return_attention_scores=False,
    ):
        attended = self.self_attention(
            inputs, inputs, attention_mask=_keys(mask, inputs), use_causal_mask=True
        )
        x = self.self_norm(inputs, attended)
        crossed, scores = self.cross_attention(
            inputs,
            context,
            attention_mask=_keys(context_mask, inputs),
            return_attention_scores=True,
        )
        x = self.cross_norm(x, crossed)
        x = self.ffn_norm(x, self.ffn(x))
        return (x, scores) if return_attention_scores else x


class DecoderCausalCross(R.DecoderLayer):
    """use_causal_mask=True copied onto the cross-attention."""

    def call(
        self,
        x,
        context,
        mask=None,
        context_mask=None,
        training=None,
        return_attention_scores=False,
    ):
        attended = self.self_attention(
            x, x, attention_mask=_keys(mask, x), use_causal_mask=True
        )
        x = self.self_norm(x, attended)
        crossed, scores = self.cross_attention(
            x,
            context,
            attention_mask=_keys(context_mask, x),
            use_causal_mask=True,
            return_attention_scores=True,
        )
        x = self.cross_norm(x, crossed)
        x = self.ffn_norm(x, self.ffn(x))
        return (x, scores) if return_attention_scores else x


class DecoderFfnResidualFromSelfNorm(R.DecoderLayer):
    """The last Add & Norm's residual is the self-attention's Add & Norm output."""

    def call(
        self,
        x,
        context,
        mask=None,
        context_mask=None,
        training=None,
        return_attention_scores=False,
    ):
        attended = self.self_attention(
            x, x, attention_mask=_keys(mask, x), use_causal_mask=True
        )
        h1 = self.self_norm(x, attended)
        crossed, scores = self.cross_attention(
            h1,
            context,
            attention_mask=_keys(context_mask, x),
            return_attention_scores=True,
        )
        h2 = self.cross_norm(h1, crossed)
        out = self.ffn_norm(h1, self.ffn(h2))
        return (out, scores) if return_attention_scores else out


class DecoderFfnReadsSelfNorm(R.DecoderLayer):
    """The feed-forward reads h1 (the self-attention's Add & Norm), not h2."""

    def call(
        self,
        x,
        context,
        mask=None,
        context_mask=None,
        training=None,
        return_attention_scores=False,
    ):
        attended = self.self_attention(
            x, x, attention_mask=_keys(mask, x), use_causal_mask=True
        )
        h1 = self.self_norm(x, attended)
        crossed, scores = self.cross_attention(
            h1,
            context,
            attention_mask=_keys(context_mask, x),
            return_attention_scores=True,
        )
        h2 = self.cross_norm(h1, crossed)
        out = self.ffn_norm(h2, self.ffn(h1))
        return (out, scores) if return_attention_scores else out


class DecoderReturnsInLoop(R.Decoder):
    """`return x` indented into the loop: only the first block runs."""

    def call(self, tokens, context, context_mask=None, training=None):
        mask = self.embedding.compute_mask(tokens)
        x = self.dropout(self.embedding(tokens), training=training)
        for block in self.blocks:
            x = block(x, context, mask=mask, context_mask=context_mask)
            return x
        return x


class EncoderBlocksReversed(R.Encoder):
    """The blocks run from the last to the first."""

    def call(self, tokens, training=None):
        mask = self.embedding.compute_mask(tokens)
        x = self.dropout(self.embedding(tokens), training=training)
        for block in reversed(self.blocks):
            x = block(x, mask=mask, training=training)
        return x


class TransformerDecoderTraining(R.Transformer):
    """The decoder is called with training=True."""

    def call(self, inputs, training=None):
        source, target = inputs
        context = self.encoder(source, training=training)
        context_mask = self.encoder.compute_mask(source)
        x = self.decoder(target, context, context_mask=context_mask, training=True)
        logits = self.final(x)
        with contextlib.suppress(AttributeError):
            del logits._keras_mask
        return logits


#: name -> (check, student's class, words its hint says, a signature of the
#: hint no other mistake's hint may contain)
HELD_OUT = {
    "encoder layer's feed-forward reads its input": (
        C.check_encoder_layer,
        EncoderFfnReadsInput,
        ["feed-forward reads the layer's input"],
        "feed-forward reads the layer's input",
    ),
    "decoder layer's cross-attention queries from the input": (
        C.check_decoder_layer,
        DecoderCrossQueriesFromInput,
        ["queries of the cross-attention", "layer's input"],
        "queries of the cross-attention",
    ),
    "decoder layer's cross-attention is causal": (
        C.check_decoder_layer,
        DecoderCausalCross,
        ["cross-attention is causal"],
        "cross-attention is causal",
    ),
    "decoder layer's last residual from the self-attention's norm": (
        C.check_decoder_layer,
        DecoderFfnResidualFromSelfNorm,
        ["residual", "self-attention's add & norm output"],
        "the residual of",
    ),
    "decoder layer's feed-forward reads the self-attention's norm": (
        C.check_decoder_layer,
        DecoderFfnReadsSelfNorm,
        ["feed-forward reads the self-attention's add & norm output"],
        "feed-forward reads the self-attention's add & norm",
    ),
    "encoder runs its blocks reversed": (
        C.check_encoder,
        EncoderBlocksReversed,
        ["reverse order"],
        "reverse order",
    ),
    "Transformer's decoder in training mode": (
        C.check_transformer,
        TransformerDecoderTraining,
        ["dropout", "training=training"],
        "training=training",
    ),
}


@pytest.fixture(scope="module")
def messages():
    return {}


@pytest.mark.parametrize("name", list(HELD_OUT))
def test_a_held_out_wiring_mistake_is_named(graded, messages, name):
    check, cls, words, _ = HELD_OUT[name]
    text = graded(check, cls)
    messages[name] = text
    said = hints(text)
    assert all(w in said for w in words), text


@pytest.mark.parametrize("name", list(HELD_OUT))
def test_a_held_out_wiring_mistake_is_named_without_taps(
    graded_without_taps, messages, name
):
    """The same, from the outputs alone: the wiring refitted."""
    check, cls, _, signature = HELD_OUT[name]
    text = graded_without_taps(check, cls)
    messages[f"{name} (no taps)"] = text
    said = hints(text)
    assert signature in said, text


def test_no_hint_names_another_held_out_mistake(graded, messages):
    """Each mistake's hint (its signature) is absent from every other's."""
    for name, (check, cls, _, _) in HELD_OUT.items():
        if name not in messages:
            messages[name] = graded(check, cls)
    for name, text in messages.items():
        said = hints(text)
        for other, (_, _, _, signature) in HELD_OUT.items():
            if other != name.removesuffix(" (no taps)"):
                assert signature not in said, (name, other, text)


def test_a_block_that_skips_a_sublayer_ends_in_the_weights_message(graded):
    """Not the diagnosis's: a sublayer never called has no weights to
    receive (`checks.layers`), and the message names it."""
    text = graded(C.check_encoder_layer, EncoderSkipsFeedForward)
    assert "EncoderSkipsFeedForward.ffn" in text and "no weights" in text, text
    text = graded(C.check_decoder, DecoderReturnsInLoop)
    assert "DecoderReturnsInLoop.blocks[1]" in text and "no weights" in text, text


# ---------------------------------------------------------- from the taps

B, T, D_ = 2, 5, 8


def _encoder_case():
    return judge.spec("check_encoder_layer").cases("visible")[1]  # padded


def _encoder_taps(case, ffn_reads="h1", residual="h1", ffn=None, mask_axis="keys"):
    """The outputs and taps of an encoder layer wired as asked; `ffn`
    replaces the student's feed-forward (a wrong part)."""
    x, w = case.inputs["x"], case.weights
    mask = case.call_kwargs.get("mask")
    t = x.shape[1]
    keys = M.key_mask(mask, t)
    given = mask[:, None, :] if mask_axis == "keys" else mask[:, :, None]
    applied = np.broadcast_to(given, keys.shape) if mask is not None else None
    attended = M.mha(x, x, w, "self_attention", applied)[0]
    h1 = M.add_norm(x, attended, w, "attention_norm")
    env = {"x": x, "att": attended, "h1": h1}
    feed = ffn or (lambda v: M.feed_forward(v, w, "ffn"))
    f = feed(env[ffn_reads])
    out = M.add_norm(env[residual], f, w, "ffn_norm")
    got = {
        "output": out,
        "tap:self_attention#0:query": x,
        "tap:self_attention#0:value": x,
        "tap:self_attention#0:out": attended,
        "tap:attention_norm#0:x": x,
        "tap:attention_norm#0:y": attended,
        "tap:attention_norm#0:out": h1,
        "tap:ffn#0:x": env[ffn_reads],
        "tap:ffn#0:out": f,
        "tap:ffn_norm#0:x": env[residual],
        "tap:ffn_norm#0:y": f,
        "tap:ffn_norm#0:out": out,
    }
    if mask is not None:
        got["tap:self_attention#0:attention_mask"] = given.astype(np.float64)
    return got


def _diagnose(check, case, got):
    spec = judge.spec(check)
    expected = spec.formula(case)
    wrong = [
        k
        for k in expected
        if core.compare(
            np.asarray(got[k], np.float64),
            np.asarray(expected[k], np.float64),
            core.valid_for(case, k),
        )
        is not None
    ]
    found = spec.diagnose(case, got, expected, wrong)
    return " ".join(found.named).lower(), " ".join(found.observed).lower()


def test_taps_name_the_feed_forward_reading_the_attention():
    case = _encoder_case()
    named, _ = _diagnose("check_encoder_layer", case, _encoder_taps(case, "att"))
    assert "feed-forward reads the self-attention's output" in named, named


def test_taps_name_the_residual_from_the_input():
    case = _encoder_case()
    named, _ = _diagnose("check_encoder_layer", case, _encoder_taps(case, residual="x"))
    assert "residual of `ffn_norm` is the layer's input" in named, named
    assert "feed-forward reads" not in named


def test_taps_name_a_mask_on_the_queries():
    case = _encoder_case()
    named, _ = _diagnose(
        "check_encoder_layer", case, _encoder_taps(case, mask_axis="queries")
    )
    assert "masks the queries" in named, named
    assert "residual" not in named and "feed-forward" not in named


def test_taps_do_not_blame_the_wiring_for_a_wrong_part():
    """A feed-forward of the student's that is wrong (GELU), wired right:
    no wiring hint (the wiring is right), even though the output is wrong."""
    case = _encoder_case()
    w = case.weights

    def gelu_ffn(v):
        hidden = v @ w["ffn:W_1"] + w["ffn:b_1"]
        hidden = (
            0.5 * hidden * (1 + np.tanh(0.79788456 * (hidden + 0.044715 * hidden**3)))
        )
        return hidden @ w["ffn:W_2"] + w["ffn:b_2"]

    named, _ = _diagnose("check_encoder_layer", case, _encoder_taps(case, ffn=gelu_ffn))
    assert named == "", named


def _decoder_taps(case, order=("self", "cross", "ffn"), training=False):
    x, context, w = case.inputs["x"], case.inputs["context"], case.weights
    kw = case.call_kwargs
    t = x.shape[1]
    self_mask = M.key_mask(kw.get("mask"), t)
    causal = np.tril(np.ones((t, t), bool))[None]
    self_mask = causal if self_mask is None else self_mask & causal
    cross_mask = M.key_mask(kw.get("context_mask"), t)
    got, stream = {}, x
    for stage in order:
        if stage == "self":
            att = M.mha(stream, stream, w, "self_attention", self_mask)[0]
            out = M.add_norm(stream, att, w, "self_norm")
            got.update(
                {
                    "tap:self_attention#0:query": stream,
                    "tap:self_attention#0:value": stream,
                    "tap:self_attention#0:use_causal_mask": np.asarray(1.0),
                    "tap:self_attention#0:out": att,
                    "tap:self_norm#0:x": stream,
                    "tap:self_norm#0:y": att,
                    "tap:self_norm#0:out": out,
                }
            )
            if training:
                got["tap:self_attention#0:training"] = np.asarray(1.0)
        elif stage == "cross":
            att, scores = M.mha(stream, context, w, "cross_attention", cross_mask)
            out = M.add_norm(stream, att, w, "cross_norm")
            got.update(
                {
                    "tap:cross_attention#0:query": stream,
                    "tap:cross_attention#0:value": context,
                    "tap:cross_attention#0:out0": att,
                    "tap:cross_attention#0:out1": scores,
                    "tap:cross_norm#0:x": stream,
                    "tap:cross_norm#0:y": att,
                    "tap:cross_norm#0:out": out,
                }
            )
        else:
            f = M.feed_forward(stream, w, "ffn")
            out = M.add_norm(stream, f, w, "ffn_norm")
            got.update(
                {
                    "tap:ffn#0:x": stream,
                    "tap:ffn#0:out": f,
                    "tap:ffn_norm#0:x": stream,
                    "tap:ffn_norm#0:y": f,
                    "tap:ffn_norm#0:out": out,
                }
            )
        stream = out
    got["output"] = stream
    return got


def test_taps_name_the_order_of_the_decoder_sublayers():
    case = judge.spec("check_decoder_layer").cases("visible")[0]
    named, _ = _diagnose(
        "check_decoder_layer", case, _decoder_taps(case, ("cross", "self", "ffn"))
    )
    assert "wrong order" in named and "self-attention first" in named, named
    assert "residual" not in named and "queries" not in named


def test_taps_name_training_true():
    case = judge.spec("check_decoder_layer").cases("visible")[0]
    got = _decoder_taps(case, training=True)
    got["output"] = got["output"] + 0.1  # dropout changed it
    named, observed = _diagnose("check_decoder_layer", case, got)
    assert "training=training" in named and "`self_attention`" in observed, named
    # and the same taps without training=True name nothing of the kind
    named, _ = _diagnose("check_decoder_layer", case, _decoder_taps(case))
    assert "training" not in named


def _stack_got(case, chained=True, shared=False):
    """An encoder's outputs and taps: the embedding, then its blocks."""
    tokens, w = case.inputs["tokens"], case.weights
    layers = case.init["num_layers"]
    x, mask = M.embed(tokens, w["embedding:embeddings"])
    got = {"tap:embedding#0:tokens": tokens, "tap:embedding#0:out": x}
    embedded = x
    for i in range(layers):
        read = x if chained else embedded
        out = M.encoder_layer(read, w, f"blocks.{i}", mask)
        name, k = ("blocks.0", i) if shared else (f"blocks.{i}", 0)
        got[f"tap:{name}#{k}:x"] = read
        got[f"tap:{name}#{k}:mask"] = mask.astype(np.float64)
        got[f"tap:{name}#{k}:out"] = out
        x = out
    got["output"] = x
    got["mask"] = mask.astype(np.float64)
    return got


def test_taps_name_blocks_not_chained_and_one_shared_layer():
    case = judge.spec("check_encoder").cases("visible")[0]
    named, _ = _diagnose("check_encoder", case, _stack_got(case, chained=False))
    assert "not chained" in named and "one layer object" not in named, named
    got = _stack_got(case, shared=True)
    got["output"] = got["output"] + 0.1  # one set of weights everywhere
    named, _ = _diagnose("check_encoder", case, got)
    assert "one layer object" in named and "not chained" not in named, named


# ------------------------------------------- every refitted hint, one by one

from autograder.judge import diagnose_blocks as DB  # noqa: E402


def _families(check, case):
    """(hint, outputs builder) of every connection the refit tries."""
    if check == "check_encoder_layer":
        return [
            (hint, DB._enc_builder(h))
            for hint, h in DB._enc_layer_hypotheses(DB._padding_mask(case) is not None)
        ]
    if check == "check_decoder_layer":
        return [
            (hint, DB._dec_builder(h)) for hint, h in DB._dec_layer_hypotheses(case)
        ]
    if check == "check_transformer":
        return [
            (hint, DB._transformer_builder(h))
            for hint, h in DB._transformer_hypotheses(case)
        ]
    kind = check.removeprefix("check_")
    return [
        (hint, DB._stack_builder(kind, h))
        for hint, h in DB._stack_hypotheses(kind, case.init["num_layers"])
    ]


def _differs(case, name, received, expected):
    received = np.asarray(received, np.float64)
    expected = np.asarray(expected, np.float64)
    if received.shape != expected.shape:
        return True
    found = core.compare(received, expected, core.valid_for(case, name))
    return found is not None


@pytest.mark.parametrize(
    "check",
    [
        "check_encoder_layer",
        "check_decoder_layer",
        "check_encoder",
        "check_decoder",
        "check_transformer",
    ],
)
def test_each_refitted_connection_is_named_and_no_other(check):
    """Outputs made with one connection changed (NumPy, every case of the
    check) name that connection, or nothing when another change gives the
    same outputs; never the hint of another connection."""
    spec = judge.spec(check)
    named = 0
    for which in ("visible", "hidden"):
        for case in spec.cases(which):
            expected = spec.formula(case)
            families = _families(check, case)
            for hint, build in families:
                try:
                    got = build(case)
                except ValueError:  # impossible for this case's sizes
                    continue
                wrong = [
                    k
                    for k in expected
                    if k in got and _differs(case, k, got[k], expected[k])
                ]
                if not wrong:
                    continue  # the change does not show in this case
                found = spec.diagnose(case, got, expected, wrong)
                assert found.named in ([], [hint]), (case.title, hint, found.named)
                named += bool(found.named)
    assert named, check
