"""Code the notebook of Assignment 3 shares: data, translation, BLEU, figures.

Kept out of the notebook so that its cells read as the lesson, and tested
with the package (`tests/test_lesson_transformer.py`). Nothing here is a
solution to an exercise: the functions that need the student's code (the
positional encoding, the model, a decoder) take it as an argument.

    >>> data = TranslationData("spa-eng")            # tokenised, split
    >>> model.fit(data.batches("train"), callbacks=[TimeBudget(1200)])
    >>> hypotheses = data.translate(model, data.test.sources)
    >>> bleu(hypotheses, data.test.targets).score
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
import warnings

import numpy as np

from autograder.quiet import import_tensorflow_quietly

import_tensorflow_quietly()

import keras  # noqa: E402  (after the quiet import)

__all__ = [
    "CORPORA",
    "Split",
    "TimeBudget",
    "TranslationData",
    "beam_search",
    "bleu",
    "bleu_by_hand",
    "compiled_model",
    "cross_attention",
    "decoder_blocks",
    "encoder_self_attention",
    "plot_cross_attention",
    "plot_curve",
    "plot_positional_encoding",
    "plot_relative_positions",
    "relative_position_fit",
    "scaled",
    "sentence_bleu",
    "side_by_side",
    "tidy",
    "token_batches",
    "translate",
]

PAD, UNK, START, END = range(4)  # the reserved ids of `autograder.data.wordpiece`

#: Per corpus: held-out pairs, WordPiece vocabulary size per language, and a
#: sentence of its test split (never trained on) for the attention figures.
#: kor-eng has 5,749 pairs: 500 for testing, none for validation, and a
#: smaller vocabulary so that most pieces are seen often enough to learn.
CORPORA = {
    "spa-eng": dict(
        test=2000,
        validation=2000,
        vocab=8000,
        example="Ella está sosteniendo una flor roja.",  # She is holding a red flower.
    ),
    "kor-eng": dict(
        test=500,
        validation=0,
        vocab=4000,
        example="톰은 파란 코트를 입고 있어.",  # Tom is wearing a blue coat.
    ),
}


# --------------------------------------------------------------------------
# Positional encoding


def plot_positional_encoding(encoding, dims=(0, 1, 4, 5, 10, 11), positions=None):
    """Heatmap of a `(length, depth)` positional encoding, and a few dimensions.

    Args:
        encoding: array `(length, depth)`, one row per position.
        dims: the dimensions drawn as curves over the positions (those beyond
            `depth` are skipped).
        positions: how many positions the curves show (default all).

    Returns:
        The matplotlib figure (heatmap left, curves right).
    """
    import matplotlib.pyplot as plt

    encoding = np.asarray(encoding, dtype=float)
    length, depth = encoding.shape
    positions = positions or length
    fig, axes = plt.subplots(
        1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [1.4, 1]}
    )
    image = axes[0].imshow(
        encoding.T, aspect="auto", cmap="RdBu", vmin=-1, vmax=1, origin="lower"
    )
    axes[0].set_xlabel("position")
    axes[0].set_ylabel("dimension")
    axes[0].set_title(f"positional encoding ({length} positions x {depth})")
    fig.colorbar(image, ax=axes[0], fraction=0.04)
    for d in (d for d in dims if d < depth):
        axes[1].plot(np.arange(positions), encoding[:positions, d], label=f"dim {d}")
    axes[1].set_xlabel("position")
    axes[1].set_ylabel("value")
    axes[1].legend(fontsize=7, ncol=2)
    axes[1].set_title("a few dimensions: lower ones turn faster")
    fig.tight_layout()
    return fig


def relative_position_fit(encoding, offset):
    """Fit `PE[p + offset] ~ PE[p] @ M` by least squares over all positions.

    For the sinusoidal encoding the map exists exactly: each (sin, cos) pair
    turns by a fixed angle, so `M` is block diagonal with 2 x 2 rotations and
    the error is round-off. The fit only means something with more positions
    than dimensions (otherwise any encoding fits), so that is required.

    Args:
        encoding: array `(length, depth)` with `length - offset > depth`.
        offset: the shift k.

    Returns:
        `(M, max_error)`: the `(depth, depth)` map and the largest absolute
        difference between `PE[p] @ M` and `PE[p + offset]`.
    """
    encoding = np.asarray(encoding, dtype="float64")
    length, depth = encoding.shape
    if not 0 < offset < length - depth:
        raise ValueError(
            "Received an invalid value for argument `offset`, expected "
            f"0 < offset < length - depth = {length - depth} (more positions "
            f"than dimensions). Received: offset={offset}"
        )
    before, after = encoding[:-offset], encoding[offset:]
    M = np.linalg.lstsq(before, after, rcond=None)[0]
    return M, float(np.abs(before @ M - after).max())


def plot_relative_positions(encoding_fn, length=1024, depth=16, offsets=(1, 4, 16)):
    """Show that `PE(pos + k)` is a linear function of `PE(pos)`.

    Calls `encoding_fn(length, depth)` (the student's positional encoding),
    fits the map for each offset k with `relative_position_fit`, draws the
    fitted matrices (block-diagonal rotations for a correct encoding) and
    writes each fit's largest error in the panel's title. Keep `depth`
    small against `length`: over few positions the slowest dimensions barely
    move, so `M` is not unique there (the error stays tiny, the picture
    gets noisy).

    Returns:
        The matplotlib figure; `fig.errors` is `{k: max_error}`.
    """
    import matplotlib.pyplot as plt

    encoding = np.asarray(encoding_fn(length, depth), dtype="float64")
    fig, axes = plt.subplots(1, len(offsets), figsize=(3.6 * len(offsets), 3.6))
    errors = {}
    for ax, k in zip(np.atleast_1d(axes), offsets, strict=True):
        M, errors[k] = relative_position_fit(encoding, k)
        limit = max(np.abs(M).max(), 1e-9)
        ax.imshow(M, cmap="RdBu", vmin=-limit, vmax=limit)
        ax.set_title(f"k = {k}: max error {errors[k]:.1e}", fontsize=9)
        ax.set_xlabel("dimension of PE(pos + k)")
        ax.set_ylabel("dimension of PE(pos)")
    fig.suptitle("least-squares M with PE(pos) @ M = PE(pos + k)", fontsize=10)
    fig.tight_layout()
    fig.errors = errors
    return fig


# --------------------------------------------------------------------------
# Data


@dataclasses.dataclass
class Split:
    """One part of the corpus, as text and as 0-padded token ids.

    `sources` and `targets` are the sentences; `source_ids` `(N, S)` are
    `[START] ... [END]`, `decoder_inputs` `(N, T)` are `[START] + ids` and
    `decoder_targets` `(N, T)` are `ids + [END]`.
    """

    sources: list
    targets: list
    source_ids: np.ndarray
    decoder_inputs: np.ndarray
    decoder_targets: np.ndarray

    def __len__(self):
        return len(self.sources)


def _dense(ragged):
    """Ragged ids to an int32 array padded with 0 to the longest row."""
    return ragged.to_tensor(default_value=PAD).numpy().astype("int32")


class TranslationData:
    """A corpus split, with WordPiece vocabularies learnt on its training part.

    Loads `load_pairs(corpus)`, splits it with `split_pairs` (seeded,
    disjoint), learns one vocabulary per language on the training sentences
    only (cached), and tokenises the three parts. Training pairs whose
    source or target is longer than `max_length` tokens (with `[START]` and
    `[END]`) are dropped; validation and test pairs never are.

    Args:
        corpus: `"spa-eng"` or `"kor-eng"`; the source is the non-English side.
        source_vocab_size, target_vocab_size: asked-for vocabulary sizes
            (WordPiece may learn fewer).
        max_length: longest training sequence kept, in tokens.
        test, validation: pairs in those parts (see `split_pairs`).
        seed: seed of the split.
        limit: read only the first `limit` pairs of the file (for tests; the
            file is sorted by length, so these are the shortest).
        mirror: folder holding the archive (default `$KIT_DATA_MIRROR`).

    Raises:
        wordpiece.TensorFlowTextMissing: tensorflow-text is missing or built
            for another TensorFlow (its message gives the command to run).
        translation.DataUnavailable: the corpus cannot be had.

    Attributes:
        train, validation, test: `Split`s.
        source_tokenizer, target_tokenizer: `wordpiece.Tokenizer`s.
    """

    def __init__(
        self,
        corpus="spa-eng",
        source_vocab_size=8000,
        target_vocab_size=8000,
        max_length=40,
        test=2000,
        validation=2000,
        seed=0,
        limit=None,
        mirror=None,
    ):
        from autograder.data import translation, wordpiece

        # Before the corpus is read: without tensorflow-text (or with a build
        # for another TensorFlow) this says which version to install.
        wordpiece.load_tensorflow_text()
        self.corpus = corpus
        self.max_length = int(max_length)
        pairs = translation.load_pairs(corpus, mirror=mirror, limit=limit)
        train, val, tst = translation.split_pairs(pairs, test, validation, seed)
        self.source_tokenizer = wordpiece.Tokenizer(
            wordpiece.build_vocab(train[0], source_vocab_size)
        )
        self.target_tokenizer = wordpiece.Tokenizer(
            wordpiece.build_vocab(train[1], target_vocab_size)
        )
        self.train = self._split(*train, drop_long=True)
        self.validation = self._split(*val)
        self.test = self._split(*tst)

    def _split(self, sources, targets, drop_long=False):
        if not sources:  # e.g. `validation=0`
            empty = np.zeros((0, 0), dtype="int32")
            return Split([], [], empty, empty.copy(), empty.copy())
        source = self.source_tokenizer.tokenize(sources)
        target = self.target_tokenizer.tokenize(targets)
        if drop_long:
            keep = (source.row_lengths().numpy() <= self.max_length) & (
                target.row_lengths().numpy() <= self.max_length
            )
            if not keep.all():
                import tensorflow as tf

                source = tf.ragged.boolean_mask(source, keep)
                target = tf.ragged.boolean_mask(target, keep)
                sources = [s for s, k in zip(sources, keep, strict=True) if k]
                targets = [t for t, k in zip(targets, keep, strict=True) if k]
        return Split(
            list(sources),
            list(targets),
            _dense(source),
            _dense(target[:, :-1]),
            _dense(target[:, 1:]),
        )

    @property
    def source_vocab_size(self):
        return self.source_tokenizer.vocab_size

    @property
    def target_vocab_size(self):
        return self.target_tokenizer.vocab_size

    def batches(self, split="train", batch_size=64, seed=0, multiple=1):
        """`token_batches` of one part (`"train"`, `"validation"` or `"test"`)."""
        part = getattr(self, split)
        return token_batches(
            part.source_ids,
            part.decoder_inputs,
            part.decoder_targets,
            batch_size,
            seed=seed,
            multiple=multiple,
        )

    def target_tokens(self, split="train"):
        """Real (non-padding) target tokens of one part, `[END]` included."""
        return int((getattr(self, split).decoder_targets != PAD).sum())

    def pieces(self, ids, side="target"):
        """The WordPiece strings of a row of ids (padding left out)."""
        tokenizer = self.target_tokenizer if side == "target" else self.source_tokenizer
        return [tokenizer.vocab[i] for i in np.asarray(ids).tolist() if i != PAD]

    def translate(
        self,
        model,
        sentences,
        max_length=None,
        decode=None,
        batch_size=256,
        compiled=True,
        length_limit=None,
    ):
        """`translate` with this corpus's tokenizers; `max_length` defaults to
        the training limit."""
        return translate(
            model,
            sentences,
            self.source_tokenizer,
            self.target_tokenizer,
            max_length=max_length or self.max_length,
            decode=decode,
            batch_size=batch_size,
            compiled=compiled,
            length_limit=length_limit,
        )


def token_batches(
    sources, decoder_inputs, decoder_targets, batch_size, seed=0, multiple=1
):
    """`lesson.bucketed_batches` sorted by source, then target length.

    Batches padded to their own length; `multiple` rounds the padded lengths
    up (8 gives few distinct shapes, so the training step is traced, or with
    `jit_compile=True` compiled, few times).
    """
    from autograder import lesson

    return lesson.bucketed_batches(
        sources,
        decoder_inputs,
        decoder_targets,
        batch_size,
        seed=seed,
        multiple=multiple,
        by_target=True,
    )


# --------------------------------------------------------------------------
# Translation and BLEU


_JOINS = (
    (re.compile(r"\s+([.,!?;:%)\]}])"), r"\1"),  # no space before closing marks
    (re.compile(r"([¿¡(\[{$])\s+"), r"\1"),  # nor after opening ones
    (re.compile(r"\s*'\s*"), "'"),  # i ' m -> i'm
    (re.compile(r"(\w)\s*-\s*(\w)"), r"\1-\2"),  # well - known -> well-known
)


def tidy(text):
    """Join the pieces `detokenize` spaces out: `"i ' m here ."` -> `"i'm here."`."""
    for pattern, replacement in _JOINS:
        text = pattern.sub(replacement, text)
    return text.strip()


def compiled_model(model):
    """`model` called inside one `tf.function`: the same outputs, faster.

    Decoding calls the model once per generated token; each eager call pays
    Python and dispatch overhead for every layer. The wrapper traces the
    call once for the first few input shapes, then once for any shape
    (`reduce_retracing`), and runs it as one graph. Called as
    `wrapper((source_ids, decoder_inputs), training=False)`, like the model.
    """
    if isinstance(model, _CompiledModel):
        return model
    return _CompiledModel(model)


class _CompiledModel:
    def __init__(self, model):
        import tensorflow as tf

        self.model = model
        self._call = tf.function(
            lambda source, known: model((source, known), training=False),
            reduce_retracing=True,
        )

    def __call__(self, inputs, training=None):
        source, known = inputs
        return self._call(source, known)


def translate(
    model,
    sentences,
    source_tokenizer,
    target_tokenizer,
    max_length=40,
    decode=None,
    batch_size=256,
    compiled=True,
    length_limit=None,
):
    """Translate sentences: tokenise, decode greedily, back to tidy text.

    Args:
        model: called as `model((source_ids, decoder_inputs))` -> logits
            `(B, T, V)`.
        sentences: source-language strings.
        source_tokenizer, target_tokenizer: `wordpiece.Tokenizer`s.
        max_length: most tokens generated per sentence.
        decode: `decode(model, source_ids, start_id, end_id, max_length)` ->
            int ids `(B, <= max_length)`: the student's `greedy_decode` (an
            exercise, so this module has none of its own). Whatever it puts
            after a row's first `[END]` is ignored.
        batch_size: sentences decoded together (sorted by length first, so
            a batch stops early when all its sentences have ended).
        compiled: give `decode` the model wrapped by `compiled_model` (the
            same outputs, several times faster on a CPU than eager calls).
        length_limit: `(a, b)`: a batch generates at most `a * n + b`
            tokens (and never more than `max_length`), `n` the length of
            its longest source in tokens, as fairseq's `--max-len-a/b`. A
            translation is rarely much longer than its source (of the
            Spanish-English training pairs none is longer than `1.5 n +
            10`), but one sentence on which the model repeats itself keeps
            its whole batch decoding to `max_length`, and without a cache
            each step costs more than the one before.

    Returns:
        A list of strings, lower case (the tokenizers lower-case), one per
        sentence, in the order given.
    """
    if decode is None:
        raise TypeError(
            "translate() needs decode=: your greedy_decode(model, source, "
            "start_id, end_id, max_length) (greedy decoding is an exercise, so "
            "the kit ships no decoder of its own)."
        )
    sentences = list(sentences)
    if not sentences:
        return []
    if length_limit is not None:
        a, b = (float(v) for v in length_limit)
        if a < 0 or not math.isfinite(a + b):
            raise ValueError(
                f"length_limit=(a, b) needs a finite a >= 0; got {length_limit!r}"
            )
    if compiled:
        model = compiled_model(model)
    source = source_tokenizer.tokenize(sentences)
    lengths = source.row_lengths().numpy()
    source = _dense(source)
    order = np.argsort(lengths, kind="stable")
    results = [None] * len(sentences)
    for begin in range(0, len(order), batch_size):
        rows = order[begin : begin + batch_size]
        ids = source[rows, : lengths[rows].max()]
        limit = max_length
        if length_limit is not None:
            limit = max(1, min(max_length, math.ceil(a * ids.shape[1] + b)))
        with warnings.catch_warnings():  # the first step attends to one key
            warnings.filterwarnings("ignore", "You are using a softmax over axis")
            out = np.asarray(decode(model, ids, START, END, limit))
        out = np.where(np.cumsum(out == END, axis=1) > 0, PAD, out)  # cut at [END]
        texts = target_tokenizer.detokenize(out.astype("int32")).numpy()
        for row, text in zip(rows, texts, strict=True):
            results[row] = tidy(text.decode("utf-8"))
    return results


def bleu(hypotheses, references, lowercase=True):
    """Corpus BLEU with sacrebleu (13a tokenisation, one reference each).

    `lowercase=True` because the tokenizers lower-case: the model cannot
    get the case right. Returns sacrebleu's `BLEUScore` (`.score` is the
    number, 0-100; `str()` is its usual one-line report).
    """
    import sacrebleu

    return sacrebleu.corpus_bleu(
        list(hypotheses), [list(references)], lowercase=lowercase
    )


def sentence_bleu(hypothesis, reference, lowercase=True):
    """sacrebleu's smoothed sentence BLEU (0-100) of one translation."""
    import sacrebleu

    return sacrebleu.sentence_bleu(hypothesis, [reference], lowercase=lowercase).score


