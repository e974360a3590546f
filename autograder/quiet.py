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
    """Set the quiet settings in `environ` unless the user already chose.

    oneDNN is switched off only while nbgrader executes the notebook
    (`NBGRADER_EXECUTION`, as in autograde and Validate; the grading
    pipeline sets it for its kernels too), where the same numbers on every
    run matter more than speed. In a student's own Jupyter TensorFlow keeps
    its default, oneDNN on, which trains about 1.5 times faster on a CPU;
    its banner is printed while TensorFlow loads, which
    `import_tensorflow_quietly` sends to /dev/null. The checks give the same
    verdicts either way (tests/test_verdicts_everywhere.py).
    """
    grading = "NBGRADER_EXECUTION" in environ
    for key, value in TF_QUIET_ENV.items():
        if key == "TF_ENABLE_ONEDNN_OPTS" and not grading:
            continue
        environ.setdefault(key, value)


def import_tensorflow_quietly():
    """Import TensorFlow and Keras with file descriptor 2 sent to /dev/null.

    Even with TF_CPP_MIN_LOG_LEVEL=3, TensorFlow's C++ code writes a few lines
    ("cudart_stub.cc: Could not find cuda drivers", absl's "All log messages
    before absl::InitializeLog()") straight to file descriptor 2 while it loads
    and enumerates devices; a notebook shows them in red under the first cell.
    Only the import and device enumeration run with stderr closed; Python
    errors still raise as usual.
    """
    import sys

    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras  # noqa: F401
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
