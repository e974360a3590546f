"""Execute each solution notebook top to bottom, training included, and time it.

Prints the wall-clock time of the whole notebook, the slowest cells, and the
figures the notebook itself prints (exact match of the trained models).
Goals on 2 CPU cores: Assignments 1 and 2 at most 6 minutes each
(Assignment 1 >= 99% exact match; Assignment 2's lookup model near 100%);
Assignment 3 at most 12 minutes with its default 5-minute translation
training (the date task >= 99.5% exact, BLEU >= 30 on the 2,000 Spanish
test pairs). The kernels run as in a student's own Jupyter: the kit's quiet
settings, with TensorFlow's default oneDNN (on) unless
`TF_ENABLE_ONEDNN_OPTS` is set (grading alone switches it off).

    python benchmarks/notebook_timing.py [--quick]
"""

import argparse
import datetime
import os
import re
import time

import nbformat
from nbclient import NotebookClient

from autograder.pipeline import Course
from autograder.quiet import TF_QUIET_ENV


def _seconds(cell):
    timing = cell.metadata.get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    parse = datetime.datetime.fromisoformat
    return (
        parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))
    ).total_seconds()


def _text(cell):
    return "".join(
        o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream"
    )


def run(path, quick=False):
    notebook = nbformat.read(path, as_version=4)
    os.environ.update(
        {k: v for k, v in TF_QUIET_ENV.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    )
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # TensorFlow's default
    if quick:
        os.environ["KIT_QUICK"] = "1"
    client = NotebookClient(
        notebook,
        timeout=1800,
        kernel_name="python3",
        record_timing=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    started = time.perf_counter()
    client.execute()
    total = time.perf_counter() - started
    cells = [
        (i, _seconds(c), c)
        for i, c in enumerate(notebook.cells)
        if c.cell_type == "code"
    ]
    output = "\n".join(_text(c) for _, _, c in cells)
    return total, cells, output, notebook


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="KIT_QUICK=1: small training"
    )
    parser.add_argument("assignments", nargs="*", help="default: all")
    args = parser.parse_args()
    course = Course()
    course.build_solutions()
    for assignment in args.assignments or course.assignments():
        path = course.solutions_dir / assignment / course.notebook_name(assignment)
        total, cells, output, notebook = run(path, args.quick)
        print(
            f"{assignment}: executed top to bottom in {total:.0f} s "
            f"({'quick' if args.quick else 'full'} training)"
        )
        for index, seconds, cell in sorted(cells, key=lambda c: -c[1])[:5]:
            first = cell.source.strip().splitlines()[0][:60]
            print(f"  cell {index:>3}: {seconds:6.1f} s  {first}")
        pattern = (
            r"^.*(?:exactly right|largest difference|val_accuracy|exact match on|"
            r"epochs in|BLEU on|parameters,|after loading|test pairs: greedy).*$"
        )
        for line in re.findall(pattern, output, re.M)[-8:]:
            print(f"  {line.strip()}")
        executed = course.root / "build" / "benchmarks" / f"{assignment}.ipynb"
        executed.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, executed)
        print(f"  executed notebook (with figures): {executed}")


if __name__ == "__main__":
    main()
