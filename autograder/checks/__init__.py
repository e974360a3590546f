"""Checks that graded test cells call: one function per exercise.

A test cell reads like `check_luong_attention(LuongAttention)`: the check
compares the student's layer with the reference on fixed inputs after giving
both the same weights, and says what is wrong when they differ.
"""

from autograder.checks.attention import (
    check_masks,
    check_multi_head_attention,
    check_scaled_dot_product_attention,
)
from autograder.checks.core import CheckFailed
from autograder.checks.seq2seq import (
    check_bahdanau_attention,
    check_bahdanau_decoder_step,
    check_concat_score,
    check_dot_score,
    check_general_score,
    check_luong_attention,
    check_masked_softmax,
)
from autograder.checks.transformer import (
    check_add_norm,
    check_decoder,
    check_decoder_layer,
    check_encoder,
    check_encoder_layer,
    check_feed_forward,
    check_greedy_decode,
    check_masked_loss,
    check_positional_embedding,
    check_positional_encoding,
    check_transformer,
    check_warmup_schedule,
)

__all__ = [
    "CheckFailed",
    "check_add_norm",
    "check_bahdanau_attention",
    "check_bahdanau_decoder_step",
    "check_concat_score",
    "check_decoder",
    "check_decoder_layer",
    "check_dot_score",
    "check_encoder",
    "check_encoder_layer",
    "check_feed_forward",
    "check_general_score",
    "check_greedy_decode",
    "check_luong_attention",
    "check_masked_loss",
    "check_masked_softmax",
    "check_masks",
    "check_multi_head_attention",
    "check_positional_embedding",
    "check_positional_encoding",
    "check_scaled_dot_product_attention",
    "check_transformer",
    "check_warmup_schedule",
]

# Last, once every module of the checks exists: what a borrowed answer must
# call is wrapped (`watch`), then what later code must not change is noted.
from autograder.checks import integrity, sources, store, watch  # noqa: F401

watch.install()
integrity.take_snapshot()
