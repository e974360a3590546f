"""Generated data sets for the course assignments.

`dates`: a deterministic, download-free date-normalisation data set ("3 May 1979",
"5/3/79", "1979년 5월 3일" ... -> "1979-05-03") for character-level
sequence-to-sequence models with attention. See `data/README.md`.

`lookup`: `c=4 a=7 f=1 ? a -> 7`, a task whose answer needs one token to find
another by content (Assignment 2 trains a self-attention layer on it).

`pronouns`: "The animal didn't cross the street because it was too tired"
-> animal; "... too wide" -> street: which noun a pronoun refers to, decided
by the word after it, with held-out noun/predicate combinations (Assignment 2
trains an encoder of the student's multi-head attention on it).

`translation`, `wordpiece`: the Tatoeba sentence pairs of Assignment 3
(downloaded with a checksum, or read from a mirror) and their subword
vocabularies.
"""

from .dates import (
    DEFAULT_SIZES,
    FAMILIES,
    LIST_SEPARATOR,
    MAX_DATE,
    MAX_SOURCE_LENGTH,
    MIN_DATE,
    SPLITS,
    TARGET_LENGTH,
    CharVocab,
    DateSplit,
    encode_sources,
    encode_targets,
    format_date,
    load_date_lists,
    load_dates,
    split_for_date,
)

__all__ = [
    "DEFAULT_SIZES",
    "FAMILIES",
    "LIST_SEPARATOR",
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
    "load_date_lists",
    "load_dates",
    "split_for_date",
]
