"""The instructor's report page: one assignment's grading on one page.

`autograder report A [--out FILE]` calls `write_report(course, A, out)`
after `autograder grade`: it reads the grading folder (never the
submissions) and writes one self-contained HTML file, by default
`<grading dir>/report-<A>.html`, that opens from a laptop or an e-mail with
no network and no JavaScript (the figures are inline PNGs). It shows:

* the distribution of totals and of each exercise's points, with the
  number of submissions, their mean and median;
* for each exercise, its most frequent mistakes, each counted once per
  student, with one example of the message the student saw;
* the submissions with a note (time-outs, integrity, crashes, not graded);
* the grading time per submission and every student's points.

The mistakes are read from the autograded notebooks: a failed graded test
cell holds an `error` output whose `ename` (CheckFailed, BorrowedAnswer,
IntegrityError, NotImplementedError, ...) and `evalue` are the kit's
verdict. Everything in those messages and in the grades file may come from
a student, so the page is rendered by Jinja2 with autoescaping on: no text
reaches the page unescaped.

`summarise(course, A)` returns the same data as a `Summary`, for tests and
for anyone who wants the numbers without the page.
"""

import base64
import collections
import dataclasses
import datetime
import io
import json
import re
import statistics
from pathlib import Path

import jinja2
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from autograder.pipeline import GradeResult, PipelineError, exercise_of

__all__ = ["Failure", "Mistake", "Summary", "summarise", "write_report"]

#: Mistakes listed per exercise; the rest are counted in one line.
TOP_MISTAKES = 8
#: Above this many submissions the timing chart has no names under its bars.
MAX_NAMED_BARS = 40
HIDDEN_SHORTENED = "(shortened: hidden test)"
FULL_COLOUR, LOST_COLOUR = "#4e9a6b", "#d9822b"
TIME_COLOUR, LINE_COLOUR = "#7b96b5", "#33475b"


@dataclasses.dataclass
class Failure:
    """One error output of a failed graded test cell."""

    student: str
    grade_id: str
    ename: str
    message: str

    @property
    def exercise(self):
        return exercise_of(self.grade_id)

    @property
    def visible(self):
        """A visible test's message is whole; a hidden test's may be cut to
        its first line, so it makes a poorer example."""
        return not self.grade_id.startswith("hidden_")

    @property
    def shortened(self):
        """Cut to its first line by the grader (an error in a hidden test)."""
        return self.message.endswith(HIDDEN_SHORTENED)


@dataclasses.dataclass
class Mistake:
    """One kind of failure of one exercise, and the students who made it."""

    exercise: str
    ename: str
    label: str  # the line naming the mistake (the check's hint, most often)
    students: list
    example: Failure

    @property
    def count(self):
        return len(self.students)


@dataclasses.dataclass
class Summary:
    """What the report shows, as data."""

    assignment: str
    max_scores: dict  # exercise -> points, in the notebook's order
    results: list  # GradeResult, by student
    mistakes: dict  # exercise -> [Mistake], most frequent first
    unread: dict  # student -> why their autograded notebook was not read

    @property
    def totals(self):
        return [r.total for r in self.results]

    @property
    def max_total(self):
        return sum(self.max_scores.values())


# ------------------------------------------------------------------ data


def summarise(course, assignment):
    """Read `assignment`'s grades and autograded notebooks from the course's
    grading folder into a `Summary`."""
    results = load_results(course, assignment)
    failures, unread = [], {}
    for result in results:
        found, problem = read_failures(course, assignment, result.student)
        failures += found
        if problem:
            unread[result.student] = problem
    return Summary(
        assignment=assignment,
        max_scores=course.exercises(assignment),
        results=results,
        mistakes=group_mistakes(failures),
        unread=unread,
    )


def load_results(course, assignment):
    """The results `autograder grade` kept in `grades-<assignment>.json`."""
    path = course.grading_dir / f"grades-{assignment}.json"
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(
            f"No grades of {assignment} in {course.grading_dir}: "
            f"run `autograder grade {assignment} ...` first."
        ) from None
    if not rows:
        raise PipelineError(f"{path} lists no submission: nothing to report.")
    return sorted((GradeResult(**row) for row in rows), key=lambda r: r.student)


def read_failures(course, assignment, student):
    """`(failures, problem)` of one student's autograded notebook; a
    submission that was not graded has no notebook, which is a problem to
    show, not an error."""
    path = (
        course.grading_dir
        / "autograded"
        / student
        / assignment
        / course.notebook_name(assignment)
    )
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [], "no autograded notebook"
    except (OSError, ValueError) as error:
        return [], f"autograded notebook unreadable ({type(error).__name__})"
    return without_repeats(list(failures_in(notebook, student))), ""


