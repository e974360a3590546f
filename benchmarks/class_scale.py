"""Grading a class: submissions per minute on 1 and 2 workers, and beyond.

A synthetic class is built from Assignment 1's sample submissions (correct
answers, mistakes, a blank notebook; `--class-size`, at least 60) and graded
through the kit's engine, the way `autograder grade` grades:

1. a local cluster of 1 worker pinned to one core;
2. a local cluster of 2 workers, each pinned to a core of its own
   (goal: at least 1.7x the submissions per minute of 1 worker);
3. an external scheduler: `dask scheduler` and 2 `dask worker` processes
   on 127.0.0.1 (`autograder.loopback`), as on a real cluster.

For each it prints submissions per minute (over the batch, the cluster
already started and warm), the median and 95th percentile of a
submission's time on its worker, the coordinator's time per result
(gradebook and files: it is the one writer), and the scheduler's overhead
per task (round trips of empty tasks on the same cluster). Then the peak
memory of a worker and of its grading kernels, the warm-worker time per
submission of each assignment (`--per-assignment` correct submissions), and
the projection for 1,000 students x 3 assignments on 10 nodes x 8 cores
from those measured figures (goal: under 10 minutes).

    python benchmarks/class_scale.py [--class-size 60] [--per-assignment 4]
"""

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from autograder.engine import Engine
from autograder.job import GradingJob
from autograder.loopback import LoopbackCluster
from autograder.pipeline import Course

FIRST = "01_attention_seq2seq"


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def write_class(course, assignment, folder, size, only_correct=False):
    """`size` submissions cycling through the assignment's samples."""
    samples = course.samples(assignment)
    if only_correct:
        samples = [s for s in samples if s.name in ("solution", "alternative")]
    folder.mkdir(parents=True, exist_ok=True)
    paths, expected = {}, {}
    notebooks = {s.name: course.make_submission(assignment, s) for s in samples}
    for index in range(size):
        sample = samples[index % len(samples)]
        student = f"s{index:04d}-{sample.name}"
        paths[student] = folder / f"{student}.ipynb"
        nbformat.write(notebooks[sample.name], paths[student])
        expected[student] = course.expected_scores(assignment, sample)
    return paths, expected


class Measured:
    """Grade a batch on an engine; keep what each part took."""

    def __init__(self, course, assignment, engine):
        self.worker_seconds, self.write_seconds = [], []
        self.engine, self.grade = engine, engine.grade
        engine.grade = self._grade
        self.job = GradingJob(
            course, assignment, engine, log=lambda _: None, regrade=True
        )
        write = self.job.records.write

        def timed_write(*args, **kwargs):
            started = time.perf_counter()
            try:
                return write(*args, **kwargs)
            finally:
                self.write_seconds.append(time.perf_counter() - started)

        self.job.records.write = timed_write

    def _grade(self, tasks):
        for task, found, error in self.grade(tasks):
            if found:
                self.worker_seconds.append(found["worker_seconds"])
            yield task, found, error

    def run(self, paths, expected):
        self.job.course.prepare_grading([self.job.assignment])
        self.engine.prepare(self.job.course, self.job.assignment)
        warm = dict(list(paths.items())[: self.engine.worker_count()])
        GradingJob(  # every worker warm (imports, its course prepared)
            self.job.course, self.job.assignment, self.engine, log=lambda _: None
        ).run(warm)
        self.worker_seconds.clear()
        started = time.perf_counter()
        results = self.job.run(paths)
        wall = time.perf_counter() - started
        self.engine.grade = self.grade
        wrong = [r.student for r in results if r.scores != expected[r.student]]
        assert not wrong, f"graded differently than expected: {wrong}"
        return wall, len(results) / wall * 60


def overhead_per_task(engine, count=200):
    """Seconds per empty task, round trip, on this engine's cluster."""
    client = engine.client
    client.gather(client.map(_nothing, range(8), pure=False))  # warm
    started = time.perf_counter()
    client.gather(client.map(_nothing, range(count), pure=False))
    return (time.perf_counter() - started) / count


def _nothing(x):
    return x


def _start_sampling(dask_worker):
    """Sample the worker's and its kernels' memory every 0.2 s."""
    import threading

    import psutil

    me = psutil.Process()
    state = {"kernel": 0, "total": 0, "stop": threading.Event()}

    def sample():
        while not state["stop"].wait(0.2):
            try:
                kids = [k.memory_info().rss for k in me.children(recursive=True)]
                total = me.memory_info().rss + sum(kids)
            except psutil.Error:
                continue
            state["kernel"] = max(state["kernel"], max(kids, default=0))
            state["total"] = max(state["total"], total)

    threading.Thread(target=sample, daemon=True).start()
    dask_worker.kit_memory = state


