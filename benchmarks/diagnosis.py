"""Feedback that diagnoses: how often a verdict names the student's mistake.

Each assignment's mistake catalog, `solutions/<assignment>/mistakes.toml`
(realistic mistakes that the judge's list of known variants, `Spec.mistakes`,
does not hold), is graded through the real pipeline, as `autograder grade`
grades, with the solution beside it as a control. Each mistake says which
exercise its bug is in, the `words` a message naming it would contain, and
the lexicon `topics` (below) a right diagnosis may mention. Per mistake:

* caught: its own exercise scored below full points;
* named: a failing message of its own exercise contains one of its words
  (case-insensitive) in what it says about the mistake: not in its first
  line (the check and the failed case's title), not in the inputs it lists
  or the shapes of the names on a failing line (`At that line: ...`), which
  name arguments and variables, not in the recipe it ends with when it
  names no mistake ("The exercise asks for: ...", the same for every
  mistake of the exercise). The JSON also has the share named anywhere in
  the message (`named_anywhere`);
* wrong hint: a `Hint:` line of any failing message, of its own exercise or
  of another, names a different mistake: it mentions a lexicon topic that is
  not among the mistake's topics, and none of the mistake's words. A hint is
  classified by its topics: a keyword of the lexicon counts where it starts
  a word (`transpos` in "transposed", not `head` in "ahead"); a hint that
  contains one of the mistake's words names it, whatever else it mentions;
  one that mentions only the mistake's topics (or none) is on topic.
  `Observed:` lines (what the output shows) and the recipe are not hints.
  Each wrong hint is labelled by where it comes from: a known variant's
  hint (`variant`), the check's generic hint (`generic`), or a mistake the
  checks read from the output itself (`evidence`, `autograder.checks.evidence`);
* cascade: the points lost in the exercises other than its own (a part's
  bug reaching the checks of the layers built from it); of those, the
  points lost where the composite's message says it cannot be judged apart
  from the part (the part crashes inside it, or does not take its weights)
  are counted apart, and the rest (`cascade_judgeable`, goal 0) is what a
  composite lost although its wiring could be judged.

Per assignment it prints the share caught, the share named (goal >= 80 %),
the share with a wrong hint (goal 0) and the cascade points, total and
largest (goal 0 wherever the composite's wiring is right); then one line per
mistake; and it writes the figures to `build/benchmarks/diagnosis.json`.
Cases are those of one fixed draw (`--draw`), so a run repeats.

    python benchmarks/diagnosis.py [--assignment A ...] [--workers N] [--draw D]
"""

import argparse
import json
import os
import re
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "benchmarks" / "diagnosis.json"
CATALOG = "mistakes"
RECIPE = "The exercise asks for:"
#: What a composite's message says when it cannot be judged apart from a part.
APART_WORDS = "cannot be judged until"
SHAPES = "At that line:"
CONTROL = "control-solution"
#: The draw the tests grade with (tests/conftest.py): figures that repeat.
DRAW = 20261129

