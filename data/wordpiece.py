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

tensorflow-text is built for one TensorFlow release (`tensorflow-text==2.17.*`
for TensorFlow 2.17) and requires exactly that one, so it is not a hard
requirement of the student package: installing it would replace a runtime's
own TensorFlow (Colab's, a JupyterHub image's). Without it, or with a build
for another TensorFlow, these functions raise `TensorFlowTextMissing`, whose
message gives the command that installs the matching version.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
from pathlib import Path

__all__ = [
    "RESERVED",
    "TensorFlowTextMissing",
    "Tokenizer",
    "build_vocab",
    "clean",
    "load_tensorflow_text",
]

RESERVED = ["[PAD]", "[UNK]", "[START]", "[END]"]
PAD, UNK, START, END = range(4)
_PUNCTUATION = r"([.?!,¿¡;:\"])"


class TensorFlowTextMissing(ImportError):
    """tensorflow-text is missing, or built for another TensorFlow."""


def load_tensorflow_text():
    """The `tensorflow_text` module; `TensorFlowTextMissing` says how to get it."""
    import tensorflow as tf

    try:
        import tensorflow_text as text
    except (ImportError, tf.errors.NotFoundError) as error:
        raise TensorFlowTextMissing(_missing_message(tf.__version__, error)) from None
    return text


def _missing_message(tf_version, error):
    release = re.match(r"\d+\.\d+", tf_version)
    release = release.group(0) if release else tf_version
    try:
        installed = importlib.metadata.version("tensorflow-text")
    except importlib.metadata.PackageNotFoundError:
        problem = "it is not installed"
    else:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        problem = (
            f"tensorflow-text {installed} is installed but does not load with "
            f"TensorFlow {tf_version} ({type(error).__name__}: {reason[:200]})"
        )
    return (
        "The WordPiece tokenisers (the translation part of Assignment 3) need "
        f"tensorflow-text built for your TensorFlow {tf_version}; {problem}. "
        "Install the matching version in a notebook cell, then restart the "
        f'kernel:\n\n    %pip install "tensorflow-text=={release}.*"\n\n'
        "Everything else in the course runs without it."
    )


def clean(texts):
    """NFKC, lower case, spaces around punctuation; a `tf.string` tensor."""
    import tensorflow as tf

    text = load_tensorflow_text()
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

    load_tensorflow_text()  # says which version to install when it is missing
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

        text = load_tensorflow_text()
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
