"""Keep TensorFlow's and Keras's log lines out of graded cells.

nbgrader gives no points to a graded cell that writes anything to stderr, and
TensorFlow writes log lines there when it loads (oneDNN, CUDA stubs) and later
from C++. The settings below must be in the environment before TensorFlow is
imported; `autograder/__init__.py` applies them on import and the grading
pipeline applies them to every kernel it starts.
"""

import os

#: Environment for every process that runs student code.
TF_QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # C++ logging: errors only
    "TF_ENABLE_ONEDNN_OPTS": "0",  # no oneDNN banner; same numerics every run
    "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning",
}


def quiet_tensorflow(environ=os.environ):
    """Set the quiet settings in `environ` unless the user already chose."""
    for key, value in TF_QUIET_ENV.items():
        environ.setdefault(key, value)