#: topic -> keywords (lower case). A hint mentions a topic when one of its
#: keywords starts a word of the hint.
LEXICON = {
    "mask": ("mask",),
    "padding": ("padding", "padded", "pad_id"),
    "causal": ("causal", "future", "diagonal", "next token", "next one"),
    "scale": ("sqrt", "scale", "scaling", "square root"),
    "axis": ("axis", "axes"),
    "transpose": ("transpos", "swap"),
    "order": ("order", "concatenat", "[a_t; s_t]", "[x_t; c_t]"),
    "shape": ("shape", "broadcast", "expand_dims"),
    "product": ("matmul", "ops.dot", "np.dot", "tensordot", "einsum", "matrix product"),
    "softmax": ("softmax", "sum to 1", "sums to 1", "distribution"),
    "activation": ("tanh", "relu", "gelu", "activation"),
    "output": ("logits", "probabilit"),
    "state": ("state", "s_{t-1}"),
    "context": ("context", "cross-attention", "cross_attention", "encoder's output"),
    "rnn": ("grucell", "gru cell", "reset_after"),
    "projection": ("projection", "project", "dense", "bias", "kernel", "w_o", "b_o"),
    "heads": ("head",),
    "dropout": ("dropout", "at inference", "training=true"),
    "residual": ("residual",),
    "normalisation": (
        "layernorm",
        "layer norm",
        "normalis",
        "normaliz",
        "epsilon",
        "post-norm",
        "pre-norm",
    ),
    "feed_forward": ("feed-forward", "feed forward", "ffn"),
    "stack": ("num_layers", "each block", "every block", "previous block"),
    "positional": ("positional", "sine", "cosine", "sin(", "cos(", "angle", "10000"),
    "embedding": ("embedding", "mask_zero"),
    "learning_rate": (
        "warm-up",
        "warmup",
        "learning rate",
        "schedule",
        "step + 1",
        "steps from",
    ),
    "smoothing": ("smoothing",),
    "loss": ("cross-entropy", "from_logits", "from logits", "real tokens", "average"),
    "decoding": (
        "decoding",
        "greedy",
        "end token",
        "end_id",
        "start token",
        "feed back",
        "fed back",
        "argmax",
    ),
    "numerics": ("overflow", "underflow", "nan", "-inf", "0/0", "stabl", "infinit"),
}
_PATTERNS = {
    topic: re.compile("|".join(rf"(?<![a-z0-9_]){re.escape(k)}" for k in keywords))
    for topic, keywords in LEXICON.items()
}


def topics_of(text):
    """The lexicon topics a text mentions, in the lexicon's order."""
    text = text.lower()
    return [topic for topic, pattern in _PATTERNS.items() if pattern.search(text)]


def hint_lines(message):
    return [
        line.removeprefix("Hint:").strip()
        for line in message.splitlines()
        if line.startswith("Hint:")
    ]


def names_it(text, words):
    text = text.lower()
    return any(word in text for word in words)


def classify_hint(hint, mistake):
    """`None` when the hint names the mistake or stays on its topics, else
    the topics it mentions that the mistake's diagnosis would not."""
    if names_it(hint, mistake["words"]):
        return None
    foreign = [t for t in topics_of(hint) if t not in mistake["topics"]]
    return foreign or None


def catalog(course, assignment):
    """name -> the catalog's entry (exercise, words, topics) with its Sample."""
    path = course.solutions_dir / assignment / f"{CATALOG}.toml"
    entries = tomllib.loads(path.read_text(encoding="utf-8"))["sample"]
    samples = {s.name: s for s in course.samples(assignment, CATALOG)}
    return {
        e["name"]: {
            "exercise": e["exercise"],
            "words": [w.lower() for w in e["words"]],
            "topics": list(e["topics"]),
            "description": e["description"],
            "sample": samples[e["name"]],
        }
        for e in entries
    }


def hint_sources(assignment_exercises):
    """hint text -> "variant" or "generic", from the judge's specs."""
    from autograder import judge

    sources = {}
    for exercise in assignment_exercises:
        try:
            spec = judge.spec(f"check_{exercise}")
        except KeyError:
            continue
        for _, hint, _ in spec.mistakes:
            sources.setdefault(hint.strip(), "variant")
        if spec.generic_hint:
            sources.setdefault(spec.generic_hint.strip(), "generic")
    return sources


def diagnosis_text(message):
    """What a message says about the mistake: without its first line (the
    check and the case's title), the inputs, the failing line's shapes and
    the recipe."""
    kept, inputs = [], False
    for line in message.splitlines()[1:]:
        if line == "Inputs:":
            inputs = True
            continue
        if inputs and line.startswith("  "):
            continue
        inputs = False
        if not line.startswith((RECIPE, SHAPES)):
            kept.append(line)
    return "\n".join(kept)


def telling(message):
    """The line to show for a message: its first `Hint:`, else its first
    `Observed:`, else the report's telling line."""
    from autograder.report import telling_line

    for prefix in ("Hint:", "Observed:"):
        for line in message.splitlines():
            if line.startswith(prefix):
                return line
    return telling_line(message) if message else ""


