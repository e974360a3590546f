"""Shared by the tests: tables printed at the end of the run.

Tests that grade a catalog through the real pipeline add their verdict
table with `report(title, text)`; pytest prints them after the summary, so
CI's log shows every verdict, not only the failures.
"""

REPORTS = []


def report(title, text):
    REPORTS.append((title, text))


def pytest_terminal_summary(terminalreporter):
    for title, text in REPORTS:
        terminalreporter.section(title)
        terminalreporter.write_line(text)
