"""Helpers of Assignment 3's notebook: positions, data, BLEU, attention, budget."""

import math

import matplotlib

matplotlib.use("Agg")

from typing import ClassVar

import keras
import numpy as np
import pytest
import sacrebleu
from conftest import needs_mirror

from autograder import lesson_transformer as L
from autograder.reference import transformer as T


def interleaved_without_pairs(length, depth):
    """A broken encoding: sin and cos of one pair at different frequencies."""
    p, i = np.arange(length)[:, None], np.arange(depth)[None, :]
    angles = p / np.power(10000.0, i / depth)  # i, not 2 * (i // 2)
    return np.where(i % 2 == 0, np.sin(angles), np.cos(angles))


def sines_only(length, depth):
    p, i = np.arange(length)[:, None], np.arange(depth)[None, :]
    return np.sin(p / np.power(10000.0, 2 * (i // 2) / depth))


def test_shifted_encoding_is_a_rotation_of_the_encoding():
    encoding = T.positional_encoding(1024, 16)
    for k in (1, 7, 100):
        M, error = L.relative_position_fit(encoding, k)
        assert error < 1e-5, (k, error)
        # block diagonal: 2 x 2 rotations by the pair's angle k * w_i
        off_blocks = M * (1 - np.kron(np.eye(8), np.ones((2, 2))))
        assert np.abs(off_blocks).max() < 1e-2
        np.testing.assert_allclose(M[0, 0], np.cos(k), atol=1e-4)


@pytest.mark.parametrize("broken", [interleaved_without_pairs, sines_only])
def test_broken_encodings_are_not_linear_in_the_shift(broken):
    _, error = L.relative_position_fit(broken(1024, 16), 4)
    assert error > 0.1


def test_fit_needs_more_positions_than_dimensions():
    with pytest.raises(ValueError, match="more positions than dimensions"):
        L.relative_position_fit(np.zeros((20, 16)), 5)


def test_position_figures():
    fig = L.plot_positional_encoding(T.positional_encoding(50, 32))
    assert len(fig.axes) == 3  # heatmap, its colour bar, curves
    fig = L.plot_relative_positions(T.positional_encoding, offsets=(1, 5))
    assert set(fig.errors) == {1, 5} and max(fig.errors.values()) < 1e-5
    fig = L.plot_relative_positions(sines_only, offsets=(3,))
    assert fig.errors[3] > 0.1


def test_bleu_is_sacrebleus_and_100_for_identical_text():
    hypotheses = ["the cat sat on the mat .", "i'm here."]
    references = ["the cat is on the mat .", "i am here."]
    ours = L.bleu(hypotheses, references)
    theirs = sacrebleu.corpus_bleu(hypotheses, [references], lowercase=True)
    assert ours.score == pytest.approx(theirs.score)
    assert 0 < ours.score < 100
    assert L.bleu(references, references).score == pytest.approx(100.0)
    assert L.bleu(["Tom is here."], ["tom is here."]).score == pytest.approx(100.0)


def test_side_by_side_ranks_by_sentence_bleu():
    references = ["a b c d e", "f g h i j", "k l m n o"]
    hypotheses = ["a b c d e", "x y z", "k l m n p"]
    best, worst = L.side_by_side(["1", "2", "3"], references, hypotheses, n=1)
    assert best[0]["source"] == "1" and best[0]["bleu"] == pytest.approx(100.0)
    assert worst[0]["source"] == "2"


def test_tidy_joins_what_detokenize_spaces_out():
    assert L.tidy("i ' m well - known , aren ' t i ?") == "i'm well-known, aren't i?"
    assert L.tidy("¿ qué ?") == "¿qué?"


def tiny_transformer(source_vocab=20, target_vocab=30, layers=2):
    keras.utils.set_random_seed(0)
    model = T.Transformer(layers, 16, 2, 32, source_vocab, target_vocab, dropout=0.0)
    model((np.ones((1, 3), "int32"), np.ones((1, 2), "int32")))
    return model


def test_cross_attention_of_the_last_layer():
    model = tiny_transformer()
    source = [2, 5, 6, 7, 3, 0, 0]  # padded
    target = [2, 8, 9, 10]
    scores = L.cross_attention(model, source, target)
    assert scores.shape == (2, 4, 7)  # (heads, T, S)
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-5)
    assert np.abs(scores[..., 5:]).max() < 1e-6  # padding gets no attention
    # the same as the last layer inside the model's own forward pass
    blocks = L.decoder_blocks(model.decoder)
    assert blocks[-1] is model.decoder.blocks[-1]
    fig = L.plot_cross_attention(scores, list("SABCE"), ["s", "x", "y", "z"])
    assert len([ax for ax in fig.axes if ax.images]) == 2


def test_decoder_blocks_accepts_the_old_attribute_name():
    class Old:
        layers_ = ("a", "b")

    assert L.decoder_blocks(Old()) == ["a", "b"]
    with pytest.raises(AttributeError, match="blocks"):
        L.decoder_blocks(object())


def test_time_budget_stops_fit_and_counts_tokens():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.zeros((64, 4), "float32"), np.zeros((64, 1), "float32")
    budget = L.TimeBudget(0.5, tokens_per_batch=10)
    model.fit(x, y, batch_size=8, epochs=100_000, verbose=0, callbacks=[budget])
    assert budget.stopped and 0.5 <= budget.seconds_used < 5
    assert budget.tokens == 10 * budget.batches
    assert budget.tokens_per_second == pytest.approx(
        budget.tokens / budget.seconds_used
    )
    assert 1 <= budget.epochs < 100_000 and "loss" in budget.logs


def test_token_batches_pad_each_batch_to_its_own_length():
    sources = np.array([[2, 5, 3, 0, 0], [2, 5, 6, 7, 3], [2, 3, 0, 0, 0]], "int32")
    inputs = np.array([[2, 4, 0], [2, 4, 5], [2, 0, 0]], "int32")
    targets = np.array([[4, 3, 0], [4, 5, 3], [3, 0, 0]], "int32")
    batches = list(L.token_batches(sources, inputs, targets, batch_size=1))
    assert len(batches) == 3
    for (s, i), t in batches:
        s, i, t = np.asarray(s), np.asarray(i), np.asarray(t)
        assert s.shape[1] == int((s != 0).sum()) and i.shape == t.shape
    rounded = list(L.token_batches(sources, inputs, targets, 3, multiple=4))
    (s, i), t = rounded[0]
    assert s.shape == (3, 5) and t.shape == (3, 3)  # capped at the array width


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KIT_DATA_CACHE", str(tmp_path_factory.mktemp("cache")))
        return L.TranslationData(
            "spa-eng", 300, 300, max_length=8, test=100, validation=100, limit=800
        )


@needs_mirror
def test_translation_data_shapes_start_end_and_padding(small_corpus):
    data = small_corpus
    assert len(data.test) >= 100 and len(data.validation) >= 100
    assert len(data.train) + len(data.test) + len(data.validation) <= 800
    train = data.train
    assert train.source_ids.shape[1] <= 8 and train.decoder_inputs.shape[1] <= 7
    assert len(train.sources) == len(train.source_ids) == len(train.decoder_targets)
    assert (train.source_ids[:, 0] == L.START).all()
    assert (train.decoder_inputs[:, 0] == L.START).all()
    assert train.decoder_inputs.shape == train.decoder_targets.shape
    # decoder input shifted by one is the target; one [END], then padding
    real = train.decoder_targets != 0
    words = (real & (train.decoder_targets != L.END))[:, :-1]
    np.testing.assert_array_equal(
        train.decoder_inputs[:, 1:][words], train.decoder_targets[:, :-1][words]
    )
    np.testing.assert_array_equal(train.decoder_inputs != 0, real)
    lengths = real.sum(1)
    assert (train.decoder_targets[np.arange(len(lengths)), lengths - 1] == L.END).all()
    assert ((train.decoder_inputs == L.END).sum() == 0) and (
        (train.decoder_targets == L.END).sum(1) == 1
    ).all()
    for ids in (train.source_ids, train.decoder_targets):  # padding only at the end
        assert (np.diff((ids != 0).astype(int), axis=1) <= 0).all()
    # long pairs are dropped from training only
    test_width = data.test.source_ids.shape[1]
    assert data.test.source_ids.shape[0] == len(data.test.sources) and test_width >= 3
    assert data.target_tokens() == int(real.sum())
    assert data.pieces(train.decoder_targets[0])[-1] == "[END]"
    (source, inputs), targets = next(iter(data.batches("train", 16)))
    assert source.shape[0] == 16 and inputs.shape == targets.shape


@needs_mirror
def test_translate_decodes_with_the_given_decoder(small_corpus):
    data = small_corpus
    model = tiny_transformer(data.source_vocab_size, data.target_vocab_size)
    sentences = data.test.sources[:5]
    fast = T.fast_greedy_decoder(model)
    ours = data.translate(model, sentences, max_length=4, decode=fast, batch_size=3)
    theirs = data.translate(model, sentences, max_length=4, decode=T.greedy_decode)
    assert ours == theirs and len(ours) == 5
    with pytest.raises(TypeError, match="greedy decoding is an exercise"):
        data.translate(model, sentences, max_length=4)
    assert all(isinstance(text, str) and "[" not in text for text in ours)
    calls = []

    def decode(model, source, start_id, end_id, max_length):
        calls.append((source.shape[0], start_id, end_id, max_length))
        return np.zeros((len(source), 1), "int32")

    assert data.translate(model, sentences, 6, decode=decode) == [""] * 5
    assert calls == [(5, L.START, L.END, 6)]
    # a length limit per batch, from its longest source, never past max_length
    calls.clear()
    lengths = data.source_tokenizer.tokenize(sentences).row_lengths().numpy()
    order = np.argsort(lengths, kind="stable")
    data.translate(
        model, sentences, 60, decode=decode, batch_size=2, length_limit=(0.5, 1.2)
    )
    expected = [
        min(60, math.ceil(0.5 * lengths[order[i : i + 2]].max() + 1.2))
        for i in range(0, 5, 2)
    ]
    assert [call[3] for call in calls] == expected
    calls.clear()
    data.translate(model, sentences, 3, decode=decode, length_limit=(2, 10))
    assert calls[0][3] == 3
    for bad in [(-1, 5), (1, float("nan")), ("x", 1)]:
        with pytest.raises(ValueError):
            data.translate(model, sentences, 6, decode=decode, length_limit=bad)

    def decode_past_the_end(model, source, start_id, end_id, max_length):
        return np.tile([10, end_id, 11], (len(source), 1))

    expected = data.target_tokenizer.detokenize([[10]]).numpy()[0].decode()
    assert (
        data.translate(model, sentences[:2], 6, decode=decode_past_the_end)
        == [L.tidy(expected)] * 2
    )


def test_encoder_self_attention_of_a_chosen_layer():
    model = tiny_transformer()
    source = [2, 5, 6, 7, 3, 0, 0]  # padded
    scores = L.encoder_self_attention(model, source)
    assert scores.shape == (2, 7, 7)  # (heads, S, S)
    np.testing.assert_allclose(scores[:, :5].sum(-1), 1.0, atol=1e-5)  # real rows
    assert np.abs(scores[..., 5:]).max() < 1e-6  # padding gets no attention
    first = L.encoder_self_attention(model, source, layer=0)
    # layer 0 sees the embedding: the same weights as its attention called by hand
    enc = model.encoder
    ids = np.array([source], "int32")
    x = enc.embedding(ids)
    mask = np.array([[True] * 5 + [False] * 2])
    _, expected = enc.blocks[0].self_attention(
        x, x, attention_mask=mask[:, None, :], return_attention_scores=True
    )
    np.testing.assert_allclose(first, np.asarray(expected)[0], atol=1e-6)
    assert np.abs(first - scores).max() > 1e-4  # the last layer differs
    fig = L.plot_cross_attention(
        scores, list("SABCE"), list("SABCE"), title="encoder self-attention"
    )
    assert fig._suptitle.get_text() == "encoder self-attention"


class _ScriptedModel:
    """Next-token probabilities that depend on the prefix only.

    Vocabulary: 0 pad, 1 unk, 2 start, 3 end, 4 "a", 5 "b". After [start]:
    a 0.5, b 0.4. After "a": every token about equally likely (end 0.25).
    After "b": end 0.9. Greedy takes "a" (0.5 * 0.25 = 0.125); the better
    sentence is "b" [end] (0.4 * 0.9 = 0.36).
    """

    table: ClassVar = {
        (2,): [0.01, 0.01, 0.0, 0.08, 0.5, 0.4],
        (2, 4): [0.01, 0.01, 0.0, 0.25, 0.24, 0.24],
        (2, 5): [0.01, 0.01, 0.0, 0.9, 0.04, 0.04],
    }

    def __call__(self, inputs, training=None):
        _source, known = inputs
        known = np.asarray(known)
        rows = [
            self.table.get(tuple(r[r != 0]), [0.01, 0.01, 0.0, 0.9, 0.04, 0.04])
            for r in known
        ]
        last = np.log(np.asarray(rows) + 1e-9)
        logits = np.zeros((len(known), known.shape[1], 6), "float32")
        logits[:, -1] = last
        return logits


def test_beam_search_finds_what_greedy_misses():
    source = np.array([[7, 8], [7, 0]], "int32")
    model = _ScriptedModel()
    greedy = L.beam_search(model, source, 2, 3, 5, beam_width=1, compiled=False)
    np.testing.assert_array_equal(greedy[:, :2], [[4, 3], [4, 3]])
    beam = L.beam_search(model, source, 2, 3, 5, beam_width=2, compiled=False)
    np.testing.assert_array_equal(beam, [[5, 3], [5, 3]])  # stops once all ended
    with pytest.raises(ValueError, match="beam_width"):
        L.beam_search(model, source, 2, 3, 5, beam_width=0, compiled=False)


def test_beam_search_of_width_one_is_greedy_decoding_on_a_transformer():
    model = tiny_transformer()
    bias = model.final.bias.numpy()
    bias[0] = -30.0  # beam search never pads a live prefix: neither may greedy here
    model.final.bias.assign(bias)
    source = np.array([[2, 5, 6, 7, 3, 0], [2, 8, 3, 0, 0, 0]], "int32")
    greedy = T.greedy_decode(model, source, 2, 3, 6)
    one = L.beam_search(model, source, 2, 3, 6, beam_width=1)
    np.testing.assert_array_equal(one, greedy)
    wrapped = L.beam_search(L.compiled_model(model), source, 2, 3, 6, beam_width=1)
    np.testing.assert_array_equal(wrapped, greedy)  # as translate() gives it
    four = L.beam_search(model, source, 2, 3, 6, beam_width=4)
    assert four.dtype == np.int32 and four.shape[0] == 2 and four.shape[1] <= 6
    for row in four:  # padding only after the end
        ended = np.cumsum(row == 3) > 0
        assert (row[ended & (np.cumsum(ended) > 1)] == 0).all()


def test_bleu_by_hand_agrees_with_sacrebleu():
    hypotheses = ["the cat the cat sat on the mat.", "i have two dogs."]
    references = ["the cat sat on the mat.", "i have got two dogs."]
    parts = L.bleu_by_hand(hypotheses, references)
    # unigrams: "the" 3 times in the first translation, twice in its reference
    assert parts["counts"][0] == 7 + 5 and parts["totals"][0] == 9 + 5
    assert parts["hyp_len"] == 14 and parts["ref_len"] == 13
    assert parts["brevity_penalty"] == 1.0
    assert parts["by_hand"] == pytest.approx(parts["sacrebleu"], abs=1e-9)
    short = L.bleu_by_hand(["the cat sat."], ["the cat sat on the mat."])
    assert short["brevity_penalty"] == pytest.approx(np.exp(1 - 7 / 4))


def test_time_budget_curve_holds_window_means(capsys):
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    model.compile("sgd", "mse")
    model.layers[0].set_weights([np.zeros((1, 1), "float32")])
    x = np.repeat(np.arange(1, 7, dtype="float32"), 4)[
        :, None
    ]  # batches of 4: y = 1..6
    budget = L.TimeBudget(1e6, record_every=2, report_every=3)
    model.compile(keras.optimizers.SGD(0.0), "mse")  # no learning: loss = y ** 2
    model.fit(
        x, x, batch_size=4, epochs=2, shuffle=False, verbose=0, callbacks=[budget]
    )
    assert [p["step"] for p in budget.curve] == [2, 4, 6, 8, 10, 12]
    # windows of two batches, also across the epoch boundary
    expected = [(1 + 4) / 2, (9 + 16) / 2, (25 + 36) / 2] * 2
    np.testing.assert_allclose([p["loss"] for p in budget.curve], expected, rtol=1e-5)
    assert capsys.readouterr().out.count("step ") == 4  # steps 3, 6, 9, 12
    fig = L.plot_curve(budget, metrics=("loss",))
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 1


def test_compiled_model_gives_the_models_outputs_for_any_shape():
    model = tiny_transformer()
    fast = L.compiled_model(model)
    assert L.compiled_model(fast) is fast
    for rows, S, known_length in ((2, 5, 1), (2, 5, 3), (3, 7, 4), (1, 2, 6)):
        source = np.arange(rows * S, dtype="int32").reshape(rows, S) % 10 + 1
        known = np.ones((rows, known_length), "int32")
        np.testing.assert_allclose(
            np.asarray(fast((source, known), training=False)),
            np.asarray(model((source, known), training=False)),
            atol=1e-5,
        )
    # a greedy decoder given the wrapper decodes what it decodes eagerly
    source = np.array([[2, 5, 6, 3], [2, 7, 3, 0]], "int32")
    np.testing.assert_array_equal(
        T.greedy_decode(fast, source, 2, 3, 5), T.greedy_decode(model, source, 2, 3, 5)
    )


def test_scaled_multiplies_a_schedule_and_serialises():
    schedule = T.WarmupSchedule(64, 400)
    half = L.scaled(schedule, 0.5)
    steps = np.array([0, 10, 399, 400, 5000])
    for step in steps:
        assert float(half(step)) == pytest.approx(0.5 * float(schedule(step)), rel=1e-6)
    # the date model's peak: (64 * 400)^-1/2 = 0.00625, halved
    assert float(half(399)) == pytest.approx(0.003125, rel=1e-3)
    optimizer = keras.optimizers.Adam(half)
    assert float(optimizer.learning_rate) == pytest.approx(
        0.5 * float(schedule(0)), rel=1e-6
    )
    config = half.get_config()
    assert config["factor"] == 0.5


@pytest.mark.parametrize("factor", [0, -1.0, True, "0.5", None])
def test_scaled_rejects_a_factor_that_is_not_positive(factor):
    with pytest.raises(ValueError, match="positive number"):
        L.scaled(T.WarmupSchedule(64, 400), factor)


def test_scaled_rejects_a_schedule_that_is_not_one():
    with pytest.raises(TypeError, match="LearningRateSchedule"):
        L.scaled(0.001, 0.5)
