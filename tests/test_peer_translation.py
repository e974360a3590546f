"""benchmarks/peer_translation.py: the keras.io recipe's pieces, on a few sentences."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import peer_translation as P

SOURCES = ["¿Dónde está Tom?", "Tengo dos perros.", "¡Hola, Tom!"]
TARGETS = ["Where's Tom?", "I have two dogs.", "Hello, Tom!"]


def test_standardize_lowers_and_strips_the_recipes_punctuation():
    out = [
        t.decode()
        for t in P.standardize([*SOURCES, "[start] Where's Tom? [end]"]).numpy()
    ]
    # ¿ and ASCII punctuation go; ¡ is not in the recipe's list; brackets stay
    assert out == [
        "dónde está tom",
        "tengo dos perros",
        "¡hola tom",
        "[start] wheres tom [end]",
    ]


def test_vectorizers_are_word_level_with_start_and_end():
    source, target = P.vectorizers(SOURCES, TARGETS, vocab=50, length=6)
    ids = target(P.wrap(["Where's Tom?"])).numpy()[0]
    vocab = target.get_vocabulary()
    assert [vocab[i] for i in ids if i] == ["[start]", "wheres", "tom", "[end]"]
    assert ids.shape == (7,) and source(["Tengo dos perros."]).shape == (1, 6)
    x, y = next(iter(P.peer_dataset(SOURCES, TARGETS, source, target, batch=2)))
    assert x[0].shape == (2, 6) and x[1].shape == (2, 6) and y.shape == (2, 6)
    np.testing.assert_array_equal(x[1][:, 1:], y[:, :-1])  # shifted by one


def test_peer_model_shapes_and_greedy_translation():
    source, target = P.vectorizers(SOURCES, TARGETS, vocab=50, length=6)
    sizes = dict(P.PEER, embed=8, dense=16, heads=2, length=6)
    model = P.peer_model(source.vocabulary_size(), target.vocabulary_size(), sizes)
    probs = model((source(SOURCES), target(P.wrap(TARGETS))[:, :-1]))
    assert probs.shape == (3, 6, target.vocabulary_size())
    np.testing.assert_allclose(np.asarray(probs).sum(-1), 1.0, atol=1e-5)
    out = P.peer_translate(model, SOURCES, source, target, length=6)
    assert len(out) == 3 and all(isinstance(t, str) for t in out)
    assert all(len(t.split()) <= 6 for t in out)  # untrained: any words


def test_no_punctuation_is_the_peers_output_form():
    assert P.no_punctuation(["Where's Tom?", "¡Hola,  Tom!"]) == [
        "wheres tom",
        "hola tom",
    ]
