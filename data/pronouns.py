"""Which noun does "it" refer to? A templated, download-free corpus.

Every sentence names two nouns, a *creature* (`animal`, `dog`, `horse`, ...)
and a *place* (`street`, `river`, `bridge`, ...), then says something about
"it". Only the predicate after the pronoun tells which noun "it" is:

    the animal didn't cross the street because it was too tired   -> animal
    the animal didn't cross the street because it was too wide    -> street

Sentences come in such **twins**: the same template, the same two nouns in
the same order, once with a creature's predicate and once with a place's.
So the two nouns, their order, the template and the pronoun's position say
nothing about the answer on their own (each is exactly at chance); the
predicate alone is at chance too, because the creature comes first in half
of the sentences and second in the other half. To answer, a model must know
which kind of thing each noun is and which kind the predicate describes: the
choice "by meaning" that self-attention is famous for.

The test split holds out (noun, predicate) combinations: a held-out pair such
as (`animal`, `was too tired`) never occurs in a training sentence, although
`animal` and `was too tired` each occur there with other words.

Deterministic: the held-out combinations are a CRC-32 of their text (never
Python's salted `hash()`), and sampling reads the raw 64-bit stream of
NumPy's PCG64, so a call gives the same sentences on every platform.

Example:

    >>> from autograder.data import pronouns
    >>> train = pronouns.load_pronouns("train")
    >>> x = pronouns.encode(train.sentences)  # (20000, MAX_LENGTH) word ids
    >>> train.labels[:2]  # 0: "it" is the first noun, 1: the second
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .dates import _check_int  # one validation of integer arguments

__all__ = [
    "CREATURES",
    "CREATURE_PREDICATES",
    "DEFAULT_SIZES",
    "MAX_LENGTH",
    "PLACES",
    "PLACE_PREDICATES",
    "SPLITS",
    "TEMPLATES",
    "VOCAB",
    "PronounSplit",
    "classic_pair",
    "decode",
    "encode",
    "load_pronouns",
    "make_sentence",
    "split_for",
]

CREATURES = (
    "animal",
    "dog",
    "cat",
    "horse",
    "cow",
    "fox",
    "goat",
    "sheep",
    "rabbit",
    "deer",
    "donkey",
    "pig",
    "duck",
    "bear",
    "mouse",
    "wolf",
    "camel",
    "turtle",
    "chicken",
    "puppy",
)
PLACES = (
    "street",
    "road",
    "river",
    "bridge",
    "field",
    "path",
    "lane",
    "stream",
    "canal",
    "highway",
    "ditch",
    "track",
    "valley",
    "square",
    "trail",
    "creek",
    "hill",
    "lake",
    "avenue",
    "meadow",
)
# A predicate is what follows "it". Each fits one kind of noun only.
CREATURE_PREDICATES = (
    "was too tired",
    "was too scared",
    "was too hungry",
    "was too sleepy",
    "was too weak",
    "was too nervous",
    "was too thirsty",
    "was too lazy",
    "was limping",
    "was shivering",
    "had hurt its leg",
    "had lost its way",
)
PLACE_PREDICATES = (
    "was too wide",
    "was too busy",
    "was too muddy",
    "was too icy",
    "was too crowded",
    "was too deep",
    "was too steep",
    "was too slippery",
    "was flooded",
    "was closed",
    "had no fence",
    "had deep holes",
)

# `{0}` and `{1}` are the two nouns, `{p}` the predicate. `order` says which
# kind of noun each slot takes: "creature-place", "place-creature", or "any"
# (either order, drawn 50/50). The first template is the classic sentence.
TEMPLATES = (
    ("the {0} didn't cross the {1} because it {p} .", "creature-place"),
    ("the {0} did not walk along the {1} because it {p} .", "creature-place"),
    ("the {0} stayed away from the {1} since it {p} .", "creature-place"),
    ("the {0} was not crossed by the {1} because it {p} .", "place-creature"),
    ("the {0} was avoided by the {1} since it {p} .", "place-creature"),
    ("the {0} was too much for the {1} , because it {p} .", "place-creature"),
    ("we saw the {0} near the {1} , and it {p} .", "any"),
    ("the {0} was next to the {1} , but it {p} .", "any"),
    ("i walked past the {0} and the {1} ; it {p} .", "any"),
    ("there was the {0} and there was the {1} , and it {p} .", "any"),
    ("nobody liked the {0} by the {1} , as it {p} .", "any"),
    ("beyond the {0} lay the {1} , and sadly it {p} .", "any"),
)

SPLITS = ("train", "test")
DEFAULT_SIZES = {"train": 20000, "test": 2000}
# crc32("noun|predicate" + salt) % 100 < 20 -> the combination is held out.
# The salt is the first that holds out both classic combinations
# ("animal|was too tired", "street|was too wide"), so the two sentences of the
# lesson are never seen in training.
_HELD_OUT_PERCENT = 20
_SALT = "|pronouns-v1-36"
_SEED_OFFSETS = {"train": 0, "test": 1_000_000}

CLASSIC = ("animal", "street", "was too tired", "was too wide")


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _vocabulary() -> tuple[str, ...]:
    words = set()
    for text, _ in TEMPLATES:
        words.update(w for w in _words(text) if not w.startswith("{"))
    for group in (CREATURES, PLACES, CREATURE_PREDICATES, PLACE_PREDICATES):
        for text in group:
            words.update(_words(text))
    return ("<pad>", *sorted(words))


VOCAB = _vocabulary()
_IDS = {word: i for i, word in enumerate(VOCAB)}
MAX_LENGTH = max(
    len(_words(text.format("x", "x", p="x")))
    - 1
    + max(len(_words(p)) for p in CREATURE_PREDICATES + PLACE_PREDICATES)
    for text, _ in TEMPLATES
)


def split_for(noun: str, predicate: str) -> str:
    """The split of a (noun, predicate) combination: "train" or "test".

    A fixed function of the text: `zlib.crc32(f"{noun}|{predicate}" + salt)`
    below 20 (of 100) is held out for "test", the rest is "train".
    """
    key = f"{noun}|{predicate}{_SALT}".encode("ascii")
    return "test" if zlib.crc32(key) % 100 < _HELD_OUT_PERCENT else "train"


@dataclass(frozen=True)
class PronounSplit:
    """Sentences whose "it" refers to one of two nouns, and the answers.

    Rows `2 i` and `2 i + 1` are twins: the same template and nouns, the
    predicate of the first noun's kind in one and of the other's in the
    other, so their labels differ.

    Attributes:
        sentences: Each sentence as a tuple of words (punctuation is a word).
        labels: `(n,)` int32, 0 if "it" is the first noun, 1 if the second.
        nouns: `(n, 2)` int32, the word positions of the first and second noun.
        pronoun: `(n,)` int32, the word position of "it".
        templates: `(n,)` int32, the index into `TEMPLATES`.
        referents: The noun "it" refers to, for each sentence.
        predicates: The predicate of each sentence.
    """

    sentences: tuple[tuple[str, ...], ...]
    labels: np.ndarray
    nouns: np.ndarray
    pronoun: np.ndarray
    templates: np.ndarray
    referents: tuple[str, ...]
    predicates: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.sentences)

    @property
    def referent_positions(self) -> np.ndarray:
        """`(n,)` the word position of the noun "it" refers to."""
        return self.nouns[np.arange(len(self)), self.labels]

    @property
    def referent_ids(self) -> np.ndarray:
        """`(n,)` int32, the word id (in `VOCAB`) of the noun "it" refers to."""
        return np.asarray([_IDS[word] for word in self.referents], np.int32)

    def text(self, row: int) -> str:
        """One sentence as a string."""
        return " ".join(self.sentences[row])


def make_sentence(template: int, first: str, second: str, predicate: str):
    """One sentence of `TEMPLATES[template]`, with its positions.

    Returns:
        `(words, noun_positions, pronoun_position)`.
    """
    text, _ = TEMPLATES[template]
    slots = _words(text)
    words: list[str] = []
    nouns = []
    pronoun = -1
    for slot in slots:
        if slot in ("{0}", "{1}"):
            nouns.append(len(words))
            words.append(first if slot == "{0}" else second)
        elif slot == "{p}":
            words.extend(_words(predicate))
        else:
            if slot == "it":
                pronoun = len(words)
            words.append(slot)
    return tuple(words), tuple(nouns), pronoun


def _combinations(split: str) -> dict[str, list[tuple[str, str]]]:
    return {
        kind: [
            (noun, predicate)
            for noun in nouns
            for predicate in predicates
            if split_for(noun, predicate) == split
        ]
        for kind, nouns, predicates in (
            ("creature", CREATURES, CREATURE_PREDICATES),
            ("place", PLACES, PLACE_PREDICATES),
        )
    }


def load_pronouns(split: str, size: int | None = None, seed: int = 0) -> PronounSplit:
    """Twins of sentences of one split, deterministically.

    Each twin draws a template, a creature with one of its predicates and a
    place with one of its predicates (both combinations from `split`), and
    the order of the two nouns (the template's, or 50/50 for "any"); it then
    writes the sentence once with each predicate. Draws are with replacement
    from more than 100,000 possible twins per split, so repeats are rare.

    Args:
        split: "train" (no held-out combination) or "test" (held-out
            combinations only).
        size: Number of sentences, even. Defaults to 20000 for "train" and
            2000 for "test".
        seed: Non-negative integer seed.

    Returns:
        A `PronounSplit`; a smaller `size` gives a prefix of a larger one.
    """
    if not isinstance(split, str) or split not in SPLITS:
        raise ValueError(
            "Received an invalid value for argument `split`, expected one of "
            f"{SPLITS}. Received: split={split!r}"
        )
    seed = _check_int("seed", seed, 0)
    size = DEFAULT_SIZES[split] if size is None else _check_int("size", size, 2)
    if size % 2:
        raise ValueError(
            "Received an invalid value for argument `size`, expected an even "
            f"number (sentences come in twins). Received: size={size}"
        )
    pools = _combinations(split)
    rng = np.random.default_rng(seed + _SEED_OFFSETS[split])
    raw = rng.bit_generator.random_raw(4 * (size // 2)).tolist()
    rows: list[tuple] = []
    for i in range(size // 2):
        t, c, p, o = raw[4 * i : 4 * i + 4]
        template = t % len(TEMPLATES)
        creature, creature_pred = pools["creature"][c % len(pools["creature"])]
        place, place_pred = pools["place"][p % len(pools["place"])]
        order = TEMPLATES[template][1]
        creature_first = order == "creature-place" or (order == "any" and o % 2 == 0)
        first, second = (creature, place) if creature_first else (place, creature)
        for predicate, referent in ((creature_pred, creature), (place_pred, place)):
            words, nouns, pronoun = make_sentence(template, first, second, predicate)
            label = 0 if referent == first else 1
            rows.append((words, label, nouns, pronoun, template, referent, predicate))
    return _as_split(rows)


def _as_split(rows: Sequence[tuple]) -> PronounSplit:
    words, labels, nouns, pronoun, templates, referents, predicates = zip(
        *rows, strict=True
    )
    return PronounSplit(
        sentences=tuple(words),
        labels=np.asarray(labels, np.int32),
        nouns=np.asarray(nouns, np.int32),
        pronoun=np.asarray(pronoun, np.int32),
        templates=np.asarray(templates, np.int32),
        referents=tuple(referents),
        predicates=tuple(predicates),
    )


def classic_pair() -> PronounSplit:
    """The two sentences of the lesson: "...because it was too tired / wide".

    Both combinations, (`animal`, `was too tired`) and (`street`, `was too
    wide`), are held out: no training sentence contains either.
    """
    creature, place, tired, wide = CLASSIC
    rows = []
    for predicate, referent in ((tired, creature), (wide, place)):
        words, nouns, pronoun = make_sentence(0, creature, place, predicate)
        label = 0 if referent == creature else 1
        rows.append((words, label, nouns, pronoun, 0, referent, predicate))
    return _as_split(rows)


def encode(sentences, max_length: int = MAX_LENGTH) -> np.ndarray:
    """Word ids `(n, max_length)`, int32, padded with 0 at the end.

    Raises:
        ValueError: If a word is not in `VOCAB` or a sentence is too long.
    """
    ids = np.zeros((len(sentences), max_length), np.int32)
    for row, words in enumerate(sentences):
        if len(words) > max_length:
            raise ValueError(
                f"Sentence {row} has {len(words)} words, more than "
                f"max_length={max_length}: {' '.join(words)!r}"
            )
        for col, word in enumerate(words):
            if word not in _IDS:
                raise ValueError(
                    f"Word {word!r} of sentence {row} is not in the vocabulary"
                )
            ids[row, col] = _IDS[word]
    return ids


def decode(ids) -> list[str]:
    """The words of one row of ids, padding dropped."""
    return [VOCAB[int(i)] for i in np.asarray(ids) if int(i) != 0]
