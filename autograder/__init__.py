"""Attention course kit: reference layers, checks and the grading pipeline.

Importing this package first quietens TensorFlow's C++ logging (see
`autograder.quiet`), which must happen before TensorFlow is imported.
"""

from autograder.quiet import quiet_tensorflow

quiet_tensorflow()

__version__ = "0.1.0"
