"""The real corpora: fetched the way users fetch them, checked, split.

These tests read the mirror folder (`KIT_DATA_MIRROR`, which `.ci/run`
points at `../shared/data`); without one they are skipped. Nothing is
downloaded: the download path is exercised with `keras.utils.get_file`
replaced.
"""

import os
import shutil
import zipfile
from pathlib import Path

import pytest
from conftest import needs_mirror

from autograder.data import translation as T

MIRROR = os.environ.get(T.MIRROR_ENV)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(T.CACHE_ENV, str(tmp_path / "cache"))


@needs_mirror
@pytest.mark.parametrize("name", ["spa-eng", "kor-eng"])
def test_corpus_from_the_mirror_is_verified_and_complete(name):
    sources, targets = T.load_pairs(name)
    assert len(sources) == len(targets) == T.CORPORA[name].pairs
    assert all(sources) and all(targets)
    assert not any("\u00a0" in s or "\u200b" in s for s in sources + targets)


@needs_mirror
def test_spanish_source_english_target_and_disjoint_splits():
    pairs = T.load_pairs("spa-eng")
    assert pairs[1][0] == "Go."  # English is the target
    train, val, test = T.split_pairs(pairs)
    assert len(test[0]) >= 2000 and len(val[0]) >= 2000
    assert len(train[0]) + len(val[0]) + len(test[0]) == len(pairs[0])
    assert not set(test[0]) & set(train[0])  # no test sentence seen in training
    assert T.split_pairs(pairs) == (train, val, test)  # seeded


def test_no_network_and_no_mirror_says_how_to_get_the_file(tmp_path, monkeypatch):
    import keras

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(T.DataUnavailable) as failure:
        T.corpus_file("spa-eng", mirror=str(tmp_path))
    message = str(failure.value)
    assert T.CORPORA["spa-eng"].url in message
    assert "KIT_DATA_MIRROR" in message and "date task" in message


def test_a_damaged_copy_is_refused(tmp_path):
    folder = tmp_path / "mirror"
    folder.mkdir()
    with zipfile.ZipFile(folder / "kor-eng.zip", "w") as z:
        z.writestr("kor.txt", "Go.\t가.\tcredit\n")
    with pytest.raises(T.DataUnavailable, match="sha256"):
        T.corpus_file("kor-eng", mirror=str(folder), download=False)


@needs_mirror
def test_download_path_uses_keras_get_file_and_checks_the_text(tmp_path, monkeypatch):
    import keras

    calls = []

    def fake_get_file(fname, origin, cache_dir, cache_subdir):
        calls.append(origin)
        target = Path(cache_dir) / cache_subdir / fname
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(MIRROR) / fname, target)
        return str(target)

    monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
    path = T.corpus_file("kor-eng", mirror=str(tmp_path))  # empty mirror
    assert calls == [T.CORPORA["kor-eng"].url]
    assert T.corpus_file("kor-eng", mirror=str(tmp_path)) == path  # cached
    assert len(calls) == 1


def test_unknown_corpus():
    with pytest.raises(ValueError, match="spa-eng"):
        T.corpus_file("fra-eng")


def test_normalise():
    assert T.normalise("a\u00a0b\u200bc  d\u00ad") == "a bc d"