def bleu_by_hand(hypotheses, references, lowercase=True):
    """Corpus BLEU taken apart: sacrebleu's counts, then the formula by hand.

    BLEU = BP * exp(mean over n = 1..4 of log p_n), where p_n is the clipped
    n-gram precision over the whole corpus (each n-gram of a translation
    counts at most as often as it occurs in its reference; the counts of all
    sentences are added before dividing) and BP = min(1, exp(1 - r / c)) the
    brevity penalty (c: words of the translations, r: of the references).

    Returns:
        A dict: `counts` and `totals` (matching and all n-grams, n = 1..4,
        summed over the corpus), `precisions` (p_n, 0-1), `hyp_len`,
        `ref_len`, `brevity_penalty`, `by_hand` (the formula above, 0-100)
        and `sacrebleu` (sacrebleu's own score, 0-100; equal to `by_hand`
        whenever no p_n is zero, where sacrebleu's default smoothing steps in).
    """
    score = bleu(hypotheses, references, lowercase=lowercase)
    precisions = [
        c / t if t else 0.0 for c, t in zip(score.counts, score.totals, strict=True)
    ]
    c, r = score.sys_len, score.ref_len
    brevity = 1.0 if c > r else (float(np.exp(1 - r / c)) if c else 0.0)
    if min(precisions) > 0:
        by_hand = 100 * brevity * float(np.exp(np.mean(np.log(precisions))))
    else:
        by_hand = 0.0
    return {
        "counts": list(score.counts),
        "totals": list(score.totals),
        "precisions": precisions,
        "hyp_len": c,
        "ref_len": r,
        "brevity_penalty": brevity,
        "by_hand": by_hand,
        "sacrebleu": score.score,
    }


