"""Subword (WordPiece) tokenisers for the translation corpora.

Korean attaches endings to words, so whole-word vocabularies explode; Spanish
less so, but rare words still would. WordPiece splits words into frequent
pieces (`"médicos"` -> `"médico", "##s"`). Following TensorFlow's tutorial,
with `tensorflow-text`:

* `clean`: Unicode NFKC (keeps Hangul syllables whole; NFD/NFKD would split
  them into jamo), lower case, spaces around punctuation;
* `build_vocab`: `bert_vocab_from_dataset` on the training sentences, with
  the reserved tokens `[PAD]` (id 0), `[UNK]`, `[START]`, `[END]`; computed
  once and cached in a file named by a hash of the sentences and settings;
* `Tokenizer`: `text.BertTokenizer` on that vocabulary, adding `[START]` and
  `[END]`, and back to text.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

__all__ = ["RESERVED", "Tokenizer", "build_vocab", "clean"]

RESERVED = ["[PAD]", "[UNK]", "[START]", "[END]"]
PAD, UNK, START, END = range(4)
_PUNCTUATION = r"([.?!,¿¡;:\"])"


def clean(texts):
    """NFKC, lower case, spaces around punctuation; a `tf.string` tensor."""
    import tensorflow as tf
    import tensorflow_text as text

    texts = text.normalize_utf8(tf.convert_to_tensor(texts), "NFKC")
    texts = tf.strings.lower(texts, encoding="utf-8")
    texts = tf.strings.regex_replace(texts, _PUNCTUATION, r" \1 ")
    texts = tf.strings.regex_replace(texts, r"\s+", " ")
    return tf.strings.strip(texts)


def _cache_file(sentences, vocab_size):
    digest = hashlib.sha256()
    digest.update(json.dumps([vocab_size, RESERVED, _PUNCTUATION]).encode())
    for sentence in sentences:
        digest.update(sentence.encode("utf-8"))
        digest.update(b"\n")
    folder = Path(
        os.environ.get("KIT_DATA_CACHE")
        or Path.home() / ".keras" / "datasets" / "attention-course-kit"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"wordpiece-{vocab_size}-{digest.hexdigest()[:16]}.txt"


def build_vocab(sentences, vocab_size=8000):
    """A WordPiece vocabulary learnt from `sentences` (cached). Returns a list."""
    cache = _cache_file(sentences, vocab_size)
    if cache.exists():
        return cache.read_text(encoding="utf-8").split("\n")
    import tensorflow as tf
    from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset as bv

    dataset = tf.data.Dataset.from_tensor_slices(clean(list(sentences))).batch(1024)
    vocab = bv.bert_vocab_from_dataset(
        dataset,
        vocab_size=vocab_size,
        reserved_tokens=RESERVED,
        bert_tokenizer_params={"lower_case": False},
        learn_params={},
    )
    tmp = cache.with_suffix(".tmp")
    tmp.write_text("\n".join(vocab), encoding="utf-8")
    os.replace(tmp, cache)
    return vocab


class Tokenizer:
    """Text to ids (`[START] ... [END]`) and back, with one vocabulary."""

    def __init__(self, vocab):
        import tensorflow as tf
        import tensorflow_text as text

        self.vocab = list(vocab)
        table = tf.lookup.StaticVocabularyTable(
            tf.lookup.KeyValueTensorInitializer(
                self.vocab, tf.range(len(self.vocab), dtype=tf.int64)
            ),
            num_oov_buckets=1,
        )
        self._tokenizer = text.BertTokenizer(
            table, lower_case=False, unknown_token="[UNK]"
        )
        self._words = tf.constant(self.vocab)

    @property
    def vocab_size(self):
        return len(self.vocab)

    def tokenize(self, texts):
        """`(n, None)` ragged int32 ids, each row `[START] ... [END]`."""
        import tensorflow as tf

        pieces = self._tokenizer.tokenize(clean(texts)).merge_dims(-2, -1)
        pieces = tf.cast(pieces, tf.int32)
        n = pieces.bounding_shape()[0]
        start = tf.fill([n, 1], START)
        end = tf.fill([n, 1], END)
        return tf.concat([start, pieces, end], axis=1)

    def detokenize(self, ids):
        """Ids (dense with padding, or ragged) back to text, one string a row."""
        import tensorflow as tf

        ids = tf.convert_to_tensor(ids) if not isinstance(ids, tf.RaggedTensor) else ids
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(ids)
        keep = tf.ragged.boolean_mask(ids, ids > END)  # drop reserved tokens
        words = self._tokenizer.detokenize(tf.cast(keep, tf.int64))
        return tf.strings.reduce_join(words, separator=" ", axis=-1)
