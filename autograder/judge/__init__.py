"""The trusted half of the checks: cases, reference outputs and mistakes.

Every `check_*` has a `Spec` here: its visible and hidden cases (inputs,
weights, masks), the reference outputs for a case, and the typical mistakes
with their hints. This package is never shipped to students (`autograder
bundle` leaves it out) and is hidden from the kernel that runs a submission
(`autograder.sandbox`); the grader imports it in its own process.

Cases come in draws (`Spec.cases(which, draw)`): draw 0 is the set whose
expected outputs the student bundle ships; the grader grades on a fresh draw,
cases of the same kinds with other values, so hard-coding the shipped outputs
earns nothing.
"""

import dataclasses
import importlib
from collections.abc import Callable, Sequence

import numpy as np

from autograder.checks.core import ROUND_TRIP, Tolerance, compare, drawing, valid_for

__all__ = ["APART", "Spec", "diagnoses", "names", "register", "spec"]

#: A mistake that a shipped case shows by more than `APART` tolerances, the
#: same case of a fresh draw shows by as much (`Spec.cases`).
APART = 3.0
_REDRAWS = 200

_MODULES = (
    "autograder.judge.seq2seq",
    "autograder.judge.attention",
    "autograder.judge.transformer",
    # Each exercise's own diagnosis (`diagnoses`), after the specs.
    "autograder.judge.diagnose_seq2seq",
    "autograder.judge.diagnose_attention",
    "autograder.judge.diagnose_transformer",
    "autograder.judge.diagnose_blocks",
)
_SPECS = {}


@dataclasses.dataclass
class Spec:
    """Everything the trusted side knows about one check.

    Attributes:
        name: the `check_*` function's name.
        visible: `() -> [Case]`, the cases of the visible test cell (of the
            current draw: see `cases`).
        hidden: `() -> [Case]`, the cases of the hidden test cell.
        reference: `case -> {output name: float64 array}`.
        mistakes: `[(name, hint, case -> {output name: array})]`.
        generic_hint: the hint when no mistake matches.
        formula: `case -> {output name: array}`, the reference's outputs
            computed cheaply (NumPy), used to draw cases that show every
            mistake; None to use `reference`.
        round_trip: whether the first case also has the outputs of the layer
            rebuilt with `from_config(get_config())`.
        borrowing: what counts as a borrowed answer: True (or "attention"),
            a library's attention; "blocks", keras-hub's Transformer blocks
            (Assignment 3 builds on Keras's attention); False, nothing.
    """

    name: str
    visible: Callable
    hidden: Callable
    reference: Callable
    mistakes: Sequence = ()
    generic_hint: str = ""
    round_trip: bool = False
    borrowing: bool = True
    formula: Callable | None = None
    #: The exercise's own diagnosers (`diagnoses`), read when a case fails
    #: and no known variant matches.
    diagnosers: list = dataclasses.field(default_factory=list)
    _shown: dict = dataclasses.field(default_factory=dict, init=False, repr=False)

    def cases(self, which, draw=0):
        """The visible or hidden cases of one draw.

        Draw 0 gives the cases whose expected outputs the student bundle
        ships. Any other draw gives cases of the same kinds (titles, sizes'
        kinds, padding patterns, edge cases) with other values, the same on
        every machine: the grader grades on a fresh draw, so hard-coding the
        shipped outputs earns nothing. `expectations(cases)` works on any
        draw's cases.

        A case of a fresh draw is drawn again (`drawing(draw, redraw)`)
        until it shows every mistake the shipped case shows, as clearly
        (beyond `APART` tolerances, or beyond the tolerance): random values
        can make a mistake vanish (a padded key whose weight underflows,
        accuracies that happen to coincide), and a wrong answer would pass.
        """
        if which not in ("visible", "hidden"):
            raise ValueError(
                "Received an invalid value for argument `cases`, expected one of "
                f"('visible', 'hidden'). Received: cases={which!r}"
            )
        build = self.visible if which == "visible" else self.hidden
        with drawing(draw):
            cases = build()
        if draw == 0:
            return cases
        if which not in self._shown:
            with drawing(0):
                self._shown[which] = [self.shown(case) for case in build()]
        for index, shown in enumerate(self._shown[which]):
            redraw = 0
            while not _as_clear(self.shown(cases[index]), shown):
                redraw += 1
                if redraw > _REDRAWS:
                    raise RuntimeError(
                        f"{self.name}: no draw of case {index + 1} of draw {draw} "
                        f"shows the mistakes {sorted(shown)} in {_REDRAWS} tries"
                    )
                with drawing(draw, redraw):
                    cases[index] = build()[index]
        return cases

    def shown(self, case):
        """How clearly `case` shows each mistake: `{name: 2}` beyond `APART`
        tolerances, 1 beyond the tolerance, 0 not at all (missing when the
        mistake does not apply to the case)."""
        try:
            right = (self.formula or self.reference)(case)
        except Exception:  # no formula for this kind of case (a gradient)
            return {}
        levels = {}
        for name, _, outputs in self.mistakes:
            try:
                variant = outputs(case)
            except Exception:  # a mistake that does not apply to this case
                continue
            levels[name] = max(
                (
                    _level(value, right[key], valid_for(case, key))
                    for key, value in variant.items()
                    if key in right
                ),
                default=0,
            )
        return levels

    def diagnose(self, case, got, expected, wrong):
        """What this exercise's diagnosers read in a failed case: one
        `checks.evidence.Evidence`. Each diagnoser is
        `(case, got, expected, wrong) -> Evidence | None`: `got` the
        student's outputs (and the calls of the parts it made, `tap:` keys,
        `autograder.checks.taps`), `expected` the reference's outputs,
        `wrong` the names of the outputs that differ."""
        from autograder.checks.evidence import Evidence

        found = Evidence()
        for diagnoser in self.diagnosers:
            result = diagnoser(case, got, expected, wrong)
            if result:
                found.extend(result)
        return found

    def expectations(self, cases):
        """Expected outputs and mistake variants for each case."""
        result = []
        for index, case in enumerate(cases):
            expected = dict(self.reference(case))
            if index == 0 and self.round_trip:
                main = {k: v for k, v in expected.items() if "(" not in k}
                expected.update({f"{k}{ROUND_TRIP}": v for k, v in main.items()})
            variants = []
            for _, hint, outputs in self.mistakes:
                try:
                    variants.append((hint, outputs(case)))
                except Exception:  # a mistake that does not apply to this case
                    continue
            result.append({"expected": expected, "variants": variants})
        return result


def _level(value, right, valid):
    value, right = np.asarray(value, np.float64), np.asarray(right, np.float64)
    for level, factor in ((2, APART), (1, 1.0)):
        tolerance = Tolerance()
        wider = Tolerance(rtol=tolerance.rtol * factor, atol=tolerance.atol * factor)
        if compare(value, right, valid, wider) is not None:
            return level
    return 0


def _as_clear(levels, shown):
    return all(levels.get(name, 0) >= level for name, level in shown.items())


def diagnoses(check_name):
    """Decorate a diagnoser of the check `check_name` (see `Spec.diagnose`)."""

    def add(function):
        _SPECS[check_name].diagnosers.append(function)
        return function

    return add


def register(new):
    _SPECS[new.name] = new
    return new


def _load():
    for module in _MODULES:
        importlib.import_module(module)


def spec(check_name):
    _load()
    if check_name not in _SPECS:
        raise KeyError(f"no check named {check_name!r}")
    return _SPECS[check_name]


def names():
    _load()
    return sorted(_SPECS)