def side_by_side(sources, references, hypotheses, n=3):
    """The `n` best and `n` worst translations by sentence BLEU.

    Returns:
        `(best, worst)`: lists of dicts with keys `source`, `reference`,
        `hypothesis` and `bleu`, best first in `best`, worst first in
        `worst`. Ties keep the corpus order.
    """
    rows = [
        {"source": s, "reference": r, "hypothesis": h, "bleu": sentence_bleu(h, r)}
        for s, r, h in zip(sources, references, hypotheses, strict=True)
    ]
    ranked = sorted(range(len(rows)), key=lambda i: -rows[i]["bleu"])
    best = [rows[i] for i in ranked[:n]]
    worst = [rows[i] for i in sorted(range(len(rows)), key=lambda i: rows[i]["bleu"])]
    return best, worst[:n]


# --------------------------------------------------------------------------
# Beam search


def _next_log_probs(model, compiled):
    """`fn(source, known) -> (B, V)` log-probabilities of the next token."""
    import tensorflow as tf

    if isinstance(model, _CompiledModel):  # compiled here, with the softmax
        model = model.model

    def following(source, known):
        logits = model((source, known), training=False)
        return tf.nn.log_softmax(tf.cast(logits[:, -1], "float32"))

    if compiled:  # one graph, traced again for the first few shapes only
        following = tf.function(following, reduce_retracing=True, autograph=False)
    return lambda source, known: np.asarray(following(source, known), dtype="float64")


