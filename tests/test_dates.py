"""Tests of the date-normalisation data set `autograder.data.dates`."""

import ast
import collections
import datetime
import re
from pathlib import Path

import numpy as np
import pytest

from autograder.data import dates

D = datetime.date


@pytest.fixture(scope="module")
def every_source():
    """(source, target, family) for every date of the range in every family."""
    first, last = dates.MIN_DATE.toordinal(), dates.MAX_DATE.toordinal()
    days = [D.fromordinal(n) for n in range(first, last + 1)]
    return [
        (dates.format_date(day, family), day.isoformat(), family)
        for family in dates.FAMILIES
        for day in days
    ]


@pytest.fixture(scope="module")
def splits():
    return {split: dates.load_dates(split) for split in dates.SPLITS}


# Checked by hand: 3 May 1979, 5 March 2009 and 29 February 2000 were a Thursday,
# a Thursday and a Tuesday; 20 July 1969 a Sunday, 11 September 2001 a Tuesday,
# 1 January 1950 a Sunday.
GOLDEN = [
    (D(1979, 5, 3), "iso", "1979-05-03"),
    (D(1979, 5, 3), "iso-slash", "1979/05/03"),
    (D(1979, 5, 3), "iso-compact", "19790503"),
    (D(1979, 5, 3), "d-month-yyyy", "3 May 1979"),
    (D(1979, 5, 3), "dd-month-yyyy", "03 May 1979"),
    (D(1979, 5, 3), "month-d-yyyy", "May 3, 1979"),
    (D(1979, 5, 3), "weekday-month-d-yyyy", "Thursday, May 3, 1979"),
    (D(2009, 3, 5), "weekday-month-d-yyyy", "Thursday, March 5, 2009"),
    (D(2000, 2, 29), "weekday-month-d-yyyy", "Tuesday, February 29, 2000"),
    (D(1969, 7, 20), "weekday-month-d-yyyy", "Sunday, July 20, 1969"),
    (D(1979, 5, 3), "wkd-d-mon-yy", "Thu 3 May 79"),
    (D(2001, 9, 11), "wkd-d-mon-yy", "Tue 11 Sep 01"),
    (D(1979, 5, 3), "month-dth-yyyy", "May 3rd, 1979"),
    (D(2012, 3, 12), "month-dth-yyyy", "March 12th, 2012"),
    (D(1991, 1, 21), "month-dth-yyyy", "January 21st, 1991"),
    (D(1979, 5, 3), "the-dth-of-month-yyyy", "the 3rd of May, 1979"),
    (D(2013, 8, 22), "the-dth-of-month-yyyy", "the 22nd of August, 2013"),
    (D(1979, 5, 3), "dots-d-m-yyyy", "3.5.1979"),
    (D(1979, 5, 3), "slash-m-d-yy", "5/3/79"),
    (D(2049, 1, 1), "slash-m-d-yy", "1/1/49"),
    (D(1950, 12, 31), "slash-m-d-yy", "12/31/50"),
    (D(1979, 5, 3), "slash-mm-dd-yyyy", "05/03/1979"),
    (D(1979, 5, 3), "d-mon-yyyy-upper", "3-MAY-1979"),
    (D(1950, 1, 1), "weekday-month-d-yyyy-upper", "SUNDAY, JANUARY 1, 1950"),
    (D(1979, 5, 3), "d-month-yyyy-lower", "3 may 1979"),
    (D(1979, 5, 3), "mon-d-apostrophe-yy", "May 3 '79"),
    (D(1979, 5, 3), "korean", "1979년 5월 3일"),
    (D(1979, 5, 3), "spelled", "the third of May, nineteen seventy-nine"),
    (D(2000, 12, 31), "spelled", "the thirty-first of December, two thousand"),
    (D(2005, 1, 1), "spelled", "the first of January, two thousand five"),
    (D(1950, 9, 30), "spelled", "the thirtieth of September, nineteen fifty"),
    (
        D(2023, 11, 22),
        "spelled",
        "the twenty-second of November, twenty twenty-three",
    ),
]


@pytest.mark.parametrize(("day", "family", "expected"), GOLDEN)
def test_format_date_golden(day, family, expected):
    assert dates.format_date(day, family) == expected


def test_families():
    assert len(dates.FAMILIES) >= 15
    assert len(set(dates.FAMILIES)) == len(dates.FAMILIES)
    assert all(re.fullmatch(r"[a-z0-9-]+", name) for name in dates.FAMILIES)
    assert {family for _, family, _ in GOLDEN} == set(dates.FAMILIES)


