"""A deterministic, download-free date-normalisation dataset.

Every example pairs a human-written date such as ``"Thursday, May 3, 1979"``,
``"5/3/79"`` or ``"1979년 5월 3일"`` with its ISO 8601 form ``"1979-05-03"``. The
task is small enough to train a character-level sequence-to-sequence model with
attention on a CPU in minutes, and the alignment between source characters and
target digits makes attention maps easy to read.

Nothing is downloaded: the examples are generated from the calendar. Month and
weekday names are written out in this module (never taken from the locale or
``strftime``), the split of a date depends only on a CRC-32 of its ISO string,
and sampling uses the raw 64-bit stream of NumPy's PCG64, so the same call gives
the same examples on every platform and run.

Dates range from 1950-01-01 to 2049-12-31, so a two-digit year is unambiguous:
``00``-``49`` means 20xx and ``50``-``99`` means 19xx. Slash formats are always US
month/day (``5/3/79`` is May 3), dotted formats are always European day.month
(``3.5.1979`` is May 3), so no source string can stand for two dates.

Example:

    >>> from autograder.data import dates
    >>> train = dates.load_dates("train")
    >>> src_vocab = dates.CharVocab.for_sources()
    >>> tgt_vocab = dates.CharVocab.for_targets()
    >>> x = dates.encode_sources(train.sources, src_vocab)
    >>> decoder_in, decoder_out = dates.encode_targets(train.targets, tgt_vocab)
"""

from __future__ import annotations

import datetime
import functools
import operator
import string
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_SIZES",
    "FAMILIES",
    "MAX_DATE",
    "MAX_SOURCE_LENGTH",
    "MIN_DATE",
    "SPLITS",
    "TARGET_LENGTH",
    "CharVocab",
    "DateSplit",
    "encode_sources",
    "encode_targets",
    "format_date",
    "load_dates",
    "split_for_date",
]

MIN_DATE = datetime.date(1950, 1, 1)
MAX_DATE = datetime.date(2049, 12, 31)
TARGET_LENGTH = 10  # "YYYY-MM-DD"

SPLITS = ("train", "validation", "test")
DEFAULT_SIZES = {"train": 20000, "validation": 2000, "test": 2000}
# Percent of calendar dates per split: crc32(iso) % 100 < 80 -> train, < 90 ->
# validation, else test.
_SPLIT_BOUNDS = (("train", 80), ("validation", 90), ("test", 100))
_SPLIT_SEED_OFFSETS = {"train": 0, "validation": 1_000_000, "test": 2_000_000}

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_MONTHS_SHORT = tuple(name[:3] for name in _MONTHS)
# Index 0 is Monday, as in datetime.date.weekday().
_WEEKDAYS = (
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
)
_WEEKDAYS_SHORT = tuple(name[:3] for name in _WEEKDAYS)

_ONES = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
)
_TENS = (
    "",
    "",
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "sixty",
    "seventy",
    "eighty",
    "ninety",
)
_ORDINAL_ONES = (
    "",
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
)
_ORDINAL_TENS = {2: "twentieth", 3: "thirtieth"}


def _ordinal_suffix(day: int) -> str:
    """Returns the English ordinal suffix of a day ("st", "nd", "rd" or "th")."""
    if 11 <= day % 100 <= 13:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def _cardinal_words(number: int) -> str:
    """Spells a number in 0..99 in English words, e.g. ``"seventy-nine"``."""
    if number < 20:
        return _ONES[number]
    tens, ones = divmod(number, 10)
    return _TENS[tens] if ones == 0 else f"{_TENS[tens]}-{_ONES[ones]}"


def _ordinal_words(day: int) -> str:
    """Spells a day of the month (1..31) as an English ordinal, e.g. "third"."""
    if day < 20:
        return _ORDINAL_ONES[day]
    tens, ones = divmod(day, 10)
    if ones == 0:
        return _ORDINAL_TENS[tens]
    return f"{_TENS[tens]}-{_ORDINAL_ONES[ones]}"


