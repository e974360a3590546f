"""A Dask cluster of separate processes on this machine, as a real one is.

`LoopbackCluster` starts `dask scheduler` and `dask worker` processes on
127.0.0.1, each worker in a temporary folder of its own and, when asked,
with folders hidden from it (an empty read-only tmpfs over each, in a mount
namespace of its own: `unshare`, root only). Workers started this way share
nothing with the coordinator but the network, as on Slurm or Kubernetes:
the tests prove with it that a batch grades without a shared file system,
and `benchmarks/class_scale.py` measures the scheduler's overhead with it.

    with LoopbackCluster(workers=2, hide=[course, grading]) as cluster:
        engine = Engine(scheduler=cluster.address)
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["LoopbackCluster"]

#: The scheduler's settings for grading (the embedded cluster sets the same).
SCHEDULER_ENV = {
    "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "2",
    "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0",
    "DASK_DISTRIBUTED__WORKER__DAEMON": "False",
    "DASK_DISTRIBUTED__LOGGING__DISTRIBUTED": "error",
}

_HIDE = r"""
for path in "$@"; do
    mount -t tmpfs -o ro,size=64k,mode=755 kit-hidden "$path" || exit 97
done
exec "$KIT_LOOPBACK_COMMAND" "$KIT_LOOPBACK_SCHEDULER" $KIT_LOOPBACK_ARGS
"""


class LoopbackCluster:
    def __init__(self, workers=2, hide=(), folder=None, pin=False, timeout=120):
        self.workers = workers
        self.hide = [str(Path(p).resolve()) for p in hide]
        self.pin = pin
        self.timeout = timeout
        self.folder = Path(folder or tempfile.mkdtemp(prefix="kit-loopback-"))
        self.processes = []
        self.address = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def _dask(self):
        here = Path(sys.executable).with_name("dask")
        return str(here) if here.exists() else shutil.which("dask") or "dask"

    def _env(self, folder):
        env = dict(os.environ, **SCHEDULER_ENV)
        env["TMPDIR"] = str(folder)
        env["PATH"] = os.pathsep.join(
            [str(Path(sys.executable).parent), env.get("PATH", "")]
        )
        return env

    def start(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        scheduler_file = self.folder / "scheduler.json"
        scheduler_dir = self.folder / "scheduler"
        scheduler_dir.mkdir(exist_ok=True)
        self._spawn(
            [
                self._dask(),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--dashboard-address",
                "127.0.0.1:0",
                "--scheduler-file",
                str(scheduler_file),
            ],
            scheduler_dir,
        )
        deadline = time.monotonic() + self.timeout
        while not scheduler_file.exists():
            self._check(deadline, "the scheduler")
        time.sleep(0.2)  # written whole (dask writes it once)
        self.address = json.loads(scheduler_file.read_text())["address"]
        for index in range(self.workers):
            self.add_worker(index)
        self.wait_for_workers(self.workers)
        return self

    def add_worker(self, index):
        folder = self.folder / f"worker-{index}"
        folder.mkdir(exist_ok=True)
        args = (
            f"--name loopback-{index} --nthreads 1 --nworkers 1 --memory-limit 0 "
            f"--no-dashboard --local-directory {folder}"
        )
        env = self._env(folder)
        if self.hide:
            env.update(
                KIT_LOOPBACK_COMMAND=self._dask(),
                KIT_LOOPBACK_SCHEDULER="worker",
                KIT_LOOPBACK_ARGS=f"{self.address} {args}",
            )
            command = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                _HIDE,
                "sh",
                *self.hide,
            ]
        else:
            command = [self._dask(), "worker", self.address, *args.split()]
        if self.pin and hasattr(os, "sched_getaffinity"):
            cores = sorted(os.sched_getaffinity(0))
            command = ["taskset", "-c", str(cores[index % len(cores)]), *command]
        self._spawn(command, folder, env)

    def _spawn(self, command, folder, env=None):
        log = open(folder / "process.log", "ab")  # noqa: SIM115 - kept open
        process = subprocess.Popen(
            command,
            cwd=folder,
            env=env or self._env(folder),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        process.log_file = log
        self.processes.append(process)
        return process

    def _check(self, deadline, what):
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{what} exited ({process.returncode}): " + self.log_tail(process)
                )
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not start in {self.timeout} s")
        time.sleep(0.2)

    def log_tail(self, process, lines=15):
        path = Path(process.log_file.name)
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def wait_for_workers(self, count):
        from distributed import Client

        deadline = time.monotonic() + self.timeout
        with Client(self.address, timeout=self.timeout) as client:
            while len(client.scheduler_info(n_workers=-1)["workers"]) < count:
                self._check(deadline, f"{count} worker(s)")

    def close(self):
        for process in reversed(self.processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            process.log_file.close()
        self.processes = []