def beam_search(
    model,
    source,
    start_id,
    end_id,
    max_length,
    beam_width=4,
    length_penalty=0.6,
    compiled=True,
):
    """Beam-search decoding: keep the `beam_width` best prefixes, not one.

    Greedy decoding commits to the best next token at every step; a token
    that looked second best can start the better sentence. Beam search keeps,
    for each source, the `beam_width` prefixes with the highest total
    log-probability: each step extends every prefix by every token, and the
    `beam_width` best extensions survive. A prefix that produced `end_id` is
    finished: it is only extended by padding, at no cost. At the end the
    finished prefix with the best length-normalised score wins, score /
    ((5 + length) / 6) ** length_penalty (Wu et al., 2016): without it,
    shorter sentences win because every token's log-probability is negative.

    Args:
        model: called as `model((source_ids, decoder_inputs))` -> logits
            `(B, T, V)` (the notebook's `Transformer`).
        source: int ids `(B, S)`.
        start_id, end_id: the `[START]` and `[END]` ids.
        max_length: most tokens generated.
        beam_width: prefixes kept per source (1 is greedy decoding).
        length_penalty: the exponent above (0: raw log-probability).
        compiled: run the model inside one `tf.function` (much faster on a
            CPU; False calls it eagerly, e.g. for a model written in NumPy).

    Returns:
        int32 ids `(B, <= max_length)` without the start token, padding (0)
        after each row's `end_id`: the same contract as `greedy_decode`, so it
        can be given to `translate(..., decode=...)`.
    """
    source = np.asarray(source, dtype="int32")
    rows, width = len(source), int(beam_width)
    if width < 1:
        raise ValueError(
            "Received an invalid value for argument `beam_width`, expected a "
            f"positive integer. Received: beam_width={beam_width}"
        )
    next_log_probs = _next_log_probs(model, compiled)
    sources = np.repeat(source, width, axis=0)  # (B * K, S)
    tokens = np.full((rows * width, 1), start_id, dtype="int32")
    scores = np.full((rows, width), -np.inf)
    scores[:, 0] = 0.0  # one live prefix at first: no duplicates
    finished = np.zeros((rows, width), dtype=bool)
    lengths = np.zeros((rows, width), dtype="int64")
    first = np.arange(rows)[:, None] * width
    for _step in range(max_length):
        log_probs = next_log_probs(sources, tokens)
        vocab = log_probs.shape[-1]
        log_probs = log_probs.reshape(rows, width, vocab)
        log_probs[..., PAD] = -np.inf  # a live prefix never pads...
        log_probs[finished] = -np.inf  # ...a finished one only pads, for free
        log_probs[..., PAD][finished] = 0.0
        total = (scores[..., None] + log_probs).reshape(rows, width * vocab)
        best = np.argpartition(-total, width - 1, axis=1)[:, :width]  # (B, K)
        order = np.argsort(
            -np.take_along_axis(total, best, axis=1), axis=1, kind="stable"
        )
        best = np.take_along_axis(best, order, axis=1)  # best first
        scores = np.take_along_axis(total, best, axis=1)
        beam, token = best // vocab, (best % vocab).astype("int32")
        tokens = np.concatenate(
            [tokens[(first + beam).ravel()], token.reshape(-1, 1)], 1
        )
        was_finished = np.take_along_axis(finished, beam, axis=1)
        lengths = np.take_along_axis(lengths, beam, axis=1) + ~was_finished
        finished = was_finished | (token == end_id)
        if finished.all():
            break
    normalised = scores / ((5.0 + lengths) / 6.0) ** length_penalty
    normalised[~np.isfinite(scores)] = -np.inf
    winner = first[:, 0] + normalised.argmax(axis=1)
    return tokens[winner, 1:]


