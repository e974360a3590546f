"""The exercises' own diagnosis (judge side): what a failed case shows.

See `autograder.judge.Spec.diagnose`. Registered with `@diagnoses(check)`.
"""

from autograder.judge import diagnoses  # noqa: F401
from autograder.judge import transformer as _specs  # noqa: F401  (the specs first)
