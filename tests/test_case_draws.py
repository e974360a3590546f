"""Fresh draws of the cases: the same kinds, other values, every mistake shown.

The grader grades on a fresh draw (`judge.spec(name).cases(which, draw)`), so
a submission that hard-codes the outputs the student bundle ships (draw 0)
earns nothing. Draw 0 must stay the shipped set bit for bit; another draw
must keep every case's title (up to the numbers it states), structure and
edge cases, change some input, weight or size of every case, and still tell
every typical mistake from the right answer, clearly (by `judge.APART`
tolerances), wherever the shipped cases do.
"""

import functools
import hashlib
import json
import re

import numpy as np
import pytest
from conftest import report

from autograder import judge
from autograder.checks.core import CheckFailed, Tolerance, compare, decide

NAMES = judge.names()
WHICH = ("visible", "hidden")
#: Draws whose expected outputs are computed (Keras references, about 7 s a
#: draw for all checks on a slow core); the last one is the memorised test's.
DRAWS = tuple(range(1, 5))
#: Draws whose cases are only built (milliseconds a draw).
MANY_DRAWS = tuple(range(1, 31))
#: Digests of every check's cases: draw 0 is what the student bundle ships,
#: so it may change only on purpose (update the digest then); a fresh draw
#: must be the same on every machine.
DIGESTS = {
    0: "814e9b4ad3d6e73bbfe9994afbf94e0d6977f761fabb494425036e7e6f991dab",
    DRAWS[-1]: "4a33460fa42f6ab58d095564eb9eb55453d0ee6f34e6bf2fc5236f730e90afa9",
}
#: Cases with nothing to draw: `causal_mask(1)` is [[True]] whatever is drawn.
UNCHANGED = {("check_masks", "hidden", "causal_mask(1)")}
#: Arrays whose zeros may move: the masks' token ids get other padding lengths
#: of the same kinds (their padding is what the masks show), and the decoder
#: step's token 0 is a word like any other.
ZEROS_MOVE = {("check_masks", "token_ids"), ("check_bahdanau_decoder_step", "tokens")}


def _canonical(value):
    """JSON-able, exact: arrays by dtype, shape and bytes."""
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value)
        digest = hashlib.sha256(data.tobytes()).hexdigest()
        return ["array", data.dtype.str, list(data.shape), digest]
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _data(case):
    """What the student's code is given: inputs, weights, sizes, options."""
    fields = ("inputs", "init", "call_kwargs", "weights", "options")
    return json.dumps({f: _canonical(getattr(case, f)) for f in fields}, sort_keys=True)


def _whole(case):
    fields = ("title", "inputs", "init", "call_kwargs", "valid", "notes")
    fields += ("weights", "options")
    return json.dumps({f: _canonical(getattr(case, f)) for f in fields}, sort_keys=True)


def _digest(draw):
    digest = hashlib.sha256()
    for name in NAMES:
        for which in WHICH:
            for case in judge.spec(name).cases(which, draw=draw):
                digest.update(_whole(case).encode())
    return digest.hexdigest()


def _shape(title):
    return re.sub(r"\d+", "#", title)


def _structure(name, case):
    """Masks as they are; for other arrays, where their zeros (padding) are."""
    out = {}
    for group in ("inputs", "call_kwargs", "valid"):
        for key, value in getattr(case, group).items():
            if not isinstance(value, np.ndarray) or (name, key) in ZEROS_MOVE:
                continue
            out[f"{group}.{key}"] = _canonical(
                value if value.dtype == bool else value == 0
            )
    return out


@functools.cache
def _drawn(name, which, draw):
    """`(cases, expectations)` of one draw, computed once per test run."""
    spec = judge.spec(name)
    cases = spec.cases(which, draw=draw)
    return cases, spec.expectations(cases)


def _margin(variant, expected, case):
    """How many tolerances apart a mistake variant is from the expected
    outputs, at the output where they are furthest apart (inf: another shape
    or a non-finite value)."""
    tolerance = Tolerance()
    worst = 0.0
    for name, value in variant.items():
        if name not in expected:
            continue
        value = np.asarray(value, np.float64)
        right = np.asarray(expected[name], np.float64)
        if value.shape != right.shape:
            return np.inf
        valid = case.valid.get(name)
        valid = np.broadcast_to(True if valid is None else valid, right.shape)
        if (valid & ~np.isfinite(value)).any():
            return np.inf
        allowed = tolerance.atol + tolerance.rtol * np.abs(right)
        apart = np.where(valid, np.abs(value - right), 0.0) / allowed
        worst = max(worst, float(apart.max()))
    return worst


def _margins(name, which, draw):
    """`{mistake: (margin, case index)}`: how far each mistake's outputs are
    from the expected ones, on the case of one draw where they are furthest."""
    cases, expectations = _drawn(name, which, draw)
    best = {}
    for index, (case, expectation) in enumerate(zip(cases, expectations, strict=True)):
        for mistake, _, outputs in judge.spec(name).mistakes:
            try:
                variant = outputs(case)
            except Exception:  # the mistake does not apply to this case
                continue
            margin = _margin(variant, expectation["expected"], case)
            if margin > best.get(mistake, (-1.0, None))[0]:
                best[mistake] = (margin, index)
    return best