# --------------------------------------------------------------------------
# Cross-attention


def decoder_blocks(decoder):
    """The decoder's list of layers: attribute `blocks`, else `layers_`."""
    for name in ("blocks", "layers_"):
        blocks = getattr(decoder, name, None)
        if blocks:
            return list(blocks)
    raise AttributeError(
        f"{type(decoder).__name__} has no list of decoder layers named `blocks` "
        "(or `layers_`)."
    )


def cross_attention(
    model,
    source_ids,
    target_ids,
    encoder="encoder",
    decoder="decoder",
    embedding="embedding",
    dropout="dropout",
):
    """Cross-attention weights of the last decoder layer for one sentence.

    Runs `model.encoder` on the source, then the decoder's embedding, its
    dropout and its layers on `target_ids` (the decoder inputs, starting
    with `[START]`), calling the last layer with
    `return_attention_scores=True`. Each decoder layer is called as
    `layer(x, context, mask=..., context_mask=..., training=False)`.

    Args:
        model: a Transformer with attributes `encoder` and `decoder` (names
            overridable); the decoder has `embedding`, `dropout` and a list
            `blocks` (or `layers_`).
        source_ids: 1-D ids of one source sentence (padding allowed).
        target_ids: 1-D decoder input ids.

    Returns:
        A numpy array `(heads, T, S)`: row t is where target position t
        looks in the source.
    """
    from keras import ops

    enc, dec = getattr(model, encoder), getattr(model, decoder)
    source = np.asarray(source_ids, dtype="int32")[None]
    target = np.asarray(target_ids, dtype="int32")[None]
    context = enc(source, training=False)
    context_mask = enc.compute_mask(source)
    embed = getattr(dec, embedding)
    mask = embed.compute_mask(target)
    x = getattr(dec, dropout)(embed(target), training=False)
    *blocks, last = decoder_blocks(dec)
    arguments = dict(mask=mask, context_mask=context_mask, training=False)
    for block in blocks:
        x = block(x, context, **arguments)
    _, scores = last(x, context, return_attention_scores=True, **arguments)
    return ops.convert_to_numpy(scores)[0]


