"""The trusted half of the checks: cases, reference outputs and mistakes.

Every `check_*` has a `Spec` here: its visible and hidden cases (inputs,
weights, masks), the reference outputs for a case, and the typical mistakes
with their hints. This package is never shipped to students (`autograder
bundle` leaves it out) and is hidden from the kernel that runs a submission
(`autograder.sandbox`); the grader imports it in its own process.
"""

import dataclasses
import importlib
from collections.abc import Callable, Sequence

__all__ = ["Spec", "names", "register", "spec"]

_MODULES = (
    "autograder.judge.seq2seq",
    "autograder.judge.attention",
    "autograder.judge.transformer",
)
_SPECS = {}


@dataclasses.dataclass
class Spec:
    """Everything the trusted side knows about one check.

    Attributes:
        name: the `check_*` function's name.
        visible: `() -> [Case]`, the cases of the visible test cell.
        hidden: `() -> [Case]`, the cases of the hidden test cell.
        reference: `case -> {output name: float64 array}`.
        mistakes: `[(name, hint, case -> {output name: array})]`.
        generic_hint: the hint when no mistake matches.
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

    def cases(self, which):
        if which == "visible":
            return self.visible()
        if which == "hidden":
            return self.hidden()
        raise ValueError(
            "Received an invalid value for argument `cases`, expected one of "
            f"('visible', 'hidden'). Received: cases={which!r}"
        )

    def expectations(self, cases):
        """Expected outputs and mistake variants for each case."""
        result = []
        for index, case in enumerate(cases):
            expected = dict(self.reference(case))
            if index == 0 and self.round_trip:
                main = {k: v for k, v in expected.items() if "(" not in k}
                expected.update({f"{k} after from_config": v for k, v in main.items()})
            variants = []
            for _, hint, outputs in self.mistakes:
                try:
                    variants.append((hint, outputs(case)))
                except Exception:  # a mistake that does not apply to this case
                    continue
            result.append({"expected": expected, "variants": variants})
        return result


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