def failures_in(notebook, student):
    """The error outputs of the notebook's failed graded test cells."""
    for cell in notebook.get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if not meta.get("grade") or meta.get("solution"):
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                yield Failure(
                    student,
                    str(meta.get("grade_id", "")),
                    str(output.get("ename", "")),
                    str(output.get("evalue", "")),
                )


def without_repeats(failures):
    """One student's failures without the shortened hidden-test messages
    that repeat a visible test's failure of the same exercise: a hidden test
    shows only the first line of an error the student's code raised (cut at
    160 characters), which would count the same mistake twice under two
    names. A shortened message whose visible test did not fail that way is
    kept: it is all there is."""
    seen = {(f.exercise, f.ename) for f in failures if f.visible}
    return [f for f in failures if not (f.shortened and (f.exercise, f.ename) in seen)]


def group_mistakes(failures):
    """exercise -> [Mistake], most frequent first.

    Failures with the same `mistake_key` are one mistake, counted once per
    student however many of the exercise's tests report it (the visible and
    the hidden test usually both do). The example is a visible test's
    message when there is one.
    """
    found = {}
    for failure in failures:
        key = (failure.exercise, *mistake_key(failure))
        mistake = found.get(key)
        if mistake is None:
            label = telling_line(failure.message)
            found[key] = Mistake(
                failure.exercise, failure.ename, label, [failure.student], failure
            )
            continue
        if failure.student not in mistake.students:
            mistake.students.append(failure.student)
        if failure.visible and not mistake.example.visible:
            mistake.example = failure
            mistake.label = telling_line(failure.message)
    grouped = collections.defaultdict(list)
    for mistake in sorted(found.values(), key=lambda m: (-m.count, m.ename, m.label)):
        grouped[mistake.exercise].append(mistake)
    return dict(grouped)


def mistake_key(failure):
    """`(ename, normalised line)`: what stays the same when two students make
    the same mistake. Numbers (case numbers, indices, differences, line
    numbers) and parenthesised remarks (where the code raised, "shortened:
    hidden test") differ between students and are dropped."""
    line = re.sub(r"\([^()]*\)", "", telling_line(failure.message))
    line = re.sub(r"\d+(\.\d+)?", "#", line)
    return failure.ename, " ".join(line.lower().split())


def telling_line(message):
    """The line of a verdict that names the mistake: the check's `Hint:`,
    else its last line of prose (not the inputs or the output comparisons),
    else its first line without the check's name."""
    lines = message.strip().splitlines() or [""]
    for line in lines:
        if line.startswith("Hint:"):
            return line.removeprefix("Hint:").strip()
    prose = [
        line
        for line in lines[1:]
        if line.strip()
        and not line[0].isspace()
        and line != "Inputs:"
        and not line.startswith("Output `")
    ]
    if prose:
        return prose[-1].strip()
    first = re.sub(r"^check_\w+: ", "", lines[0])
    return first.replace(HIDDEN_SHORTENED, "").strip()


# --------------------------------------------------------------- figures


def png_uri(figure):
    """The figure as a `data:` URI, so the page needs no other file."""
    FigureCanvasAgg(figure)  # Agg: no display, no pyplot state shared
    buffer = io.BytesIO()
    figure.savefig(
        buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None}
    )
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def totals_figure(summary):
    """How many submissions got each total, with the mean and median."""
    figure = Figure(figsize=(7, 2.6))
    ax = figure.subplots()
    points_bars(ax, summary.totals, summary.max_total)
    totals = summary.totals
    ax.axvline(statistics.mean(totals), color=LINE_COLOUR, ls="--", label="mean")
    ax.axvline(statistics.median(totals), color=LINE_COLOUR, label="median")
    ax.set(xlabel=f"total (of {summary.max_total:g})", ylabel="submissions")
    legend_above(ax)
    return figure