def encoder_self_attention(
    model,
    source_ids,
    layer=-1,
    encoder="encoder",
    embedding="embedding",
    dropout="dropout",
    attention="self_attention",
):
    """Self-attention weights of one encoder layer for one sentence.

    Runs the encoder's embedding, its dropout and its layers before `layer`
    on the source, then calls that layer's `self_attention` (the attribute
    the exercise prescribes) on the layer's input, with the padding as the
    attention mask and `return_attention_scores=True`.

    Args:
        model: a Transformer with an `encoder` attribute; the encoder has
            `embedding`, `dropout` and a list `blocks` (or `layers_`), each
            layer a `self_attention` (all names overridable).
        source_ids: 1-D ids of one source sentence (padding allowed).
        layer: which encoder layer (default the last).

    Returns:
        A numpy array `(heads, S, S)`: row i is where source position i
        looks in the source.
    """
    from keras import ops

    enc = getattr(model, encoder)
    source = np.asarray(source_ids, dtype="int32")[None]
    embed = getattr(enc, embedding)
    mask = embed.compute_mask(source)
    x = getattr(enc, dropout)(embed(source), training=False)
    blocks = decoder_blocks(enc)
    chosen = range(len(blocks))[layer]
    for block in blocks[:chosen]:
        x = block(x, mask=mask, training=False)
    # the padding of the keys, for every query: (1, 1, S)
    keys = None if mask is None else ops.expand_dims(ops.cast(mask, "bool"), 1)
    _, scores = getattr(blocks[chosen], attention)(
        x, x, attention_mask=keys, return_attention_scores=True, training=False
    )
    return ops.convert_to_numpy(scores)[0]