def measure(mistake, result, failures, sources):
    """The figures of one graded mistake."""
    own = mistake["exercise"]
    lost = {
        exercise: result.max_scores[exercise] - result.scores.get(exercise, 0)
        for exercise in result.max_scores
    }
    own_failures = [f for f in failures if f.exercise == own]
    own_failures.sort(key=lambda f: not f.visible)  # a whole message first
    wrong = []
    for failure in failures:
        for hint in hint_lines(failure.message):
            foreign = classify_hint(hint, mistake)
            if foreign:
                wrong.append(
                    {
                        "exercise": failure.exercise,
                        "topics": foreign,
                        "source": sources.get(hint, "evidence"),
                        "hint": hint,
                    }
                )
    message = own_failures[0].message if own_failures else ""
    words = mistake["words"]
    return {
        "exercise": own,
        "caught": lost.get(own, 0) > 0,
        "named": any(names_it(diagnosis_text(f.message), words) for f in own_failures),
        "named_anywhere": any(names_it(f.message, words) for f in own_failures),
        "wrong_hint": bool(wrong),
        "wrong_hints": wrong,
        "own_points_lost": lost.get(own, 0),
        "cascade_points": sum(v for e, v in lost.items() if e != own),
        "cascade": {e: v for e, v in lost.items() if e != own and v},
        # points lost in a composite whose message says it cannot be judged
        # apart from a part (the part crashes in it, or does not take its
        # weights): the rest is lost where the wiring could be judged
        "cascade_unjudgeable": sum(
            v
            for e, v in lost.items()
            if e != own
            and v
            and any(f.exercise == e and APART_WORDS in f.message for f in failures)
        ),
        "first_line": message.strip().splitlines()[0] if message.strip() else "",
        "telling_line": telling(message),
        "note": result.note,
        "messages": [
            {"grade_id": f.grade_id, "ename": f.ename, "message": f.message}
            for f in failures
        ],
    }


def grade_catalog(course, assignment, engine, scratch, only=()):
    """Grade the catalog and the control; return (figures, control_ok).

    `only`: grade only the mistakes whose name or exercise contains one of
    these strings (all when empty)."""
    import nbformat

    from autograder.cli import grade_folder
    from autograder.pipeline import Sample
    from autograder.report import read_failures

    mistakes = {
        name: mistake
        for name, mistake in catalog(course, assignment).items()
        if not only or any(o in name or o in mistake.get("exercise", "") for o in only)
    }
    folder = scratch / "submissions" / assignment
    folder.mkdir(parents=True)
    paths = {}
    control = Sample(CONTROL, "the solution", "solution", [], {})
    for name, sample in [(CONTROL, control)] + [
        (n, m["sample"]) for n, m in mistakes.items()
    ]:
        paths[name] = folder / f"{name}.ipynb"
        nbformat.write(course.make_submission(assignment, sample), paths[name])
    results = grade_folder(
        course, assignment, paths, feedback=False, log=lambda _: None, engine=engine
    )
    by_student = {r.student: r for r in results}
    full = course.exercises(assignment)
    control_ok = by_student[CONTROL].scores == full
    sources = hint_sources(full)
    figures = {}
    for name, mistake in mistakes.items():
        failures, problem = read_failures(course, assignment, name)
        entry = measure(mistake, by_student[name], failures, sources)
        if problem:
            entry["note"] = f"{entry['note']} {problem}".strip()
        figures[name] = entry
    return figures, control_ok


def summarise(figures):
    count = len(figures)
    cascades = [f["cascade_points"] for f in figures.values()]

    def share(key):
        return sum(f[key] for f in figures.values()) / count if count else 0.0

    return {
        "mistakes": count,
        "caught": share("caught"),
        "named": share("named"),
        "named_anywhere": share("named_anywhere"),
        "wrong_hint": share("wrong_hint"),
        "wrong_hint_by_source": {
            source: sum(
                any(w["source"] == source for w in f["wrong_hints"])
                for f in figures.values()
            )
            for source in ("variant", "generic", "evidence")
        },
        "cascade_total": sum(cascades),
        "cascade_judgeable": sum(
            f["cascade_points"] - f.get("cascade_unjudgeable", 0)
            for f in figures.values()
        ),
        "cascade_max": max(cascades, default=0),
        "cascading": sum(c > 0 for c in cascades),
    }


