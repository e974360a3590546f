"""WordPiece tokenisers: learnt once and cached, reversible, Hangul kept whole."""

import os
import sys

import numpy as np
import pytest
from conftest import needs_mirror

from autograder.data import translation as T
from autograder.data import wordpiece as W

MIRROR = os.environ.get(T.MIRROR_ENV)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_DATA_CACHE", str(tmp_path / "cache"))


def test_clean_keeps_hangul_syllables_and_spaces_punctuation():
    out = [s.decode() for s in W.clean(["¿Cómo   estás?", "나는 학생이다."]).numpy()]
    assert out == ["¿ cómo estás ?", "나는 학생이다 ."]


@needs_mirror
@pytest.mark.parametrize("name", ["spa-eng", "kor-eng"])
def test_vocab_is_cached_and_round_trips(name, tmp_path):
    sources, _ = T.load_pairs(name)
    sample = sources[::40][:3000]
    vocab = W.build_vocab(sample, vocab_size=2000)
    assert vocab[:4] == W.RESERVED
    cached = list((tmp_path / "cache").glob("wordpiece-*.txt"))
    assert len(cached) == 1
    assert W.build_vocab(sample, vocab_size=2000) == vocab  # from the cache
    tokenizer = W.Tokenizer(vocab)
    ids = tokenizer.tokenize(sample[:200])
    assert int(ids[0][0]) == W.START and int(ids[0][-1]) == W.END
    back = [s.decode() for s in tokenizer.detokenize(ids).numpy()]
    expected = [s.decode() for s in W.clean(sample[:200]).numpy()]
    same = np.mean([b == e for b, e in zip(back, expected, strict=True)])
    assert same > 0.95, same  # what differs has a word outside the vocabulary
    if name == "kor-eng":
        assert not any("\u1100" <= ch <= "\u11ff" for ch in "".join(vocab))  # no jamo


def test_a_tensorflow_text_that_does_not_load_says_which_to_install(monkeypatch):
    """tensorflow-text requires one TensorFlow release exactly, so it is not a
    requirement of the student package: without a build that loads, the
    tokenisers say which version to install instead of an obscure error."""
    import tensorflow as tf

    monkeypatch.setitem(sys.modules, "tensorflow_text", None)  # import fails
    with pytest.raises(W.TensorFlowTextMissing) as missing:
        W.Tokenizer(W.RESERVED)
    release = ".".join(tf.__version__.split(".")[:2])
    message = str(missing.value)
    assert f'%pip install "tensorflow-text=={release}.*"' in message
    assert "is installed but does not load" in message
    assert isinstance(missing.value, ImportError)