@pytest.mark.parametrize("which", WHICH)
@pytest.mark.parametrize("name", NAMES)
def test_draw_zero_is_the_shipped_set(name, which):
    spec = judge.spec(name)
    plain = spec.visible() if which == "visible" else spec.hidden()
    assert [_whole(c) for c in spec.cases(which, draw=0)] == [_whole(c) for c in plain]
    assert [_whole(c) for c in spec.cases(which)] == [_whole(c) for c in plain]


@pytest.mark.parametrize("draw", sorted(DIGESTS))
def test_draws_are_the_same_on_every_machine(draw):
    assert _digest(draw) == DIGESTS[draw], (
        f"the cases of draw {draw} changed: if on purpose (draw 0 is what the "
        "student bundle ships), update DIGESTS"
    )


def test_a_draw_is_a_non_negative_integer():
    spec = judge.spec("check_dot_score")
    for draw in (-1, 1.5, True):
        with pytest.raises(ValueError, match=r"Received: draw="):
            spec.cases("visible", draw=draw)


@pytest.mark.parametrize("which", WHICH)
@pytest.mark.parametrize("name", NAMES)
def test_fresh_draws_keep_the_cases_and_change_their_values(name, which):
    spec = judge.spec(name)
    shipped = spec.cases(which, draw=0)
    titles = [_shape(c.title) for c in shipped]
    for draw in MANY_DRAWS:
        cases = spec.cases(which, draw=draw)
        if draw in DRAWS:
            again = spec.cases(which, draw=draw)
            assert [_whole(c) for c in cases] == [_whole(c) for c in again], draw
        assert [_shape(c.title) for c in cases] == titles, draw
        for before, after in zip(shipped, cases, strict=True):
            if (name, which, before.title) in UNCHANGED:
                assert _data(after) == _data(before)
                continue
            assert _data(after) != _data(before), (draw, before.title)
            for group in ("inputs", "init", "call_kwargs", "weights", "options"):
                assert list(getattr(after, group)) == list(getattr(before, group))
            assert _structure(name, after) == _structure(name, before), (
                draw,
                before.title,
            )


_SMALLEST = {}


@pytest.fixture(scope="module", autouse=True)
def _report_the_smallest_margins():
    yield
    if _SMALLEST:
        rows = [f"{'check':34s} {'cases':7s}  smallest margin (tolerances), mistake"]
        rows += [
            f"{n:34s} {w:7s}  {text}" for (n, w), text in sorted(_SMALLEST.items())
        ]
        report(
            f"mistakes on fresh draws {DRAWS[0]}..{DRAWS[-1]}: every margin >= "
            f"{judge.APART:g}",
            "\n".join(rows),
        )


@pytest.mark.parametrize("which", WHICH)
@pytest.mark.parametrize("name", NAMES)
def test_fresh_draws_show_every_mistake_clearly(name, which):
    """Wherever the shipped cases tell a mistake from the right answer, every
    draw does too, by `judge.APART` tolerances on some case."""
    spec = judge.spec(name)
    shown = sorted(
        m for m, (margin, _) in _margins(name, which, 0).items() if margin > 1
    )
    tolerance = Tolerance()
    wider = Tolerance(
        rtol=judge.APART * tolerance.rtol, atol=judge.APART * tolerance.atol
    )
    smallest = None
    for draw in DRAWS:
        cases, expectations = _drawn(name, which, draw)
        margins = _margins(name, which, draw)
        for mistake in shown:
            margin, index = margins.get(mistake, (0.0, None))
            assert margin >= judge.APART, (
                f"draw {draw}: the mistake {mistake!r} comes within {margin:.3g} "
                "tolerances of the right answer on every case"
            )
            # The same, as the checks compare.
            case, expected = cases[index], expectations[index]["expected"]
            outputs = next(o for m, _, o in spec.mistakes if m == mistake)
            assert any(
                compare(
                    np.asarray(value, np.float64),
                    np.asarray(expected[key], np.float64),
                    case.valid.get(key),
                    wider,
                )
                is not None
                for key, value in outputs(case).items()
                if key in expected
            ), (draw, mistake)
            if smallest is None or margin < smallest[0]:
                smallest = (margin, mistake, draw)
    if smallest is not None:
        margin, mistake, draw = smallest
        _SMALLEST[(name, which)] = f"{margin:8.3g}  {mistake} (draw {draw})"


@pytest.mark.parametrize("which", WHICH)
@pytest.mark.parametrize("name", NAMES)
def test_memorised_outputs_fail_on_a_fresh_draw(name, which):
    """The expected outputs of a fresh draw come from its own cases: the
    shipped outputs (draw 0) fail it, case by case."""
    draw = DRAWS[-1]
    _, shipped = _drawn(name, which, 0)
    cases, expectations = _drawn(name, which, draw)
    memorised = [dict(e["expected"]) for e in shipped]
    with pytest.raises(CheckFailed, match=f"^{name}: case "):
        decide(name, cases, memorised, expectations)
    right = [dict(e["expected"]) for e in expectations]
    assert decide(name, cases, right, expectations) == len(cases)
    for index, (case, old, new) in enumerate(
        zip(cases, shipped, expectations, strict=True)
    ):
        if (name, which, case.title) in UNCHANGED:
            continue
        observed = [dict(e["expected"]) for e in expectations]
        observed[index] = dict(old["expected"])
        with pytest.raises(CheckFailed, match=f"case {index + 1} of"):
            decide(name, cases, observed, expectations)
        assert new["expected"].keys() == old["expected"].keys()
