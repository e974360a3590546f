"""One mistake, one exercise: a composite layer judged on its own wiring.

Filled in below (`judge`).
"""


def judge(check_name):
    """The wiring judge of a composite check, or None."""
    return None
