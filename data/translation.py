"""Real sentence pairs for translation: Spanish-English and Korean-English.

Both corpora are Tatoeba sentence pairs distributed by manythings.org
(CC BY 2.0 FR; see `data/README.md` for the card and the attribution that
must ship with anything derived from them). They are never part of this
project: `corpus_file` downloads the archive from its public URL with
`keras.utils.get_file`, extracts the text and checks its sha256, or takes the
archive from a local mirror folder instead (`KIT_DATA_MIRROR`, which CI points
at `../shared/data`). Without network and without a mirror it raises
`DataUnavailable`, whose message says how to get the file; the date task
(`autograder.data.dates`) needs neither.

    >>> from autograder.data import translation
    >>> pairs = translation.load_pairs("spa-eng")          # (source, target) lists
    >>> train, val, test = translation.split_pairs(pairs)  # seeded, disjoint
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import tempfile
import zipfile
from pathlib import Path

__all__ = [
    "ATTRIBUTION",
    "CORPORA",
    "MIRROR_ENV",
    "Corpus",
    "DataUnavailable",
    "corpus_file",
    "load_pairs",
    "normalise",
    "split_pairs",
]

MIRROR_ENV = "KIT_DATA_MIRROR"
CACHE_ENV = "KIT_DATA_CACHE"
ATTRIBUTION = (
    "Sentence pairs from the Tatoeba Project (tatoeba.org), distributed by "
    "www.manythings.org/anki, licensed CC BY 2.0 FR. Characters normalised "
    "(no-break and thin spaces to spaces, zero-width characters removed)."
)


@dataclasses.dataclass(frozen=True)
class Corpus:
    """Where a corpus comes from and how to read it."""

    name: str
    url: str
    archive: str
    member: str
    sha256: str
    pairs: int
    source_column: int  # the language translated from
    target_column: int  # English
    source_language: str


CORPORA = {
    "spa-eng": Corpus(
        name="spa-eng",
        url="http://storage.googleapis.com/download.tensorflow.org/data/spa-eng.zip",
        archive="spa-eng.zip",
        member="spa-eng/spa.txt",
        sha256="6ec60e212f812ee3430f7568ea6f33b6fb080e32193c5952e8da0ee8ba45574c",
        pairs=118_964,
        source_column=1,
        target_column=0,
        source_language="Spanish",
    ),
    "kor-eng": Corpus(
        name="kor-eng",
        url="https://www.manythings.org/anki/kor-eng.zip",
        archive="kor-eng.zip",
        member="kor.txt",
        sha256="6c9d8de3e500306997e4083274fb0038ef521651ffb2b7923e4e607a59d09dbc",
        pairs=5_749,
        source_column=1,
        target_column=0,
        source_language="Korean",
    ),
}


class DataUnavailable(RuntimeError):
    """The corpus could be neither downloaded nor found in a mirror."""


def _cache_dir():
    folder = os.environ.get(CACHE_ENV) or os.path.join(
        os.path.expanduser("~"), ".keras", "datasets", "attention-course-kit"
    )
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _extract(archive, corpus, target):
    """Extract the corpus's text from `archive` to `target`; check its sha256."""
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        member = corpus.member if corpus.member in names else None
        if member is None:  # some copies are zipped without the folder
            base = corpus.member.rsplit("/", 1)[-1]
            member = next((n for n in names if n.rsplit("/", 1)[-1] == base), None)
        if member is None:
            raise DataUnavailable(
                f"{archive} has no {corpus.member} (it has {', '.join(names[:5])})."
            )
        data = z.read(member)
    digest = hashlib.sha256(data).hexdigest()
    if digest != corpus.sha256:
        raise DataUnavailable(
            f"{corpus.member} from {archive} has sha256 {digest}, expected "
            f"{corpus.sha256}: a different or damaged copy. The source updates "
            "its files; use the copy this course was built on (see data/README.md)."
        )
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, target)
    return target


def corpus_file(name, mirror=None, download=True):
    """The verified text file of corpus `name`, fetched once and cached.

    Args:
        name: a key of `CORPORA` ("spa-eng" or "kor-eng").
        mirror: a folder holding the archive (default `$KIT_DATA_MIRROR`);
            used instead of the URL when it has the file.
        download: whether to try the URL when no mirror has the file.

    Raises:
        DataUnavailable: with instructions, when nothing worked.
    """
    if name not in CORPORA:
        raise ValueError(
            f"Received an invalid value for argument `name`, expected one of "
            f"{tuple(CORPORA)}. Received: name={name!r}"
        )
    corpus = CORPORA[name]
    target = _cache_dir() / f"{corpus.name}-{corpus.sha256[:12]}.txt"
    if target.exists() and _sha256(target) == corpus.sha256:
        return target
    mirror = mirror or os.environ.get(MIRROR_ENV)
    if mirror and (Path(mirror) / corpus.archive).is_file():
        return _extract(Path(mirror) / corpus.archive, corpus, target)
    problem = f"no mirror has {corpus.archive}"
    if download:
        try:
            import keras

            archive = keras.utils.get_file(
                fname=corpus.archive,
                origin=corpus.url,
                cache_dir=str(_cache_dir()),
                cache_subdir="archives",
            )
            return _extract(archive, corpus, target)
        except DataUnavailable:
            raise
        except Exception as error:  # no network, HTTP errors, ...
            problem = (
                f"downloading {corpus.url} failed ({type(error).__name__}: {error})"
            )
    raise DataUnavailable(
        f"The {corpus.source_language}-English corpus is not available: {problem}.\n"
        f"Get {corpus.archive} from {corpus.url} on a machine with internet, put "
        f"it in a folder and set {MIRROR_ENV}=<that folder> (it is checked by "
        f"sha256). The date task (autograder.data.dates) needs no download."
    )


_TRANSLATE = str.maketrans(
    {"\u00a0": " ", "\u202f": " ", "\u2009": " ", "\u200b": None, "\u00ad": None}
)


def normalise(text):
    """No-break and thin spaces to spaces, zero-width characters removed."""
    return " ".join(text.translate(_TRANSLATE).split())


def load_pairs(name, mirror=None, download=True, limit=None):
    """`(sources, targets)`: sentences in the other language and in English."""
    corpus = CORPORA[name]
    sources, targets = [], []
    with open(corpus_file(name, mirror, download), encoding="utf-8") as f:
        for line in f:
            columns = line.rstrip("\n").split("\t")
            if len(columns) < 2:
                continue
            sources.append(normalise(columns[corpus.source_column]))
            targets.append(normalise(columns[corpus.target_column]))
            if limit and len(sources) >= limit:
                break
    return sources, targets


def split_pairs(pairs, test=2000, validation=2000, seed=0):
    """Seeded shuffle (the files are sorted by length), then three disjoint
    parts: `(train, validation, test)`, each `(sources, targets)`.

    The same source sentence can have several translations; all pairs of one
    source sentence go to the same part, so no test sentence is seen in
    training.
    """
    sources, targets = pairs
    groups = {}
    for s, t in zip(sources, targets, strict=True):
        groups.setdefault(s, []).append(t)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    parts, start = [], 0
    for size in (test, validation):
        chosen, count = [], 0
        while count < size and start < len(keys):
            chosen.append(keys[start])
            count += len(groups[keys[start]])
            start += 1
        parts.append(chosen)
    parts.append(keys[start:])
    test_keys, val_keys, train_keys = parts

    def flatten(chosen):
        src = [k for k in chosen for _ in groups[k]]
        tgt = [t for k in chosen for t in groups[k]]
        return src, tgt

    return flatten(train_keys), flatten(val_keys), flatten(test_keys)