def _year_words(year: int) -> str:
    """Spells a year of 1950..2049 the way it is read aloud.

    1979 -> "nineteen seventy-nine", 2000 -> "two thousand",
    2005 -> "two thousand five", 2023 -> "twenty twenty-three".
    """
    century, rest = divmod(year, 100)
    if century == 20 and rest < 10:
        return "two thousand" if rest == 0 else f"two thousand {_ONES[rest]}"
    return f"{_cardinal_words(century)} {_cardinal_words(rest)}"


# Fields a family template may use: name -> (calendar component, writer). Every
# field depends on one component only, so a formatted string is the template's
# literal text plus one piece per field (see `_CompiledFamily`).
_FIELDS: dict[str, tuple[str, Callable[[int], str]]] = {
    "yyyy": ("year", lambda year: f"{year:04d}"),
    "yy": ("year", lambda year: f"{year % 100:02d}"),
    "year_words": ("year", _year_words),
    "m": ("month", str),
    "mm": ("month", lambda month: f"{month:02d}"),
    "month": ("month", lambda month: _MONTHS[month - 1]),
    "mon": ("month", lambda month: _MONTHS_SHORT[month - 1]),
    "d": ("day", str),
    "dd": ("day", lambda day: f"{day:02d}"),
    "dth": ("day", lambda day: f"{day}{_ordinal_suffix(day)}"),
    "day_words": ("day", _ordinal_words),
    "weekday": ("weekday", lambda weekday: _WEEKDAYS[weekday]),
    "wkd": ("weekday", lambda weekday: _WEEKDAYS_SHORT[weekday]),
}
_COMPONENT_VALUES = {
    "year": range(MIN_DATE.year, MAX_DATE.year + 1),
    "month": range(1, 13),
    "day": range(1, 32),
    "weekday": range(7),  # 0 is Monday, as in datetime.date.weekday()
}
_CASES: dict[str | None, Callable[[str], str]] = {
    None: lambda text: text,
    "upper": str.upper,
    "lower": str.lower,
}

# Family name -> (template, case). The order is the order of FAMILIES, which is
# part of the dataset's definition: sampling draws (date, family) pair indices.
_FAMILY_SPECS: dict[str, tuple[str, str | None]] = {
    "iso": ("{yyyy}-{mm}-{dd}", None),
    "iso-slash": ("{yyyy}/{mm}/{dd}", None),
    "iso-compact": ("{yyyy}{mm}{dd}", None),
    "d-month-yyyy": ("{d} {month} {yyyy}", None),
    "dd-month-yyyy": ("{dd} {month} {yyyy}", None),
    "month-d-yyyy": ("{month} {d}, {yyyy}", None),
    "weekday-month-d-yyyy": ("{weekday}, {month} {d}, {yyyy}", None),
    "wkd-d-mon-yy": ("{wkd} {d} {mon} {yy}", None),
    "month-dth-yyyy": ("{month} {dth}, {yyyy}", None),
    "the-dth-of-month-yyyy": ("the {dth} of {month}, {yyyy}", None),
    "dots-d-m-yyyy": ("{d}.{m}.{yyyy}", None),
    "slash-m-d-yy": ("{m}/{d}/{yy}", None),
    "slash-mm-dd-yyyy": ("{mm}/{dd}/{yyyy}", None),
    "d-mon-yyyy-upper": ("{d}-{mon}-{yyyy}", "upper"),
    "weekday-month-d-yyyy-upper": ("{weekday}, {month} {d}, {yyyy}", "upper"),
    "d-month-yyyy-lower": ("{d} {month} {yyyy}", "lower"),
    "mon-d-apostrophe-yy": ("{mon} {d} '{yy}", None),
    "korean": ("{yyyy}년 {m}월 {d}일", None),
    "spelled": ("the {day_words} of {month}, {year_words}", None),
}

