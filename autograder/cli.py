"""`autograder`: the instructor's command line.

autograder build                 solution notebooks + student versions
autograder check-sync            fail if assignments/ is out of date
autograder samples A OUT         write A's sample submissions into OUT
autograder grade A SUBMISSIONS   autograde a folder of submissions
autograder grade A --collected   autograde what `nbgrader collect` gathered
autograder bundle [--out DIR]    what students receive: notebooks + a wheel
                                 without solutions or hidden tests
autograder demo [--integrity]    all of it on the bundled samples (and the
                                 integrity catalog)
autograder report A              an HTML page on A's grading, with figures
autograder roster import FILE    a class roster (CSV) into the gradebook
autograder export [A] --format plain|canvas|moodle --out FILE
                                 points and totals for a spreadsheet or LMS
autograder workspace [DIR]       a student's own copy of the assignments
"""

import argparse
import sys
import time
from pathlib import Path

import nbformat

from autograder import sandbox
from autograder.pipeline import Course, PipelineError, format_table


def _course(args):
    grading = getattr(args, "out", None)
    return Course(args.root, grading)


def cmd_build(args):
    course = _course(args)
    release = course.generate()
    print(f"Built {len(course.assignments())} assignment(s) into {release}")


def cmd_check_sync(args):
    problems = _course(args).check_sync()
    if problems:
        print("assignments/ is out of sync with solutions/ (run `autograder build`):")
        print("\n".join(f"  {p}" for p in problems))
        return 1
    print("assignments/ is in sync with solutions/.")
    return 0


def write_samples(course, assignment, out, catalog="samples"):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for sample in course.samples(assignment, catalog):
        path = out / f"{sample.name}.ipynb"
        nbformat.write(course.make_submission(assignment, sample), path)
        written[sample.name] = path
    return written


def cmd_samples(args):
    course = _course(args)
    course.check_assignment(args.assignment)
    for name, path in write_samples(course, args.assignment, args.out_dir).items():
        print(f"{name}: {path}")


def find_submissions(folder, assignment, notebook=None, nbgrader_only=False):
    """student id -> notebook path, for the layouts instructors get.

    `DIR/<student>.ipynb`, `DIR/<student>/<notebook>.ipynb` and nbgrader's
    `DIR/<student>/<assignment>/<notebook>.ipynb` (`nbgrader_only`: that
    one alone, as `nbgrader collect` writes it). A student's folder with
    several notebooks gives the one named `notebook` (the assignment's),
    else the first by name.
    """
    folder = Path(folder)
    found = {}
    if not nbgrader_only:
        for path in sorted(folder.glob("*.ipynb")):
            found[path.stem] = path
    for student_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        inner = student_dir / assignment
        if not inner.is_dir():
            if nbgrader_only:
                continue
            inner = student_dir
        notebooks = sorted(
            p for p in inner.glob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
        )
        named = [p for p in notebooks if p.name == notebook]
        if named or notebooks:
            found[student_dir.name] = (named or notebooks)[0]
    return found


def grade_folder(
    course,
    assignment,
    submissions,
    feedback=True,
    log=print,
    regrade=False,
    root=None,
    engine=None,
    only=None,
    progress=False,
):
    """Grade `{student: path}` on `engine` (default: this process's shared
    local cluster); return the results in the same order."""
    from autograder import engine as engines
    from autograder.job import GradingJob

    log(f"  ({sandbox.describe()})")
    job = GradingJob(
        course,
        assignment,
        engine or engines.shared,
        log=log,
        regrade=regrade,
        only=only,
        feedback=feedback,
        progress=progress,
    )
    return job.run(submissions, root)


def _engine(args):
    """The engine the command asks for: `--scheduler ADDRESS` (an existing
    cluster) or a local cluster of `--workers N`."""
    from autograder import engine as engines

    engine = engines.shared(
        getattr(args, "workers", None), getattr(args, "scheduler", None)
    )
    where = args.scheduler or f"a local cluster of {engine.worker_count()} worker(s)"
    print(f"Grading on {where}; dashboard: {engine.dashboard}")
    return engine