def exercises_figure(summary, columns=4):
    """One small chart per exercise of how many submissions got each
    number of points."""
    rows = -(-len(summary.max_scores) // columns)
    figure = Figure(figsize=(2.6 * columns, 2.1 * rows), layout="constrained")
    axes = list(figure.subplots(rows, columns, squeeze=False).flat)
    for ax, (exercise, top) in zip(axes, summary.max_scores.items(), strict=False):
        points_bars(ax, [r.scores.get(exercise, 0) for r in summary.results], top)
        ax.set_ylim(0, len(summary.results))
        ax.set_title(f"{exercise} (of {top:g})", fontsize=9)
    for ax in axes[len(summary.max_scores) :]:  # the grid's unused cells
        ax.set_visible(False)
    return figure


def points_bars(ax, points, top):
    """A bar per number of points, its height the number of submissions;
    full marks in green, so the eye finds what is missing."""
    counts = collections.Counter(points)
    colours = [FULL_COLOUR if p >= top else LOST_COLOUR for p in counts]
    ax.bar(list(counts), list(counts.values()), width=0.7, color=colours)
    ax.set_xlim(-0.7, top + 0.7)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    tidy(ax)


def timing_figure(summary):
    """Grading time per submission, sorted, with the median: the slow
    submissions stand out at the right."""
    ranked = sorted(summary.results, key=lambda r: r.seconds)
    figure = Figure(figsize=(7, 2.8))
    ax = figure.subplots()
    positions = range(len(ranked))
    ax.bar(positions, [r.seconds for r in ranked], color=TIME_COLOUR)
    median = statistics.median(r.seconds for r in ranked)
    ax.axhline(median, color=LINE_COLOUR, ls="--", label=f"median {median:.1f} s")
    if len(ranked) <= MAX_NAMED_BARS:
        names = [r.student for r in ranked]
        ax.set_xticks(positions, names, rotation=40, ha="right", parse_math=False)
    else:
        ax.set_xticks([])
    ax.set(ylabel="seconds", xlabel="submissions, fastest to slowest")
    legend_above(ax)
    tidy(ax)
    return figure


def legend_above(ax):
    """The legend above the plot, where no bar can hide it."""
    ax.legend(
        frameon=False, fontsize=8, ncols=2, loc="lower left", bbox_to_anchor=(0, 1)
    )


def tidy(ax):
    """Less ink: no box around the plot, small tick labels."""
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=8)


# ------------------------------------------------------------------ page


TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Grading report: {{ s.assignment }}</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; color: #222; max-width: 1100px;
       margin: 2em auto; padding: 0 1.5em; }
