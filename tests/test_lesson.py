"""The helpers the notebooks share: batching, decoding, scoring, figures."""

import keras
import matplotlib.pyplot as plt
import numpy as np

from autograder import lesson
from autograder.data import dates


def test_bucketed_batches_cover_every_example_once_padded_per_batch():
    split = dates.load_date_lists("validation", size=700, seed=0)
    vocab_s, vocab_t = dates.CharVocab.for_sources(), dates.CharVocab.for_targets()
    x = dates.encode_sources(split.sources, vocab_s)
    y_in, y_out = dates.encode_targets(split.targets, vocab_t)
    dataset = lesson.bucketed_batches(x, y_in, y_out, batch_size=64, seed=1)
    seen = []
    for (sources, decoder_inputs), targets in dataset:
        sources, targets = sources.numpy(), targets.numpy()
        assert (
            sources.shape[1] == (sources != 0).sum(1).max()
        )  # padded to its own longest
        assert decoder_inputs.shape == targets.shape
        seen += [vocab_s.decode(row) for row in sources]
    assert sorted(seen) == sorted(split.sources)
    assert len(dataset) == -(-len(split) // 64)


def test_rounded_batches_mix_every_length_that_pads_alike():
    """With `multiple`, a batch is drawn from all examples of its padded
    length, in random order: not from one exact length (on the date task one
    length is often one format), and the shapes stay the rounded ones."""
    rng = np.random.default_rng(0)
    lengths = np.repeat(np.arange(1, 17), 64)  # 16 lengths, 64 of each
    x = np.zeros((len(lengths), 16), "int32")
    for row, n in enumerate(lengths):
        x[row, :n] = rng.integers(1, 9, n)
    y = np.ones((len(lengths), 3), "int32")
    for multiple, shapes in ((8, {8, 16}), (1, set(range(1, 17)))):
        batches = list(
            lesson.bucketed_batches(x, y, y, batch_size=64, seed=3, multiple=multiple)
        )
        widths = [batch[0][0].shape[1] for batch in batches]
        assert set(widths) == shapes and len(batches) == 16
        mixed = [len(set((b[0][0].numpy() != 0).sum(1))) for b in batches]
        if multiple == 1:  # sorted by exact length: one length per batch
            assert max(mixed) == 1
        else:  # the 8 lengths of a bucket in every batch
            assert min(mixed) == 8


def test_greedy_decode_feeds_back_its_predictions():
    """A 'model' that predicts (previous token + 1) at every step."""

    class Counter(keras.Model):
        def call(self, inputs):
            _, known = inputs
            return keras.ops.one_hot(known + 1, 20)

        def predict(self, inputs, batch_size=None, verbose=0):
            return keras.ops.convert_to_numpy(self(inputs))

    out = lesson.greedy_decode(Counter(), np.zeros((2, 3), "int32"), 4, start_id=5)
    np.testing.assert_array_equal(out, [[6, 7, 8, 9], [6, 7, 8, 9]])


def test_date_results_score_each_date_of_a_list():
    lengths, correct = lesson.date_results(
        ["3.5.1979", "5/3/79 and 6/4/80"],
        ["1979-05-03", "1979-05-03 1980-06-04"],
        ["1979-05-03", "1979-05-03"],
    )
    np.testing.assert_array_equal(lengths, [8, 17, 17])
    np.testing.assert_array_equal(correct, [True, True, False])


def test_accuracy_by_length_buckets():
    rows = lesson.accuracy_by_length([5, 6, 20, 30], [1, 0, 1, 1], [0, 10, 25, 40, 50])
    assert rows == [(0, 10, 2, 0.5), (10, 25, 1, 1.0), (25, 40, 1, 1.0)]


def test_figures_draw(capsys):
    lesson.show_versions()
    assert "tensorflow 2.21" in capsys.readouterr().out
    lesson.draw_encoder_decoder(attention=True)
    lesson.draw_encoder_decoder(attention=False)
    lesson.plot_attention(np.eye(3, 5), "5/3/7", "19⏎")
    lesson.plot_accuracy_by_length({"m": [(0, 10, 3, 0.5)]})
    plt.close("all")


def test_hangul_is_drawn_with_an_installed_font():
    import warnings

    import pytest

    if lesson.hangul_font() is None:
        pytest.skip("no font with Hangul (tools/system-packages.sh installs one)")
    assert lesson.use_hangul_font() in lesson.HANGUL_FONTS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ax = lesson.plot_attention(np.eye(10, 12), "1979년 5월 3일", "1979-05-03")
        figure = ax.figure
        figure.axes[0].set_title("학교에서 → from school")
        figure.canvas.draw()
        lesson.draw_encoder_decoder(attention=True, source="5월 3일")
        plt.gcf().canvas.draw()
    missing = [str(w.message) for w in caught if "missing from font" in str(w.message)]
    assert missing == []
    plt.close("all")


def test_onednn_is_switched_off_only_while_grading():
    from autograder.quiet import quiet_tensorflow

    own_jupyter = {}
    quiet_tensorflow(own_jupyter)
    assert "TF_ENABLE_ONEDNN_OPTS" not in own_jupyter  # TensorFlow's default: on
    assert own_jupyter["TF_CPP_MIN_LOG_LEVEL"] == "3"
    grading = {"NBGRADER_EXECUTION": "autograde"}
    quiet_tensorflow(grading)
    assert grading["TF_ENABLE_ONEDNN_OPTS"] == "0"
    chosen = {"NBGRADER_EXECUTION": "validate", "TF_ENABLE_ONEDNN_OPTS": "1"}
    quiet_tensorflow(chosen)
    assert chosen["TF_ENABLE_ONEDNN_OPTS"] == "1"  # the user's choice stays
