"""Where a check gets its cases, and where its verdict is decided.

* While a submission is graded (`KIT_GRADING_CASES` names a folder the grader
  prepared): cases come from the files the grader writes there just before
  the test cell runs (the folder is the grader's, read-only to the kernel,
  and holds only the running test's cases). The student's outputs go back
  to the grader as one output of the test cell (a display message of type
  `RECORD_MIME`), which the kernel cannot change once it is sent; the grader
  decides, in its own process.
* In the instructor's (or a self-learner's) installation, which has
  `autograder.judge`: cases and expected outputs are computed live.
* In the student package, which has neither the reference nor the hidden
  cases: the visible cases and their expected outputs come from the `.npz`
  files shipped beside this module (`autograder bundle` writes them).
"""

import base64
import os
from pathlib import Path

from autograder.checks import store
from autograder.checks.core import CheckFailed

__all__ = ["GRADING_ENV", "RECORD_MIME", "cases_path", "current"]

GRADING_ENV = "KIT_GRADING_CASES"
RECORD_MIME = "application/vnd.kit.record+json"
RAN_NOTE = "the grader compares the results outside this notebook."
EXPECTED_DIR = Path(__file__).with_name("expected")


def cases_path(folder, check_name, which):
    return os.path.join(folder, f"{check_name}--{which}.npz")


def _valid_which(which):
    if which not in ("visible", "hidden"):
        raise ValueError(
            "Received an invalid value for argument `cases`, expected one of "
            f"('visible', 'hidden'). Received: cases={which!r}"
        )


class GradingSource:
    grading = True

    def __init__(self, folder):
        self.folder = folder
        self.nonces = {}

    def cases(self, check_name, which):
        _valid_which(which)
        path = cases_path(self.folder, check_name, which)
        if not os.path.exists(path):
            raise CheckFailed(
                f"{check_name}: the grader prepared no cases for this call "
                f"(cases={which!r}); only the notebook's own test cells are graded."
            )
        cases, self.nonces[check_name, which] = store.load_cases(path, with_nonce=True)
        return cases

    def record(self, check_name, which, observations, failure, evidence):
        """Hand the outputs to the grader as this cell's output."""
        from IPython.display import publish_display_data

        from autograder.checks import integrity

        data = store.record_bytes(
            check_name,
            which,
            observations,
            failure,
            {
                **evidence,
                "tampered": integrity.changed(),
                "nonce": self.nonces.get((check_name, which), ""),
            },
        )
        publish_display_data(
            {
                RECORD_MIME: {
                    "check": check_name,
                    "which": which,
                    "npz": base64.b64encode(data).decode("ascii"),
                }
            }
        )


class LiveSource:
    grading = False

    def __init__(self, judge):
        self.judge = judge

    def cases(self, check_name, which):
        _valid_which(which)
        return self.judge.spec(check_name).cases(which)

    def expectations(self, check_name, which, cases):
        return self.judge.spec(check_name).expectations(cases)

    def generic_hint(self, check_name):
        return self.judge.spec(check_name).generic_hint


class BundleSource:
    grading = False

    def __init__(self, folder=EXPECTED_DIR):
        self.folder = Path(folder)
        self._loaded = {}

    def _load(self, check_name):
        if check_name not in self._loaded:
            path = self.folder / f"{check_name}.npz"
            if not path.exists():
                raise CheckFailed(
                    f"{check_name}: this installation has no test data for it. "
                    "Reinstall the course package."
                )
            self._loaded[check_name] = store.load_expectations(path)
        return self._loaded[check_name]

    def cases(self, check_name, which):
        _valid_which(which)
        if which == "hidden":
            raise CheckFailed(
                f"{check_name}: hidden tests run when your notebook is graded; "
                "they are not part of the student package."
            )
        return self._load(check_name)[0]

    def expectations(self, check_name, which, cases):
        return self._load(check_name)[1]

    def generic_hint(self, check_name):
        return self._load(check_name)[2]


def current():
    folder = os.environ.get(GRADING_ENV)
    if folder:
        return GradingSource(folder)
    try:
        from autograder import judge
    except ImportError:
        judge = None
    if judge is not None and hasattr(judge, "spec"):
        return LiveSource(judge)
    return BundleSource()