def test_module_does_not_import_tensorflow():
    tree = ast.parse(Path(dates.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "numpy" in imported
    assert not imported & {"tensorflow", "keras", "tf_keras", "locale"}


def test_every_input_has_one_target(every_source):
    first_seen, shared = {}, set()
    for source, target, family in every_source:
        seen_target, seen_family = first_seen.setdefault(source, (target, family))
        assert seen_target == target, (source, family, seen_family)
        if seen_family != family:
            shared.add((seen_family, family))
    # Two families agree on a string only where zero-padding changes nothing.
    assert shared == {("d-month-yyyy", "dd-month-yyyy")}


def test_max_source_length_is_attained(every_source):
    assert max(len(s) for s, _, _ in every_source) == dates.MAX_SOURCE_LENGTH


def test_source_vocab_covers_every_family(every_source, splits):
    vocab = dates.CharVocab.for_sources()
    characters = set(vocab.tokens[len(vocab.RESERVED) :])
    assert {c for s, _, _ in every_source for c in s} == characters
    assert {c for s in splits["train"].sources for c in s} <= characters
    assert all(vocab.UNK_ID not in vocab.encode(s) for s in splits["train"].sources)


def test_load_dates_is_deterministic(splits):
    again = dates.load_dates("train")
    assert again == splits["train"]
    assert dates.load_dates("train", seed=1) != again
    # Pins the sampling stream: the same on every platform and NumPy version.
    assert list(zip(again.sources[:3], again.targets[:3], strict=True)) == [
        ("Jan 11 '21", "2021-01-11"),
        ("1 may 2044", "2044-05-01"),
        ("22-DEC-1978", "1978-12-22"),
    ]
    assert splits["test"].sources[:3] == (
        "12 february 1997",
        "2041/08/05",
        "TUESDAY, JUNE 6, 1978",
    )


def test_load_dates_size_and_prefix():
    small = dates.load_dates("validation", size=10, seed=3)
    assert len(small) == 10
    larger = dates.load_dates("validation", size=50, seed=3)
    assert larger.sources[:10] == small.sources


def test_default_sizes(splits):
    assert {split: len(data) for split, data in splits.items()} == {
        "train": 20000,
        "validation": 2000,
        "test": 2000,
    }


def test_examples_are_consistent(splits):
    for split, data in splits.items():
        # No (date, family) pair twice. The same string can occur twice only
        # where "d-month-yyyy" and "dd-month-yyyy" agree (days 10 to 31).
        assert len(set(zip(data.targets, data.families, strict=True))) == len(data)
        for source, target, family in zip(
            data.sources, data.targets, data.families, strict=True
        ):
            assert len(target) == dates.TARGET_LENGTH
            day = D.fromisoformat(target)
            assert day.isoformat() == target
            assert dates.MIN_DATE <= day <= dates.MAX_DATE
            assert dates.format_date(day, family) == source
            assert dates.split_for_date(day) == split


def test_splits_are_disjoint_by_date(splits):
    targets = {split: set(data.targets) for split, data in splits.items()}
    assert not targets["train"] & targets["validation"]
    assert not targets["train"] & targets["test"]
    assert not targets["validation"] & targets["test"]


def test_split_proportions():
    first, last = dates.MIN_DATE.toordinal(), dates.MAX_DATE.toordinal()
    counts = collections.Counter(
        dates.split_for_date(D.fromordinal(n)) for n in range(first, last + 1)
    )
    total = sum(counts.values())
    assert total == 36525
    assert abs(counts["train"] / total - 0.8) < 0.01
    assert abs(counts["validation"] / total - 0.1) < 0.01
    assert abs(counts["test"] / total - 0.1) < 0.01


def test_every_family_in_every_split(splits):
    for data in splits.values():
        assert set(data.families) == set(dates.FAMILIES)


def test_vocab_reserved_tokens_and_targets():
    vocab = dates.CharVocab.for_targets()
    assert vocab.tokens[:4] == ("<pad>", "<start>", "<end>", "<unk>")
    assert (vocab.PAD_ID, vocab.START_ID, vocab.END_ID, vocab.UNK_ID) == (0, 1, 2, 3)
    assert "".join(vocab.tokens[4:]) == " -0123456789"
    assert len(vocab) == 16
    assert dates.CharVocab.from_list(vocab.to_list()) == vocab


def test_source_vocab_is_sorted_and_deterministic():
    vocab = dates.CharVocab.for_sources()
    characters = list(vocab.tokens[4:])
    assert characters == sorted(characters)
    assert vocab == dates.CharVocab.for_sources()
    assert {"년", "월", "일", "'", "Q"} & set(characters) == {"년", "월", "일", "'"}
    assert vocab.encode("Q") == [vocab.UNK_ID]


def test_encode_decode_round_trip(splits):
    vocab = dates.CharVocab.for_sources()
    for source in splits["validation"].sources:
        assert vocab.decode(vocab.encode(source)) == source
    assert vocab.decode([1, *vocab.encode("May"), 2, *vocab.encode("x"), 0]) == "May"
    assert vocab.decode(np.array([0, 0], dtype=np.int32)) == ""


def test_encode_sources(splits):
    vocab = dates.CharVocab.for_sources()
    sources = splits["test"].sources
    x = dates.encode_sources(sources, vocab)
    longest = max(map(len, sources))
    assert x.dtype == np.int32
    assert x.shape == (len(sources), longest)
    for row, source in zip(x, sources, strict=True):
        assert vocab.decode(row) == source
        assert not row[len(source) :].any()
    fixed = dates.encode_sources(sources[:5], vocab, max_len=dates.MAX_SOURCE_LENGTH)
    assert fixed.shape == (5, dates.MAX_SOURCE_LENGTH)
    with pytest.raises(ValueError, match="never truncated"):
        dates.encode_sources(["Thursday, May 3, 1979"], vocab, max_len=5)


def test_encode_targets(splits):
    vocab = dates.CharVocab.for_targets()
    targets = splits["validation"].targets
    decoder_inputs, decoder_targets = dates.encode_targets(targets, vocab)
    for array in (decoder_inputs, decoder_targets):
        assert array.dtype == np.int32
        assert array.shape == (len(targets), 11)
    assert (decoder_inputs[:, 0] == vocab.START_ID).all()
    assert (decoder_targets[:, -1] == vocab.END_ID).all()
    np.testing.assert_array_equal(decoder_inputs[:, 1:], decoder_targets[:, :-1])
    for inputs, outputs, target in zip(
        decoder_inputs, decoder_targets, targets, strict=True
    ):
        assert vocab.decode(outputs) == target
        assert vocab.decode(inputs) == target


def test_invalid_split_message():
    expected = (
        "Received an invalid value for argument `split`, expected one of "
        "('train', 'validation', 'test'). Received: split='foo'"
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        dates.load_dates("foo")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: dates.format_date(D(1979, 5, 3), "nope"), "argument `family`"),
        (lambda: dates.format_date(D(1949, 12, 31), "iso"), "two-digit years"),
        (lambda: dates.format_date(D(2050, 1, 1), "iso"), "two-digit years"),
        (lambda: dates.format_date("1979-05-03", "iso"), "datetime.date"),
        (lambda: dates.load_dates("test", size=0), "`size` to be >= 1"),
        (lambda: dates.load_dates("test", size=10**7), "`size` to be at most"),
        (lambda: dates.load_dates("test", seed=-1), "`seed` to be >= 0"),
        (lambda: dates.load_dates("test", size=1.5), "`size` to be an integer"),
        (lambda: dates.encode_sources("3 May 1979", None), "not a single string"),
        (
            lambda: dates.encode_targets(["1979-5-3"], dates.CharVocab.for_targets()),
            "Expected targets of 10 characters",
        ),
        (lambda: dates.CharVocab(["ab"]), "single characters"),
        (lambda: dates.CharVocab.for_targets().decode([99]), "Expected ids"),
    ],
)
def test_errors(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


def test_date_lists_hold_exactly_the_split_dates_once():
    lists = dates.load_date_lists("test")
    base = dates.load_dates("test")
    flat = [t for target in lists.targets for t in target.split(" ")]
    assert flat == list(base.targets)
    assert all(
        s.count(dates.LIST_SEPARATOR) == t.count(" ")
        for s, t in zip(lists.sources, lists.targets, strict=True)
    )
    twos = sum(" " in t for t in lists.targets) / len(lists)
    assert 0.15 < twos < 0.35
    assert lists == dates.load_date_lists("test")
    assert all(c in dates.CharVocab.for_sources().tokens for c in dates.LIST_SEPARATOR)


def test_encode_targets_of_lists_pads_to_the_longest():
    vocab = dates.CharVocab.for_targets()
    inputs, outputs = dates.encode_targets(
        ["1979-05-03", "1979-05-03 2001-09-11"], vocab
    )
    assert inputs.shape == outputs.shape == (2, 22)
    assert vocab.decode(outputs[1]) == "1979-05-03 2001-09-11"
    assert vocab.decode(outputs[0]) == "1979-05-03" and outputs[0, 11] == 0
    with pytest.raises(ValueError, match="two_dates"):
        dates.load_date_lists("test", two_dates=1.5)
