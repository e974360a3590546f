"""Helpers of Assignment 3's notebook: positions, data, BLEU, attention, budget."""

import matplotlib

matplotlib.use("Agg")

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

    def decode_past_the_end(model, source, start_id, end_id, max_length):
        return np.tile([10, end_id, 11], (len(source), 1))

    expected = data.target_tokenizer.detokenize([[10]]).numpy()[0].decode()
    assert (
        data.translate(model, sentences[:2], 6, decode=decode_past_the_end)
        == [L.tidy(expected)] * 2
    )