FAMILIES: tuple[str, ...] = tuple(_FAMILY_SPECS)


_COMPONENT_OF: dict[str, Callable[[datetime.date], int]] = {
    "year": operator.attrgetter("year"),
    "month": operator.attrgetter("month"),
    "day": operator.attrgetter("day"),
    "weekday": datetime.date.weekday,
}


@dataclass(frozen=True)
class _CompiledFamily:
    """A family template, split at its fields, with its case applied in advance.

    A formatted string is `head`, then for each step the piece of the step's
    table for the date's component, then the step's literal text. Upper- or
    lower-casing the pieces one by one equals casing the whole string, since
    every character involved is cased on its own.
    """

    head: str
    steps: tuple[tuple[str, dict[int, str], str], ...]  # (component, table, text)

    @classmethod
    def from_template(cls, template: str, case: str | None) -> _CompiledFamily:
        to_case = _CASES[case]
        literals, steps = [""], []
        for text, field, _, _ in string.Formatter().parse(template):
            literals[-1] += text
            if field is not None:
                component, write = _FIELDS[field]
                values = _COMPONENT_VALUES[component]
                steps.append((component, {v: to_case(write(v)) for v in values}))
                literals.append("")
        return cls(
            head=to_case(literals[0]),
            steps=tuple(
                (component, table, to_case(text))
                for (component, table), text in zip(steps, literals[1:], strict=True)
            ),
        )


_COMPILED = {
    name: _CompiledFamily.from_template(template, case)
    for name, (template, case) in _FAMILY_SPECS.items()
}


def _invalid_value(argument: str, expected: Sequence[str], received: object) -> str:
    """Builds a Keras-style message for an argument outside a set of choices."""
    return (
        f"Received an invalid value for argument `{argument}`, expected one of "
        f"{tuple(expected)!r}. Received: {argument}={received!r}"
    )