def plot_cross_attention(scores, source_tokens, target_tokens, columns=4, title=None):
    """Each head's cross-attention for one sentence, as a grid of heatmaps.

    Args:
        scores: `(heads, T, S)` (from `cross_attention`); padding columns
            beyond `len(source_tokens)` and rows beyond `len(target_tokens)`
            are cut off.
        source_tokens: the S source pieces (columns).
        target_tokens: the T target pieces (rows): the token each row
            predicted, or the decoder input at that row (for self-attention,
            the source pieces again).
        columns: heads per row of the grid.
        title: the figure's title (default: cross-attention of the last
            decoder layer).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    scores = np.asarray(scores)
    heads = scores.shape[0]
    S, T = len(source_tokens), len(target_tokens)
    columns = min(columns, heads)
    rows = -(-heads // columns)
    cell = max(0.28 * max(S, T), 2.2)
    fig, axes = plt.subplots(
        rows, columns, figsize=(cell * columns + 1, cell * rows + 0.6), squeeze=False
    )
    for h, ax in enumerate(axes.flat):
        if h >= heads:
            ax.axis("off")
            continue
        ax.imshow(scores[h, :T, :S], cmap="viridis", vmin=0.0, aspect="auto")
        ax.set_xticks(range(S), labels=source_tokens, rotation=90, fontsize=7)
        ax.set_yticks(range(T), labels=target_tokens, fontsize=7)
        ax.set_title(f"head {h}", fontsize=9)
    fig.suptitle(title or "cross-attention of the last decoder layer", fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------
# Training within a time budget


class WrappedSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A schedule built on another (`self.schedule`): its config holds the
    wrapped schedule serialised, and `from_config` rebuilds it."""

    def get_config(self):
        return {"schedule": keras.saving.serialize_keras_object(self.schedule)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["schedule"] = keras.saving.deserialize_keras_object(config["schedule"])
        return cls(**config)


class scaled(WrappedSchedule):  # noqa: N801
    """A learning-rate schedule multiplied by a constant: `factor * schedule(step)`.

    The paper's warm-up schedule has no free constant: its peak,
    `(d_model * warmup_steps)^-1/2`, is 0.0063 for `d_model` 64 and 400
    warm-up steps, high enough for a small model's training to jump from
    one solution to the next. Implementations that use the schedule on
    other sizes (tensor2tensor's `learning_rate_constant`) multiply it by
    a constant; this is that constant.

    Args:
        schedule: a `LearningRateSchedule` (the student's `WarmupSchedule`).
        factor: a positive number.
    """

    def __init__(self, schedule, factor):
        if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            raise TypeError(
                "Expected `schedule` to be a keras LearningRateSchedule (e.g. your "
                f"WarmupSchedule). Received: {schedule!r}"
            )
        number = isinstance(factor, (int, float)) and not isinstance(factor, bool)
        if not (number and factor > 0):
            raise ValueError(
                f"Expected `factor` to be a positive number. Received: {factor!r}"
            )
        self.schedule = schedule
        self.factor = float(factor)

    def __call__(self, step):
        return self.schedule(step) * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


class TimeBudget(keras.callbacks.Callback):
    """Stop `model.fit` once `seconds` of training have passed.

    The clock starts when training begins and is read after every batch, so
    training stops within one batch of the budget (the epoch in progress is
    cut short). Give `fit` more epochs than the budget allows.

    A budget shorter than one epoch leaves `fit`'s history a single point,
    so the callback also keeps its own curve: every `record_every` batches,
    the mean loss and metrics of the batches since the last record.

    Args:
        seconds: the budget.
        tokens_per_batch: target tokens per batch (a number, e.g. the mean
            over an epoch, or `fn(batch_index) -> number`); when given,
            `tokens_per_second` is reported.
        record_every: batches between two points of `curve`.
        report_every: print a line (step, seconds, the curve's last
            values) every this many batches (None: silent).

    Attributes:
        seconds_used, batches, epochs (completed or started), tokens,
        tokens_per_second, stopped (True if the budget ran out), logs (the
        last batch's logs: the epoch's running mean loss and metrics),
        curve (a list of dicts: `step`, `seconds` and each logged value).
    """

    def __init__(
        self, seconds, tokens_per_batch=None, record_every=50, report_every=None
    ):
        super().__init__()
        self.budget = float(seconds)
        self.tokens_per_batch = tokens_per_batch
        self.record_every = int(record_every)
        self.report_every = report_every
        self.seconds_used = 0.0
        self.batches = self.epochs = 0
        self.tokens = 0.0
        self.stopped = False
        self.logs = {}
        self.curve = []
        self._epoch_batches, self._last = 0, (0, {})

    def on_train_begin(self, logs=None):
        self._started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs += 1
        self._epoch_batches, self._last = 0, (0, {})

    def on_train_batch_end(self, batch, logs=None):
        if self.tokens_per_batch is not None:
            per = self.tokens_per_batch
            self.tokens += per(batch) if callable(per) else per
        self.batches += 1
        self._epoch_batches += 1
        self.logs = dict(logs or {})
        self.seconds_used = time.perf_counter() - self._started
        if self.batches % self.record_every == 0:
            self._record()
        if self.report_every and self.batches % self.report_every == 0:
            values = (
                ", ".join(
                    f"{k} {v:.3f}"
                    for k, v in self.curve[-1].items()
                    if k not in ("step", "seconds")
                )
                if self.curve
                else ""
            )
            print(
                f"step {self.batches:,}, {self.seconds_used:.0f} s: {values}",
                flush=True,
            )
        if self.seconds_used >= self.budget:
            self.stopped = True
            self.model.stop_training = True

    def _record(self):
        """Window means from the epoch's running means: (n2 m2 - n1 m1) / (n2 - n1)."""
        n1, means1 = self._last
        n2 = self._epoch_batches
        point = {"step": self.batches, "seconds": self.seconds_used}
        means2 = {}
        for key, value in self.logs.items():
            try:
                means2[key] = float(value)
            except (TypeError, ValueError):
                continue
            point[key] = (n2 * means2[key] - n1 * means1.get(key, 0.0)) / (n2 - n1)
        self.curve.append(point)
        self._last = (n2, means2)

    def on_train_end(self, logs=None):
        self.seconds_used = time.perf_counter() - self._started

    @property
    def tokens_per_second(self):
        if self.tokens_per_batch is None or not self.seconds_used:
            return None
        return self.tokens / self.seconds_used


def plot_curve(budget, metrics=("loss", "masked_accuracy"), label=None):
    """The `TimeBudget`'s curve: each metric against the training step.

    Returns:
        The matplotlib figure (one panel per metric found in the curve).
    """
    import matplotlib.pyplot as plt

    metrics = [m for m in metrics if budget.curve and m in budget.curve[0]]
    fig, axes = plt.subplots(
        1, max(len(metrics), 1), figsize=(5 * max(len(metrics), 1), 3.2)
    )
    steps = [p["step"] for p in budget.curve]
    for ax, metric in zip(np.atleast_1d(axes), metrics, strict=False):
        ax.plot(steps, [p[metric] for p in budget.curve], label=label)
        ax.set_xlabel("training step")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if label:
            ax.legend()
    fig.tight_layout()
    return fig