def cmd_grade(args):
    course = _course(args)
    course.check_assignment(args.assignment)
    if args.collected:  # what `nbgrader collect` put in the grading folder
        if args.submissions:
            print("Give a folder of submissions or --collected, not both.")
            return 1
        args.submissions = course.grading_dir / "submitted"
        if not args.submissions.is_dir():
            print(f"Nothing collected: no {args.submissions} (run `nbgrader collect`).")
            return 1
    elif not args.submissions:
        print("Give the folder of submissions (or --collected).")
        return 1
    submissions = find_submissions(
        args.submissions,
        args.assignment,
        course.notebook_name(args.assignment),
        nbgrader_only=args.collected,
    )
    if not submissions:
        print(f"No notebooks found in {args.submissions}.")
        return 1
    only = [s for s in (args.only or "").split(",") if s]
    unknown = sorted(set(only) - set(submissions))
    if unknown:
        print(f"No submission of {', '.join(unknown)} in {args.submissions}.")
        return 1
    print(
        f"Grading {len(only) or len(submissions)} submission(s) of {args.assignment} "
        f"into {course.grading_dir}"
    )
    engine = _engine(args)
    results = grade_folder(
        course,
        args.assignment,
        submissions,
        not args.no_feedback,
        log=(lambda _: None) if args.quiet else print,
        regrade=args.regrade,
        root=args.submissions,
        engine=engine,
        only=only,
        progress=True,
    )
    print()
    print(format_table(results))
    print(f"\nFeedback: {course.grading_dir / 'feedback'}")
    return 0


def cmd_demo(args):
    course = _course(args)
    started = time.monotonic()
    print("Generating the student versions (assignments/) from solutions/ ...")
    course.generate()
    engine = _engine(args)
    status = 0
    catalogs = ["samples", "integrity"] if args.integrity else ["samples"]
    for assignment in course.assignments():
        for catalog in catalogs:
            samples = course.samples(assignment, catalog)
            if not samples:
                continue
            paths = write_samples(
                course, assignment, course.grading_dir / catalog / assignment, catalog
            )
            print(f"\nAutograding {len(paths)} {catalog} submissions of {assignment}:")
            results = grade_folder(
                course, assignment, paths, regrade=True, engine=engine, progress=True
            )
            expected = {s.name: course.expected_scores(assignment, s) for s in samples}
            print()
            print(format_table(results, expected))
            if any(expected[r.student] != r.scores for r in results):
                status = 1
    print(
        f"\nFeedback (HTML): {course.grading_dir / 'feedback'}"
        "/<submission>/<assignment>/"
    )
    print(f"Gradebook: {course.grading_dir / 'gradebook.db'}")
    print(f"Done in {time.monotonic() - started:.0f} s.")
    return status


def cmd_bundle(args):
    from autograder.bundle import build_bundle

    course = Course(args.root)
    wheel = build_bundle(course, args.out, wheel_url=args.wheel_url)
    print(f"Student bundle in {Path(args.out).resolve()}:")
    print(f"  {wheel.name} (no reference layers, no judge, no hidden cases)")
    print("  assignments/ (student notebooks), README.md")
    return 0


def _graded_course(args):
    """The course with the grading folder `--grading DIR` (default
    build/grading) that the report, roster and export commands read."""
    return Course(args.root, getattr(args, "grading", None))


def cmd_report(args):
    from autograder.report import write_report

    course = _graded_course(args)
    course.check_assignment(args.assignment)
    page = write_report(course, args.assignment, args.out)
    print(f"Report: {page}")
    return 0


def cmd_roster(args):
    from autograder.gradesheet import import_roster

    students = import_roster(_graded_course(args), args.file)
    print(f"{len(students)} student(s) in the gradebook from {args.file}.")
    return 0


def cmd_export(args):
    from autograder.gradesheet import export_grades

    course = _graded_course(args)
    if args.assignment:
        course.check_assignment(args.assignment)
    written = export_grades(course, args.assignment, args.format, args.out)
    print(f"{len(written)} student(s) written to {args.out} ({args.format}).")
    return 0


