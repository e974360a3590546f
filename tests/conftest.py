"""Shared by the tests: tables printed at the end of the run.

Tests that grade a catalog through the real pipeline add their verdict
table with `report(title, text)`; pytest prints them after the summary, so
CI's log shows every verdict, not only the failures. `needs_mirror` marks
tests that read the real translation corpora.
"""

import os
from pathlib import Path

import pytest

REPORTS = []

# Tests that read the real corpora need the mirror folder (CI sets it).
needs_mirror = pytest.mark.skipif(
    not (
        os.environ.get("KIT_DATA_MIRROR")
        and (Path(os.environ["KIT_DATA_MIRROR"]) / "spa-eng.zip").is_file()
    ),
    reason="no KIT_DATA_MIRROR with the corpora (CI sets it)",
)


def report(title, text):
    REPORTS.append((title, text))


def pytest_terminal_summary(terminalreporter):
    for title, text in REPORTS:
        terminalreporter.section(title)
        terminalreporter.write_line(text)
