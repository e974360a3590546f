"""A crash on shapes explained (`autograder.checks.crash`).

The explanation reads the failing operation's operand shapes and the names on
the failing line: a missing or misplaced size-1 axis, an element-wise product
where a matrix product belongs, an operand to slice, a full transpose, a
swapped weight, a size read from the batch axis. A fix is suggested only
where the shapes admit exactly one; shapes that admit none or several get
the rule alone.
"""

import pytest

from autograder.checks import crash
from autograder.checks import seq2seq as seq2seq_checks
from tests.test_wiring import grade, student


def explain(op, a, b, names=(), weights=(), batch=None, sizes=()):
    text = f"Incompatible shapes: {list(a)} vs. {list(b)} [Op:{op}]"
    return "\n".join(crash.explain(text, list(names), list(weights), batch, set(sizes)))


def test_a_missing_axis_is_named_with_the_expand_dims_that_adds_it():
    text = explain(
        "AddV2",
        (4, 7, 9),
        (4, 9),
        [("h", (4, 7, 9)), ("s", (4, 9))],
        batch=4,
        sizes={4, 7, 9},
    )
    assert "`s` (4, 9) has an axis missing" in text
    assert "`ops.expand_dims(s, -2)` gives (4, 1, 9)" in text


def test_a_size_one_axis_in_the_wrong_place_is_moved():
    text = explain(
        "Mul", (3, 8, 1), (3, 5, 8), [("gate", (3, 8, 1))], batch=3, sizes={3, 5, 8}
    )
    assert "size-1 axis in the wrong place" in text
    assert "position -2, (3, 1, 8)" in text


def test_two_positions_for_a_mask_say_which_masks_keys():
    text = explain(
        "LogicalAnd", (3, 7), (7, 7), [("pad", (3, 7))], batch=3, sizes={3, 7}
    )
    assert "`ops.expand_dims(pad, -2)` makes a mask of keys" in text
    assert "would mask queries" in text


def test_an_elementwise_product_where_a_matrix_product_belongs():
    text = explain(
        "Mul", (5, 2, 6), (5, 9, 6), [("a", (5, 2, 6)), ("b", (5, 9, 6))], batch=5
    )
    assert "matrix product" in text and "differ only on axis 1" in text


def test_a_longer_operand_is_to_be_sliced():
    text = explain(
        "AddV2", (3, 4, 6), (1, 500, 6), [("table", (500, 6))], batch=3, sizes={3, 4, 6}
    )
    assert "slice it" in text and "[:4]" in text
    assert "expand_dims" not in text  # no axis makes these broadcast sensibly


def test_a_size_from_the_batch_axis():
    text = explain("LogicalAnd", (4, 1, 9), (4, 4), batch=4, sizes={4, 9})
    assert "the batch size" in text and "[-1]" in text


def test_a_full_transpose_and_a_swapped_weight():
    text = "\n".join(
        crash.explain(
            "In[0] and In[1] must have compatible batch dimensions: [3,2,5] vs. "
            "[5,4,3] [Op:BatchMatMulV2]",
            [("u", (3, 2, 5)), ("w", (3, 4, 5))],
        )
    )
    assert "`w` (3, 4, 5) with every axis reversed" in text
    assert "ops.swapaxes(x, -1, -2)" in text
    text = "\n".join(
        crash.explain(
            "Matrix size-incompatible: In[0]: [3,7], In[1]: [2,5] [Op:MatMul]",
            [("h", (3, 7))],
            [("U", (7, 5)), ("V", (2, 5))],
        )
    )
    assert "are `V` and `U` swapped?" in text


def test_shapes_that_admit_no_single_fix_get_the_rule_alone():
    text = explain("AddV2", (2, 3, 4), (5, 6), batch=2, sizes={2, 3, 4, 5, 6})
    assert "do not broadcast" in text
    assert "expand_dims" not in text and "slice" not in text


def test_an_unrelated_error_is_not_explained():
    assert crash.explain("name 'x' is not defined", []) == []


def test_a_crash_in_a_real_check_is_explained(monkeypatch):
    """Bahdanau attention whose projected query gets its step axis last,
    (B, u, 1), against the projected keys (B, Tk, u)."""
    module = student(
        "A1",
        [
            (
                "q = ops.expand_dims(ops.matmul(query, self.W_b), -2)",
                "q = ops.expand_dims(ops.matmul(query, self.W_b), -1)",
            )
        ],
    )
    passed, message = grade(
        monkeypatch,
        seq2seq_checks.check_bahdanau_attention,
        "check_bahdanau_attention",
        module.BahdanauAttention,
    )
    assert not passed
    assert "Observed:" in message and "size-1 axis in the wrong place" in message
    assert "position -2" in message


@pytest.mark.parametrize("op", ["Mul", "AddV2", "SelectV2", "LogicalAnd", "Equal"])
def test_every_elementwise_op_is_read(op):
    assert "do not broadcast" in explain(op, (2, 3), (4, 5))


def test_a_weight_of_the_wrong_size_says_what_its_sizes_are(monkeypatch):
    """An encoder layer whose attention has key_dim = dff: the message says
    what each size is (dff, and d_model // num_heads)."""
    from autograder.checks import transformer as transformer_checks

    module = student(
        "A3",
        [
            (
                "self.self_attention = keras.layers.MultiHeadAttention(\n"
                "            num_heads, key_dim=d_model // num_heads, dropout=dropout\n"
                "        )",
                "self.self_attention = keras.layers.MultiHeadAttention(\n"
                "            num_heads, key_dim=dff, dropout=dropout\n"
                "        )",
            )
        ],
    )
    passed, message = grade(
        monkeypatch,
        transformer_checks.check_encoder_layer,
        "check_encoder_layer",
        module.EncoderLayer,
    )
    assert not passed
    assert "(dff)" in message and "(d_model // num_heads)" in message


