"""The pronoun corpus of Assignment 2: deterministic, balanced, no shortcut."""

import collections

import numpy as np
import pytest

from autograder.data import pronouns


@pytest.fixture(scope="module")
def train():
    return pronouns.load_pronouns("train")


@pytest.fixture(scope="module")
def test():
    return pronouns.load_pronouns("test")


def test_sentences_are_deterministic_and_pinned():
    a = pronouns.load_pronouns("train", size=6, seed=0)
    b = pronouns.load_pronouns("train", size=6, seed=0)
    assert a.sentences == b.sentences
    # Pinned: the raw PCG64 stream and the CRC-32 split are platform independent.
    assert a.text(0) == "beyond the lake lay the pig , and sadly it was too weak ."
    assert a.text(1) == "beyond the lake lay the pig , and sadly it was closed ."
    assert list(a.labels) == [1, 0, 1, 0, 1, 0]
    assert pronouns.load_pronouns("train", size=2).sentences == a.sentences[:2]
    assert pronouns.load_pronouns("train", size=6, seed=1).sentences != a.sentences


def test_every_row_names_its_referent_at_its_position(train):
    for row in range(0, len(train), 97):
        words = train.sentences[row]
        assert words[train.pronoun[row]] == "it"
        assert words.count("it") == 1
        first, second = (words[i] for i in train.nouns[row])
        referent = train.referents[row]
        assert referent == (first, second)[train.labels[row]]
        assert words[train.referent_positions[row]] == referent
        kinds = {noun in pronouns.CREATURES for noun in (first, second)}
        assert kinds == {True, False}  # one creature, one place
        fits = pronouns.CREATURES if referent in pronouns.CREATURES else pronouns.PLACES
        preds = (
            pronouns.CREATURE_PREDICATES
            if fits is pronouns.CREATURES
            else pronouns.PLACE_PREDICATES
        )
        assert train.predicates[row] in preds
        assert " ".join(words).endswith(f"it {train.predicates[row]} .")


def test_twins_share_everything_but_the_predicate_and_the_answer(train):
    even, odd = slice(0, None, 2), slice(1, None, 2)
    np.testing.assert_array_equal(train.nouns[even], train.nouns[odd])
    np.testing.assert_array_equal(train.templates[even], train.templates[odd])
    assert np.all(train.labels[even] != train.labels[odd])
    for row in range(0, 400, 2):
        a, b = train.sentences[row], train.sentences[row + 1]
        assert a[: train.pronoun[row] + 1] == b[: train.pronoun[row] + 1]


def test_both_answers_are_equally_likely(train, test):
    for split in (train, test):
        assert split.labels.mean() == 0.5  # exactly: twins
        # and the creature comes first about half the time
        first = np.array(
            [s[i] for s, i in zip(split.sentences, split.nouns[:, 0], strict=True)]
        )
        share = np.isin(first, pronouns.CREATURES).mean()
        assert 0.45 < share < 0.55


def test_held_out_combinations_never_occur_in_training(train, test):
    def combinations(split):
        pairs = set()
        for words, predicate in zip(split.sentences, split.predicates, strict=True):
            for noun in words:
                if noun in pronouns.CREATURES + pronouns.PLACES:
                    pairs.add((noun, predicate))
        return pairs

    seen, held_out = combinations(train), combinations(test)
    referred = set(zip(test.referents, test.predicates, strict=True))
    assert referred and not referred & seen
    assert all(pronouns.split_for(n, p) == "test" for n, p in referred)
    # only the mismatched pairs (a place with a creature's predicate) overlap
    assert all(
        (n in pronouns.CREATURES) != (p in pronouns.CREATURE_PREDICATES)
        for n, p in held_out & seen
    )
    # every noun and every predicate is still seen in training
    words = {w for s in train.sentences for w in s}
    assert set(pronouns.CREATURES + pronouns.PLACES) <= words
    assert set(pronouns.CREATURE_PREDICATES + pronouns.PLACE_PREDICATES) == set(
        train.predicates
    )


def test_the_classic_sentences_are_held_out():
    pair = pronouns.classic_pair()
    assert pair.text(0) == (
        "the animal didn't cross the street because it was too tired ."
    )
    assert pair.text(1).endswith("it was too wide .")
    assert pair.referents == ("animal", "street")
    assert list(pair.labels) == [0, 1]
    assert {
        pronouns.split_for(n, p)
        for n, p in zip(pair.referents, pair.predicates, strict=True)
    } == {"test"}


def _single_cue_accuracy(train, test, cue):
    """Predict the majority training label of each value of one cue."""
    votes = collections.defaultdict(collections.Counter)
    for row in range(len(train)):
        votes[cue(train, row)][int(train.labels[row])] += 1
    right = 0
    for row in range(len(test)):
        counts = votes.get(cue(test, row))
        guess = counts.most_common(1)[0][0] if counts else 0
        right += guess == test.labels[row]
    return right / len(test)


@pytest.mark.parametrize(
    "cue",
    [
        lambda s, r: s.sentences[r][s.nouns[r, 0]],  # the first noun
        lambda s, r: s.sentences[r][s.nouns[r, 1]],  # the second noun
        lambda s, r: tuple(s.sentences[r][i] for i in s.nouns[r]),  # the pair
        lambda s, r: s.predicates[r],  # the predicate
        lambda s, r: int(s.templates[r]),  # the template
        lambda s, r: int(s.pronoun[r]),  # the pronoun's position
        lambda s, r: len(s.sentences[r]),  # the length
    ],
    ids=[
        "first-noun",
        "second-noun",
        "noun-pair",
        "predicate",
        "template",
        "pronoun-position",
        "length",
    ],
)
def test_no_single_cue_beats_chance(train, test, cue):
    assert 0.44 < _single_cue_accuracy(train, test, cue) < 0.56


def test_encode_and_decode_round_trip(test):
    ids = pronouns.encode(test.sentences[:50])
    assert ids.shape == (50, pronouns.MAX_LENGTH) and ids.dtype == np.int32
    assert ids.max() < len(pronouns.VOCAB) and pronouns.VOCAB[0] == "<pad>"
    for row in range(50):
        assert tuple(pronouns.decode(ids[row])) == test.sentences[row]
    assert [pronouns.VOCAB[i] for i in test.referent_ids[:50]] == list(
        test.referents[:50]
    )
    longest = max(len(s) for s in pronouns.load_pronouns("train").sentences)
    assert longest == pronouns.MAX_LENGTH


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "validation"}, "split"),
        ({"split": "train", "size": 3}, "even"),
        ({"split": "train", "size": 0}, "size"),
        ({"split": "train", "seed": -1}, "seed"),
    ],
)
def test_invalid_arguments_say_what_was_received(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pronouns.load_pronouns(**kwargs)
    with pytest.raises(ValueError, match="vocabulary"):
        pronouns.encode([("the", "unicorn")])