def _peak_memory(dask_worker):
    """GiB: the worker process's peak, its largest kernel process's, and the
    peak of the worker with all its processes."""
    state = dask_worker.kit_memory
    state["stop"].set()
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return own, state["kernel"] / 2**30, state["total"] / 2**30


def report(label, wall, rate, measured, overhead):
    ws, cs = measured.worker_seconds, measured.write_seconds
    print(
        f"{label}: {len(ws)} submissions in {wall:.0f} s, {rate:.1f} per minute; "
        f"per submission on its worker median {statistics.median(ws):.1f} s, "
        f"p95 {percentile(ws, 95):.1f} s; coordinator per result "
        f"{statistics.median(cs) * 1000:.0f} ms (median); scheduler overhead "
        f"per task {overhead * 1000:.1f} ms",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--class-size", type=int, default=60)
    parser.add_argument("--per-assignment", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kit-class-") as scratch:
        scratch = Path(scratch)
        course = Course(grading_dir=scratch / "grading")
        paths, expected = write_class(course, FIRST, scratch / "class", args.class_size)
        print(
            f"A synthetic class of {len(paths)} submissions of {FIRST} "
            f"({len(course.samples(FIRST))} samples, cycled)",
            flush=True,
        )
        rates, figures = {}, {}
        for workers in (1, 2):
            with Engine(workers=workers, pin=True) as engine:
                engine.client.run(_start_sampling)
                measured = Measured(course, FIRST, engine)
                wall, rate = measured.run(paths, expected)
                overhead = overhead_per_task(engine)
                memory = engine.client.run(_peak_memory)
                rates[workers] = rate
                figures[workers] = (measured, overhead)
                report(
                    f"local cluster, {workers} worker(s) pinned",
                    wall,
                    rate,
                    measured,
                    overhead,
                )
        print(
            f"  2 workers / 1 worker: x{rates[2] / rates[1]:.2f} submissions "
            "per minute (goal >= x1.7)"
        )
        for address, (own, kernel, total) in sorted(memory.items()):
            print(
                f"  peak memory of worker {address}: {own:.2f} GiB itself, "
                f"{kernel:.2f} GiB its largest grading kernel process, "
                f"{total:.2f} GiB worker and kernel together ({FIRST})"
            )
        with (
            LoopbackCluster(workers=2, pin=True) as cluster,
            Engine(scheduler=cluster.address) as engine,
        ):
            engine.client.run(_start_sampling)
            measured = Measured(course, FIRST, engine)
            wall, rate = measured.run(paths, expected)
            overhead = overhead_per_task(engine)
            report(
                "external scheduler on loopback, 2 workers",
                wall,
                rate,
                measured,
                overhead,
            )
            per_assignment = {FIRST: statistics.median(measured.worker_seconds)}
            for assignment in course.assignments():
                if assignment == FIRST:
                    continue
                some, right = write_class(
                    course,
                    assignment,
                    scratch / assignment,
                    args.per_assignment,
                    only_correct=True,
                )
                extra = Measured(course, assignment, engine)
                extra.run(some, right)
                per_assignment[assignment] = statistics.median(extra.worker_seconds)
            memory = engine.client.run(_peak_memory)
        for address, (own, kernel, total) in sorted(memory.items()):
            print(
                f"  peak memory of worker {address}: {own:.2f} GiB itself, "
                f"{kernel:.2f} GiB its largest grading kernel process, "
                f"{total:.2f} GiB worker and kernel together (all assignments)"
            )
        print("Warm worker, median seconds per submission:")
        for assignment, seconds in per_assignment.items():
            print(f"  {assignment}: {seconds:.1f} s")
        efficiency = rates[2] / rates[1] / 2
        workers, students = 10 * 8, 1000
        grading = sum(students * s for s in per_assignment.values()) / (
            workers * efficiency
        )
        coordinator = (
            3 * students * statistics.median(figures[2][0].write_seconds)
            + 3 * students * figures[2][1]
        )
        projection = max(grading, coordinator)
        print(
            f"Projection, {students} students x 3 assignments on 10 nodes x 8 "
            f"cores ({workers} workers at the measured {efficiency:.0%} "
            f"efficiency per added worker): grading {grading / 60:.1f} min, the "
            f"coordinator's writes and scheduling {coordinator / 60:.1f} min, "
            f"overlapped: {projection / 60:.1f} min (goal < 10 min)"
        )


if __name__ == "__main__":
    sys.exit(main())