def test_a_matrix_product_that_fits_with_an_operand_transposed():
    text = "\n".join(
        crash.explain(
            "Matrix size-incompatible: In[0]: [3,6,2], In[1]: [3,6,7] "
            "[Op:BatchMatMulV2]",
            [("p", (3, 6, 2)), ("vals", (3, 6, 7))],
        )
    )
    assert text.startswith("A matrix product needs")
    assert "`p` (3, 6, 2) would fit with its last two axes swapped" in text


def test_a_weight_that_maps_one_size_to_the_other_is_named():
    text = "\n".join(
        crash.explain(
            "Matrix size-incompatible: In[0]: [4,2,3], In[1]: [4,9,7] "
            "[Op:BatchMatMulV2]",
            [("a", (4, 2, 3)), ("b", (4, 7, 9))],
            [("M", (9, 3))],
        )
    )
    assert "The weight `M` (9, 3) maps one of these sizes to the other" in text


def test_pieces_concatenated_along_the_wrong_axis():
    text = "\n".join(
        crash.explain(
            "Matrix size-incompatible: In[0]: [30,5], In[1]: [10,4] [Op:MatMul]",
            [("joined", (3, 10, 5))],
            [("P", (10, 4))],
            3,
            {3, 5, 4},
        )
    )
    assert "concatenated along axis 1" in text and "`axis=-1`" in text


def test_a_part_that_does_not_take_its_weights_is_named(monkeypatch):
    """A FeedForward whose inner layer has d_model units: the encoder layer
    cannot be given its weights, and the message names the part."""
    from autograder.checks import transformer as transformer_checks

    module = student(
        "A3", [('Dense(dff, activation="relu")', 'Dense(d_model, activation="relu")')]
    )
    passed, message = grade(
        monkeypatch,
        transformer_checks.check_encoder_layer,
        "check_encoder_layer",
        module.EncoderLayer,
    )
    assert not passed
    assert "That sublayer is your `FeedForward`" in message
    assert "check_feed_forward" in message


def test_a_reduction_over_the_wrong_axis():
    text = "\n".join(
        crash.explain(
            "Incompatible shapes: [3,9] vs. [3,4] [Op:Equal]",
            [("scores", (3, 4, 9)), ("target", (3, 4))],
            [],
            3,
            {3, 4, 9},
        )
    )
    assert "with axis -2 reduced away" in text and "`axis=-1`" in text
    assert "slice" not in text  # 9 is the case's own size, not a longer table


def test_the_widths_of_a_feed_forward_swapped(monkeypatch):
    from autograder.checks import transformer as transformer_checks

    module = student(
        "A3",
        [
            ('Dense(dff, activation="relu")', 'Dense(d_model, activation="relu")'),
            ("keras.layers.Dense(d_model)", "keras.layers.Dense(dff)"),
        ],
    )
    passed, message = grade(
        monkeypatch,
        transformer_checks.check_feed_forward,
        "check_feed_forward",
        module.FeedForward,
    )
    assert not passed
    assert "the same widths, swapped" in message
    assert "(dff)" in message and "(d_model)" in message


def test_a_decoder_that_calls_the_model_in_training_mode(monkeypatch):
    from autograder.checks import transformer as transformer_checks

    module = student(
        "A3",
        [
            (
                "logits = model((source, output), training=False)",
                "logits = model((source, output), training=True)",
            )
        ],
    )
    passed, message = grade(
        monkeypatch,
        transformer_checks.check_greedy_decode,
        "check_greedy_decode",
        module.greedy_decode,
    )
    assert not passed
    assert "training=True while decoding" in message


def test_a_model_on_a_layer_that_does_not_take_its_weights(monkeypatch):
    """An encoder layer whose attention heads are dff wide: the Transformer
    cannot be given its weights, and its message names the parts it builds on."""
    from autograder.checks import transformer as transformer_checks

    module = student(
        "A3",
        [
            (
                "self.self_attention = keras.layers.MultiHeadAttention(\n"
                "            num_heads, key_dim=d_model // num_heads, dropout=dropout\n"
                "        )",
                "self.self_attention = keras.layers.MultiHeadAttention(\n"
                "            num_heads, key_dim=dff, dropout=dropout\n"
                "        )",
            )
        ],
    )
    passed, message = grade(
        monkeypatch,
        transformer_checks.check_transformer,
        "check_transformer",
        module.Transformer,
    )
    assert not passed
    assert "builds on your `Encoder` (check_encoder)" in message


def test_one_line_when_both_operands_of_a_product_are_the_same_weight():
    """`W_a (6, 4) @ W_a (6, 4)`-like products: the transposed-operand line
    fits the first operand and the second, and is said once."""
    lines = crash.explain(
        "Matrix size-incompatible: In[0]: [6,4], In[1]: [6,4] [Op:MatMul]",
        [("`query`", (2, 3, 4)), ("`W_a`", (6, 4)), ("`keys`", (2, 5, 6))],
        weights=[("W_a", (6, 4))],
    )
    assert len(lines) == len(set(lines))
    assert sum("would fit with its last two axes swapped" in x for x in lines) == 1