def cmd_workspace(args):
    course = Course(args.root)
    copied, kept = course.workspace(args.folder)
    for path in copied:
        print(f"  new: {path}")
    if kept:
        print(f"  {len(kept)} file(s) already there, left as they are")
    print(f"Your copy of the assignments: {Path(args.folder).resolve()}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="autograder", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--root", default=None, help="course folder (default: found from here)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build solution notebooks and student versions")
    sub.add_parser("check-sync", help="fail if assignments/ is out of date")
    p = sub.add_parser("samples", help="write an assignment's sample submissions")
    p.add_argument("assignment")
    p.add_argument("out_dir")
    p = sub.add_parser("grade", help="autograde a folder of submissions")
    p.add_argument("assignment")
    p.add_argument(
        "submissions",
        nargs="?",
        help="folder: <student>.ipynb or <student>/[<assignment>/]*.ipynb",
    )
    p.add_argument(
        "--collected",
        action="store_true",
        help="grade what `nbgrader collect` put in the grading folder "
        "(submitted/<student>/<assignment>/), keeping each submission's "
        "timestamp and secret",
    )
    p.add_argument("--out", default=None, help="grading folder (default build/grading)")
    p.add_argument("--no-feedback", action="store_true")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local worker processes (default: what the cores and memory allow)",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        help="grade on an existing Dask cluster, e.g. tcp://host:8786",
    )
    p.add_argument("--only", default="", help="grade only these students: s1,s2")
    p.add_argument("--quiet", action="store_true", help="no line per submission")
    p.add_argument(
        "--regrade",
        action="store_true",
        help="grade every submission again (default: an interrupted or repeated "
        "run keeps the grades of unchanged submissions)",
    )
    p = sub.add_parser("bundle", help="build what students receive")
    p.add_argument(
        "--out",
        default="build/student-bundle",
        help="folder (default build/student-bundle)",
    )
    p.add_argument(
        "--wheel-url",
        default=None,
        help="where you host the wheel (its URL, or its folder ending with /): "
        "the notebooks' first cells then say `%%pip install URL`",
    )
    p = sub.add_parser("demo", help="grade the bundled sample submissions")
    p.add_argument("--workers", type=int, default=None, help="local worker processes")
    p.add_argument("--scheduler", default=None, help="an existing Dask cluster")
    p.add_argument(
        "--out", default="build/demo", help="grading folder (default build/demo)"
    )
    p.add_argument(
        "--integrity",
        action="store_true",
        help="also grade the integrity catalog (submissions that tamper)",
    )
    p = sub.add_parser("report", help="an HTML report of an assignment's grading")
    p.add_argument("assignment")
    p.add_argument("--grading", default=None, help="grading folder (build/grading)")
    p.add_argument("--out", default=None, help="page (GRADING/report-A.html)")
    p = sub.add_parser("roster", help="import a class roster into the gradebook")
    p.add_argument("action", choices=["import"])
    p.add_argument("file", help="CSV: id, first_name, last_name, email, lms_user_id")
    p.add_argument("--grading", default=None, help="grading folder (build/grading)")
    p = sub.add_parser("export", help="grades as CSV for Canvas, Moodle or a sheet")
    p.add_argument("assignment", nargs="?", help="one assignment (default: all)")
    p.add_argument("--format", choices=["plain", "canvas", "moodle"], default="plain")
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--grading", default=None, help="grading folder (build/grading)")
    p = sub.add_parser(
        "workspace", help="your own copy of the assignments to work in (never replaced)"
    )
    p.add_argument("folder", nargs="?", default="work", help="folder (default work)")
    args = parser.parse_args(argv)
    handler = {
        "build": cmd_build,
        "check-sync": cmd_check_sync,
        "samples": cmd_samples,
        "grade": cmd_grade,
        "bundle": cmd_bundle,
        "demo": cmd_demo,
        "report": cmd_report,
        "roster": cmd_roster,
        "export": cmd_export,
        "workspace": cmd_workspace,
    }[args.command]
    try:
        return handler(args) or 0
    except PipelineError as error:
        print(f"autograder: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