def _check_int(name: str, value: object, minimum: int) -> int:
    """Validates an integer argument (booleans are rejected) and returns it."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(
            f"Expected argument `{name}` to be an integer. "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )
    if value < minimum:
        raise ValueError(
            f"Expected argument `{name}` to be >= {minimum}. Received: {name}={value}"
        )
    return int(value)


def _check_date(date: datetime.date) -> datetime.date:
    """Validates that `date` is a calendar date within MIN_DATE..MAX_DATE."""
    if not isinstance(date, datetime.date):
        raise ValueError(
            "Expected argument `date` to be a `datetime.date`. "
            f"Received: date={date!r} of type {type(date).__name__}"
        )
    if isinstance(date, datetime.datetime):
        date = date.date()
    if not MIN_DATE <= date <= MAX_DATE:
        raise ValueError(
            f"Expected argument `date` to be between {MIN_DATE.isoformat()} and "
            f"{MAX_DATE.isoformat()} so that two-digit years are unambiguous. "
            f"Received: date={date.isoformat()}"
        )
    return date


def format_date(date: datetime.date, family: str) -> str:
    """Writes a date in the human format of one family.

    Args:
        date: A `datetime.date` between `MIN_DATE` and `MAX_DATE` (a
            `datetime.datetime` is reduced to its date).
        family: One of `FAMILIES`, e.g. `"weekday-month-d-yyyy"`.

    Returns:
        The formatted string, e.g. `"Thursday, May 3, 1979"`.

    Raises:
        ValueError: If `family` is not one of `FAMILIES` or `date` is out of
            range.
    """
    if not isinstance(family, str) or family not in _FAMILY_SPECS:
        raise ValueError(_invalid_value("family", FAMILIES, family))
    date = _check_date(date)
    compiled = _COMPILED[family]
    pieces = [compiled.head]
    for component, table, text in compiled.steps:
        pieces += (table[_COMPONENT_OF[component](date)], text)
    return "".join(pieces)


def split_for_date(date: datetime.date) -> str:
    """Returns the split that a calendar date belongs to, in every format.

    The split is a fixed function of the date: `zlib.crc32` of its ISO string,
    modulo 100, sends 80% of dates to "train", 10% to "validation" and 10% to
    "test". A date of one split never appears in another split, in any format.

    Args:
        date: A `datetime.date` between `MIN_DATE` and `MAX_DATE`.

    Returns:
        One of `SPLITS`.
    """
    bucket = zlib.crc32(_check_date(date).isoformat().encode("ascii")) % 100
    return next(split for split, bound in _SPLIT_BOUNDS if bucket < bound)


def _all_dates() -> list[datetime.date]:
    """Every date from MIN_DATE to MAX_DATE, in calendar order."""
    first, last = MIN_DATE.toordinal(), MAX_DATE.toordinal()
    return [datetime.date.fromordinal(n) for n in range(first, last + 1)]


@functools.cache
def _split_dates() -> dict[str, tuple[datetime.date, ...]]:
    """Every date of each split, in calendar order."""
    by_split: dict[str, list[datetime.date]] = {split: [] for split in SPLITS}
    for date in _all_dates():
        by_split[split_for_date(date)].append(date)
    return {split: tuple(dates) for split, dates in by_split.items()}


def _source_characters() -> list[str]:
    """Every character any family can produce, sorted by code point.

    Enumerates each family's literal text and every piece each of its fields
    can write (all years, month and weekday names, days, ordinals), in the
    family's case.
    """
    characters: set[str] = set()
    for compiled in _COMPILED.values():
        characters.update(compiled.head)
        for _, table, text in compiled.steps:
            characters.update(text)
            for piece in table.values():
                characters.update(piece)
    return sorted(characters)


def _source_lengths() -> dict[str, np.ndarray]:
    """Length of every date of the range in every family, by table look-ups.

    A formatted string is literal text plus one piece per field, so its length
    is a sum of piece lengths; this covers all 36,525 dates of the range without
    formatting them one by one.
    """
    dates = _all_dates()
    components = {
        name: np.array([get(d) for d in dates]) for name, get in _COMPONENT_OF.items()
    }
    lengths = {}
    for family, compiled in _COMPILED.items():
        total = np.full(len(dates), len(compiled.head))
        for component, table, text in compiled.steps:
            piece_lengths = np.zeros(max(table) + 1, dtype=np.int64)
            for value, piece in table.items():
                piece_lengths[value] = len(piece)
            total += piece_lengths[components[component]] + len(text)
        lengths[family] = total
    return lengths


MAX_SOURCE_LENGTH: int = int(max(n.max() for n in _source_lengths().values()))


@dataclass(frozen=True)
class DateSplit:
    """Examples of one split: parallel tuples of sources, targets and families.

    Attributes:
        sources: Human-written dates, e.g. `"Thursday, May 3, 1979"`.
        targets: The same dates in ISO form, e.g. `"1979-05-03"`.
        families: The family of each source, one of `FAMILIES`.
    """

    sources: tuple[str, ...]
    targets: tuple[str, ...]
    families: tuple[str, ...]

    def __post_init__(self) -> None:
        if not len(self.sources) == len(self.targets) == len(self.families):
            raise ValueError(
                "Expected `sources`, `targets` and `families` to have the same "
                f"length. Received: {len(self.sources)}, {len(self.targets)} and "
                f"{len(self.families)}"
            )

    def __len__(self) -> int:
        return len(self.sources)


def load_dates(split: str, size: int | None = None, seed: int = 0) -> DateSplit:
    """Samples (date, family) pairs of one split, deterministically.

    The pairs are drawn without replacement from every date of the split (see
    `split_for_date`) times every family, so a split holds no duplicate
    example. Sampling uses the raw 64-bit stream of
    `numpy.random.default_rng(seed + offset of the split)` (PCG64, whose raw
    output is the same on every platform and NumPy version) in a partial
    Fisher-Yates shuffle, so a call returns the same examples everywhere.

    Args:
        split: One of `"train"`, `"validation"` or `"test"`.
        size: Number of examples. Defaults to 20000 for "train" and 2000 for
            "validation" and "test"; at most (dates in the split) x
            `len(FAMILIES)`.
        seed: Non-negative integer seed.

    Returns:
        A `DateSplit` of `size` examples, in sampled order.

    Raises:
        ValueError: If `split` is unknown, or `size` or `seed` is invalid.
    """
    if not isinstance(split, str) or split not in SPLITS:
        raise ValueError(_invalid_value("split", SPLITS, split))
    seed = _check_int("seed", seed, 0)
    dates = _split_dates()[split]
    n_pairs = len(dates) * len(FAMILIES)
    size = DEFAULT_SIZES[split] if size is None else _check_int("size", size, 1)
    if size > n_pairs:
        raise ValueError(
            f"Expected argument `size` to be at most {n_pairs}, the number of "
            f"(date, family) pairs of split {split!r}. Received: size={size}"
        )
    rng = np.random.default_rng(seed + _SPLIT_SEED_OFFSETS[split])
    raw = rng.bit_generator.random_raw(size).tolist()
    # Partial Fisher-Yates over the virtual array 0..n_pairs-1; `moved` holds the
    # positions whose value was swapped. The modulo bias is below 1e-13.
    moved: dict[int, int] = {}
    sources, targets, families = [], [], []
    for i, r in enumerate(raw):
        j = i + r % (n_pairs - i)
        pair = moved.get(j, j)
        moved[j] = moved.get(i, i)
        date_index, family_index = divmod(pair, len(FAMILIES))
        date, family = dates[date_index], FAMILIES[family_index]
        sources.append(format_date(date, family))
        targets.append(date.isoformat())
        families.append(family)
    return DateSplit(tuple(sources), tuple(targets), tuple(families))


class CharVocab:
    """A character vocabulary with four reserved tokens.

    Ids 0..3 are `"<pad>"`, `"<start>"`, `"<end>"` and `"<unk>"`; the characters
    follow from id 4 in the order given. Padding with 0 works with Keras
    `mask_zero=True`.

    Args:
        characters: Single characters (a string or an iterable of them).
            Repeats are dropped, keeping the first occurrence.
    """

    PAD_ID = 0
    START_ID = 1
    END_ID = 2
    UNK_ID = 3
    RESERVED = ("<pad>", "<start>", "<end>", "<unk>")

    def __init__(self, characters: Iterable[str]) -> None:
        unique: dict[str, None] = {}
        for character in characters:
            if not isinstance(character, str) or len(character) != 1:
                raise ValueError(
                    "Expected `characters` to hold single characters. "
                    f"Received: {character!r}"
                )
            unique.setdefault(character)
        self._tokens = self.RESERVED + tuple(unique)
        self._ids = {c: i for i, c in enumerate(unique, start=len(self.RESERVED))}

    @classmethod
    def for_sources(cls) -> CharVocab:
        """Returns the vocabulary of every character any family can produce.

        Returns:
            A `CharVocab` whose characters are sorted by code point.
        """
        return cls(_source_characters())

    @classmethod
    def for_targets(cls) -> CharVocab:
        """Returns the vocabulary of ISO targets: `"-"`, the ten digits and the
        space that separates the dates of a list (`load_date_lists`).

        Returns:
            A `CharVocab` of 16 tokens.
        """
        return cls(" -0123456789")

    @classmethod
    def from_list(cls, tokens: Sequence[str]) -> CharVocab:
        """Rebuilds a vocabulary from the output of `to_list()`.

        Args:
            tokens: The reserved tokens followed by the characters.

        Returns:
            An equal `CharVocab`.
        """
        if tuple(tokens[: len(cls.RESERVED)]) != cls.RESERVED:
            raise ValueError(
                f"Expected `tokens` to start with {cls.RESERVED!r}. "
                f"Received: {list(tokens[: len(cls.RESERVED)])!r}"
            )
        return cls(tokens[len(cls.RESERVED) :])

    @property
    def tokens(self) -> tuple[str, ...]:
        """All tokens, the id of each being its index."""
        return self._tokens

    def to_list(self) -> list[str]:
        """Returns the tokens as a JSON-serialisable list (see `from_list`).

        Returns:
            The list of all tokens, reserved ones first.
        """
        return list(self._tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CharVocab):
            return NotImplemented
        return self._tokens == other._tokens

    def __hash__(self) -> int:
        return hash(self._tokens)

    def __repr__(self) -> str:
        return f"CharVocab({''.join(self._tokens[len(self.RESERVED) :])!r})"

    def encode(self, text: str) -> list[int]:
        """Maps each character of a text to its id (unknown ones to `UNK_ID`).

        Args:
            text: The text to encode.

        Returns:
            One id per character, without start or end tokens.
        """
        if not isinstance(text, str):
            raise ValueError(
                f"Expected `text` to be a string. Received: {text!r} of type "
                f"{type(text).__name__}"
            )
        return [self._ids.get(character, self.UNK_ID) for character in text]

    def decode(self, ids: Iterable[int]) -> str:
        """Maps ids back to text.

        Stops at the first `<end>`, skips `<pad>` and `<start>`, and writes
        `<unk>` as the five characters `"<unk>"`.

        Args:
            ids: Integer ids, e.g. a row of model predictions.

        Returns:
            The decoded text.
        """
        characters = []
        for value in ids:
            token_id = operator.index(value)
            if not 0 <= token_id < len(self._tokens):
                raise ValueError(
                    f"Expected ids in [0, {len(self._tokens)}). Received: {token_id}"
                )
            if token_id == self.END_ID:
                break
            if token_id not in (self.PAD_ID, self.START_ID):
                characters.append(self._tokens[token_id])
        return "".join(characters)


def _check_texts(texts: Sequence[str]) -> list[str]:
    """Validates a sequence of strings (a single string is an error)."""
    if isinstance(texts, str):
        raise ValueError(
            "Expected `texts` to be a sequence of strings, not a single string. "
            f"Received: texts={texts!r}"
        )
    texts = list(texts)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(
                f"Expected `texts` to hold strings. Received: {text!r} of type "
                f"{type(text).__name__} at index {index}"
            )
    return texts


def encode_sources(
    texts: Sequence[str], vocab: CharVocab, max_len: int | None = None
) -> np.ndarray:
    """Encodes source texts as a padded id matrix.

    Args:
        texts: Source strings, e.g. `DateSplit.sources`.
        vocab: Usually `CharVocab.for_sources()`.
        max_len: Number of columns. Defaults to the longest text; pass
            `MAX_SOURCE_LENGTH` for a shape that fits every family.

    Returns:
        An int32 array of shape `(len(texts), max_len)`, padded with 0 on the
        right.

    Raises:
        ValueError: If a text is longer than `max_len` (texts are never
            truncated).
    """
    texts = _check_texts(texts)
    encoded = [vocab.encode(text) for text in texts]
    longest = max(map(len, encoded), default=0)
    if max_len is None:
        max_len = longest
    else:
        max_len = _check_int("max_len", max_len, 1)
        if longest > max_len:
            index = next(i for i, ids in enumerate(encoded) if len(ids) > max_len)
            raise ValueError(
                f"Text {texts[index]!r} at index {index} has {len(encoded[index])} "
                f"characters, more than max_len={max_len}; texts are never "
                "truncated. Pass a larger `max_len` (MAX_SOURCE_LENGTH="
                f"{MAX_SOURCE_LENGTH} fits every family) or max_len=None."
            )
    matrix = np.zeros((len(encoded), max_len), dtype=np.int32)
    for row, ids in enumerate(encoded):
        matrix[row, : len(ids)] = ids
    return matrix


def encode_targets(
    texts: Sequence[str], vocab: CharVocab
) -> tuple[np.ndarray, np.ndarray]:
    """Encodes ISO targets for teacher forcing.

    A target is one ISO date (`"1979-05-03"`) or several separated by single
    spaces (`"1979-05-03 2001-09-11"`, from `load_date_lists`). Rows are
    padded with 0 to the longest target.

    Args:
        texts: The targets.
        vocab: Usually `CharVocab.for_targets()`.

    Returns:
        A pair of int32 arrays of shape `(len(texts), longest + 1)`: the
        decoder inputs `<start>` + characters, and the decoder targets
        characters + `<end>`.

    Raises:
        ValueError: If a target is not ISO dates of `TARGET_LENGTH` characters
            separated by spaces, or has a character outside `vocab`.
    """
    texts = _check_texts(texts)
    encoded = []
    for row, text in enumerate(texts):
        ids = vocab.encode(text)
        parts = text.split(" ")
        if vocab.UNK_ID in ids or not all(len(p) == TARGET_LENGTH for p in parts):
            raise ValueError(
                f"Expected targets of {TARGET_LENGTH} characters from the vocabulary "
                f"(ISO 'YYYY-MM-DD', several separated by spaces). Received: "
                f"{text!r} at index {row}"
            )
        encoded.append(ids)
    width = max((len(ids) for ids in encoded), default=TARGET_LENGTH) + 1
    decoder_inputs = np.zeros((len(texts), width), dtype=np.int32)
    decoder_targets = np.zeros_like(decoder_inputs)
    for row, ids in enumerate(encoded):
        decoder_inputs[row, : len(ids) + 1] = [vocab.START_ID, *ids]
        decoder_targets[row, : len(ids) + 1] = [*ids, vocab.END_ID]
    return decoder_inputs, decoder_targets


#: What joins the dates of a list in `load_date_lists` (every character is in
#: the source vocabulary).
LIST_SEPARATOR = " and "


def load_date_lists(
    split: str,
    size: int | None = None,
    seed: int = 0,
    two_dates: float = 0.3,
) -> DateSplit:
    """Loads a split where an input holds one date or two joined by " and ".

    `"1 may 2044 and 22-DEC-1978"` -> `"2044-05-01 1978-12-22"`. A single date
    carries the same information whatever its length; a list of two carries
    twice as much. This is what makes the fixed-size state of a plain
    encoder-decoder a bottleneck (Assignment 1, Part 1).

    Consecutive examples of `load_dates(split, size, seed)` are grouped, each
    group of two with probability `two_dates`, so the split holds exactly
    `size` dates, none seen in another split.

    Args:
        split: One of `SPLITS`.
        size: Number of dates (not of inputs); default as `load_dates`.
        seed: Seed of the sampling and of the grouping.
        two_dates: Probability that a group holds two dates.

    Returns:
        A `DateSplit`; `families` joins the families of a group with `"+"`.
    """
    if not 0.0 <= two_dates <= 1.0:
        raise ValueError(
            "Received an invalid value for argument `two_dates`, expected a "
            f"probability in [0, 1]. Received: two_dates={two_dates!r}"
        )
    base = load_dates(split, size, seed)
    rng = np.random.default_rng(seed + 7 + _SPLIT_SEED_OFFSETS[split])
    draws = rng.bit_generator.random_raw(len(base)).tolist()
    sources, targets, families = [], [], []
    position = 0
    for draw in draws:
        if position >= len(base):
            break
        count = 2 if draw / 2**64 < two_dates and position + 1 < len(base) else 1
        group = slice(position, position + count)
        sources.append(LIST_SEPARATOR.join(base.sources[group]))
        targets.append(" ".join(base.targets[group]))
        families.append("+".join(base.families[group]))
        position += count
    return DateSplit(tuple(sources), tuple(targets), tuple(families))