def table(rows):
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def cut(text, width=72):
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def print_mistakes(assignment, figures):
    rows = [
        ["mistake", "exercise", "caught", "named", "wrong hint", "cascade", "message"]
    ]
    for name, f in figures.items():
        wrong = f["wrong_hints"][0] if f["wrong_hints"] else None
        rows.append(
            [
                name,
                f["exercise"],
                "yes" if f["caught"] else "NO",
                "yes" if f["named"] else "no",
                f"{','.join(wrong['topics'])} ({wrong['source']}, {wrong['exercise']})"
                if wrong
                else "-",
                f"{f['cascade_points']:g}",
                cut(f["telling_line"] or f["note"] or "(no failing message)"),
            ]
        )
    print(f"\n{assignment}: one line per mistake", flush=True)
    print(table(rows), flush=True)


def print_summary(summaries, seconds):
    rows = [
        [
            "assignment",
            "mistakes",
            "caught",
            "named (goal >= 80%)",
            "wrong hint (goal 0)",
            "wrong hint from variant/generic/evidence",
            "cascade points total",
            "where wiring judged (goal 0)",
            "max",
            "seconds",
        ]
    ]
    for assignment, s in summaries.items():
        rows.append(
            [
                assignment,
                s["mistakes"],
                f"{s['caught']:.0%}",
                f"{s['named']:.0%}",
                f"{s['wrong_hint']:.0%}",
                "/".join(str(n) for n in s["wrong_hint_by_source"].values()),
                f"{s['cascade_total']:g} ({s['cascading']} mistakes)",
                f"{s['cascade_judgeable']:g}",
                f"{s['cascade_max']:g}",
                f"{seconds[assignment]:.0f}",
            ]
        )
    print("\nDiagnosis of the mistake catalogs", flush=True)
    print(table(rows), flush=True)


def commit():
    """The commit graded, with "+changes" when the tree differs from it."""
    import subprocess

    def git(*args):
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    return (
        f"{head}+changes" if git("status", "--porcelain", "--", "autograder") else head
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--assignment",
        action="append",
        help="grade this assignment's catalog (repeatable; default: all)",
    )
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--draw", type=int, default=DRAW, help="the cases' draw")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="grade only the mistakes whose name or exercise contains this "
        "(repeatable); the figures then go to --out, not the benchmark's file",
    )
    parser.add_argument("--out", type=Path, default=None, help="the JSON file")
    args = parser.parse_args()
    os.environ["KIT_CASE_DRAW"] = str(args.draw)  # before any worker starts

    from autograder.engine import Engine
    from autograder.pipeline import Course

    started = time.perf_counter()
    course = Course()
    assignments = args.assignment or [
        a
        for a in course.assignments()
        if (course.solutions_dir / a / f"{CATALOG}.toml").is_file()
    ]
    for assignment in assignments:
        course.check_assignment(assignment)
    results, summaries, seconds, controls = {}, {}, {}, {}
    with (
        tempfile.TemporaryDirectory(prefix="kit-diagnosis-") as scratch,
        Engine(workers=args.workers) as engine,
    ):
        scratch = Path(scratch)
        course = Course(grading_dir=scratch / "grading")
        for assignment in assignments:
            began = time.perf_counter()
            figures, control_ok = grade_catalog(
                course, assignment, engine, scratch, args.only
            )
            seconds[assignment] = time.perf_counter() - began
            controls[assignment] = control_ok
            if not control_ok:
                print(
                    f"WARNING: the solution of {assignment} did not score full "
                    "points: the cascade figures are not to be trusted",
                    flush=True,
                )
            results[assignment] = figures
            summaries[assignment] = summarise(figures)
            print_mistakes(assignment, figures)
    print_summary(summaries, seconds)
    total = time.perf_counter() - started
    print(f"\n{sum(len(f) for f in results.values())} mistakes graded in {total:.0f} s")
    out = args.out or (OUT if not args.only else OUT.with_name("diagnosis-only.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "draw": args.draw,
                "commit": commit(),
                "seconds": total,
                "lexicon": LEXICON,
                "assignments": {
                    a: {
                        "summary": summaries[a],
                        "control_full_points": controls[a],
                        "seconds": seconds[a],
                        "mistakes": results[a],
                    }
                    for a in assignments
                },
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    print(f"Figures: {out} (graded at {commit()}, draw {args.draw})")
    return 0 if all(controls.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
