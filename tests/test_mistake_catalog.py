"""The mistake catalogs (`solutions/<assignment>/mistakes.toml`) that
`benchmarks/diagnosis.py` grades to measure whether verdicts name the
mistake: each entry is a submission that builds, says which exercise its bug
is in, the words a message naming it would use and the lexicon topics a
right diagnosis may mention, and is a mistake of its own: not a sample, not
an integrity submission. Nothing here grades (the benchmark does)."""

import re
import sys
import tomllib
from pathlib import Path

import pytest

from autograder.pipeline import Course

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from diagnosis import LEXICON  # noqa: E402

COURSE = Course()
ASSIGNMENTS = COURSE.assignments()
MINIMUM = 15


def entries(assignment):
    path = COURSE.solutions_dir / assignment / "mistakes.toml"
    return tomllib.loads(path.read_text(encoding="utf-8"))["sample"]


def other_samples(assignment):
    return [
        *COURSE.samples(assignment, "samples"),
        *COURSE.samples(assignment, "integrity"),
    ]


def _normalised(patches):
    return [{k: v for k, v in sorted(p.items())} for p in patches]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_assignment_has_enough_mistakes(assignment):
    assert len(entries(assignment)) >= MINIMUM


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_mistake_builds_a_submission(assignment):
    """Each patch applies: its `old` occurs exactly once in its cell
    (`make_submission` raises otherwise) and the cell changes."""
    solution = COURSE.make_submission(
        assignment, next(s for s in COURSE.samples(assignment) if s.name == "solution")
    )
    before = {
        c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in solution.cells
    }
    for sample in COURSE.samples(assignment, "mistakes"):
        assert sample.base == "solution", sample.name
        assert sample.patches, sample.name
        notebook = COURSE.make_submission(assignment, sample)
        after = {
            c.metadata.get("nbgrader", {}).get("grade_id"): c.source
            for c in notebook.cells
        }
        changed = {cell for cell in after if after[cell] != before.get(cell)}
        assert changed == {p["cell"] for p in sample.patches}, sample.name


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_mistake_says_where_and_how_it_is_named(assignment):
    exercises = COURSE.exercises(assignment)
    for entry in entries(assignment):
        name = entry["name"]
        assert entry.get("description"), name
        assert entry["exercise"] in exercises, (name, entry["exercise"])
        words = entry["words"]
        assert words and all(isinstance(w, str) and w.strip() for w in words), name
        assert all(w == w.lower() for w in words), (name, "words are lower case")
        topics = entry["topics"]
        assert topics, name
        assert set(topics) <= set(LEXICON), (name, set(topics) - set(LEXICON))
        assert "expected" not in entry or isinstance(entry["expected"], dict), name


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_names_are_unique_and_new(assignment):
    names = [e["name"] for e in entries(assignment)]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", n) for n in names), names
    taken = {s.name for s in other_samples(assignment)}
    assert not set(names) & taken


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_no_mistake_repeats_a_sample_patch(assignment):
    """A mistake of the catalog is not a sample or integrity submission
    again: no entry's patches equal theirs, and each entry has a patch of its
    own (it may reuse a correct sample's rewrite, as `mha-split-by-reshape`
    reuses the 2-D weights of `merged-heads`)."""
    theirs = other_samples(assignment)
    their_patches = [p for s in theirs for p in _normalised(s.patches)]
    for sample in COURSE.samples(assignment, "mistakes"):
        mine = _normalised(sample.patches)
        assert all(mine != _normalised(s.patches) for s in theirs), sample.name
        assert [p for p in mine if p not in their_patches], sample.name