h1 { margin-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
h3 { margin: 1.4em 0 .4em; font-size: 1.05em; }
.meta, .how { color: #555; } .how { background: #f4f6f8; padding: .6em 1em; }
.stats { display: flex; gap: 1em; flex-wrap: wrap; margin: 1em 0; }
.stats div { background: #f4f6f8; padding: .5em 1em; border-radius: 4px; }
.stats b { display: block; font-size: 1.4em; }
img { max-width: 100%; display: block; margin: .5em 0; }
table { border-collapse: collapse; margin: .5em 0; font-size: 14px; }
th, td { border-bottom: 1px solid #e3e3e3; padding: .3em .7em; text-align: left;
         vertical-align: top; }
th { background: #f4f6f8; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.lost { background: #fbe9d8; }
td.name { white-space: nowrap; }
th.turned { writing-mode: vertical-rl; transform: rotate(180deg); white-space: nowrap;
            vertical-align: bottom; padding: .5em .3em; font-weight: 500; }
table.mistakes { width: 100%; table-layout: fixed; }
table.mistakes col.count { width: 5.5em; } table.mistakes col.verdict { width: 11em; }
code, pre { font-family: ui-monospace, monospace; font-size: 13px; }
.ename { font-family: ui-monospace, monospace; font-size: 12px;
         background: #eef; padding: 0 .3em; border-radius: 3px; }
pre { white-space: pre-wrap; background: #f8f8f8; padding: .6em; margin: .3em 0; }
summary { cursor: pointer; color: #35608f; font-size: 13px; margin-top: .2em; }
</style></head><body>
<h1>Grading report: {{ s.assignment }}</h1>
<p class="meta">Made from {{ source }} on {{ made }}.</p>
<p class="how"><b>How to read this:</b> totals and points first, then each
exercise's mistakes, counted once per student however many tests report
them (open an example to read the message the student saw; hidden tests show
shortened messages); then notes, grading times and every student's points.
Shaded cells are points lost.</p>
{% set n = s.results | length %}
{% set of_max = " / %g" | format(s.max_total) %}
<div class="stats">
<div><b>{{ n }}</b>submissions</div>
<div><b>{{ "%.1f" | format(mean) }}{{ of_max }}</b>mean total</div>
<div><b>{{ "%g" | format(median) }}{{ of_max }}</b>median total</div>
<div><b>{{ noted | length }}</b>with notes</div>
</div>

<h2>Totals</h2>
<img alt="histogram of the totals" src="{{ figures.totals }}">

<h2>Points per exercise</h2>
<img alt="points per exercise" src="{{ figures.exercises }}">
<table><tr><th>exercise</th><th class="num">points</th><th class="num">mean</th>
<th class="num">full marks</th><th class="num">lost points</th></tr>
{% for row in exercises %}
<tr><td>{{ row.name }}</td><td class="num">{{ "%g" | format(row.top) }}</td>
<td class="num">{{ "%.2f" | format(row.mean) }}</td>
<td class="num">{{ row.full }}</td><td class="num">{{ row.lost }}</td></tr>
{% endfor %}
</table>

<h2>Most frequent mistakes</h2>
{% for row in exercises %}
<h3>{{ row.name }}: {{ row.lost }} of {{ n }} submissions lost points</h3>
{% set mistakes = s.mistakes.get(row.name, []) %}
{% if mistakes %}
<table class="mistakes"><col class="count"><col class="verdict"><col>
<tr><th class="num">students</th><th>verdict</th><th>mistake</th></tr>
{% for m in mistakes[:top] %}
<tr><td class="num">{{ m.count }}</td><td><span class="ename">{{ m.ename }}</span></td>
<td>{{ m.label }}
<details><summary>example: {{ m.example.student }}, {{ m.example.grade_id }}</summary>
<pre>{{ m.example.message }}</pre></details></td></tr>
{% endfor %}
</table>
{% if mistakes | length > top %}
<p>... and {{ mistakes | length - top }} other kinds of failure.</p>
{% endif %}
{% else %}
<p>No failed test.</p>
{% endif %}
{% endfor %}

<h2>Submissions with notes</h2>
{% if noted %}
<table><tr><th>student</th><th class="num">total</th><th>note</th></tr>
{% for r, note in noted %}
<tr><td>{{ r.student }}</td><td class="num">{{ "%g" | format(r.total) }}</td>
<td>{{ note }}</td></tr>
{% endfor %}
</table>
{% else %}
<p>None: every submission was graded to the end without a note.</p>
{% endif %}

<h2>Grading time</h2>
<img alt="grading time per submission" src="{{ figures.timing }}">

<h2>Points per student</h2>
<table><tr><th>student</th>
{% for name in s.max_scores %}<th class="turned">{{ name }}</th>{% endfor %}
<th class="num">total</th><th class="num">seconds</th></tr>
{% for r in s.results %}
<tr><td class="name">{{ r.student }}</td>
{% for name, top in s.max_scores.items() %}
{% set got = r.scores.get(name, 0) %}
<td class="num{{ ' lost' if got < top }}">{{ "%g" | format(got) }}</td>
{% endfor %}
<td class="num">{{ "%g" | format(r.total) }}</td>
<td class="num">{{ "%.1f" | format(r.seconds) }}</td></tr>
{% endfor %}
</table>
</body></html>
"""


# Autoescaped: messages, notes and names come from submissions.
PAGE = jinja2.Environment(
    autoescape=True, trim_blocks=True, lstrip_blocks=True
).from_string(TEMPLATE)


def write_report(course, assignment, out=None):
    """Write `assignment`'s report page (by default
    `<grading dir>/report-<assignment>.html`); return its path."""
    summary = summarise(course, assignment)
    path = Path(out or course.grading_dir / f"report-{assignment}.html")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(summary, course.grading_dir), encoding="utf-8")
    return path


def render(summary, grading_dir):
    """The page's HTML."""
    return PAGE.render(
        s=summary,
        source=f"{grading_dir}/grades-{summary.assignment}.json",
        made=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        mean=statistics.mean(summary.totals),
        median=statistics.median(summary.totals),
        exercises=exercise_rows(summary),
        noted=noted(summary),
        top=TOP_MISTAKES,
        figures={
            "totals": png_uri(totals_figure(summary)),
            "exercises": png_uri(exercises_figure(summary)),
            "timing": png_uri(timing_figure(summary)),
        },
    )


def exercise_rows(summary):
    """Per exercise: points, mean, how many got full marks, how many lost
    points."""
    rows = []
    for name, top in summary.max_scores.items():
        got = [r.scores.get(name, 0) for r in summary.results]
        full = sum(points >= top for points in got)
        rows.append(
            {
                "name": name,
                "top": top,
                "mean": statistics.mean(got),
                "full": full,
                "lost": len(got) - full,
            }
        )
    return rows


def noted(summary):
    """`(result, note)` of each submission with a grading note, or whose
    autograded notebook could not be read (when no note says why)."""
    return [
        (r, r.note or summary.unread[r.student])
        for r in summary.results
        if r.note or r.student in summary.unread
    ]
