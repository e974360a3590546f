"""The grading kernel's spec: limits wrapped around ipykernel."""

import json
import sys

from autograder import sandbox


def test_kernelspec_wraps_ipykernel_in_the_available_layers(tmp_path):
    folder = sandbox.write_kernelspec(tmp_path)
    spec = json.loads((folder / "kernel.json").read_text())
    argv = spec["argv"]
    assert argv[-5:] == [
        sys.executable,
        "-m",
        "ipykernel_launcher",
        "-f",
        "{connection_file}",
    ]
    prefix = [part for _, command in sandbox.layers() for part in command]
    assert argv[: len(prefix)] == prefix
    assert folder.name == sandbox.KERNEL_NAME


def test_memory_limit_follows_the_environment(monkeypatch):
    monkeypatch.setenv("KIT_MEMORY_LIMIT_MB", "2048")
    layers = dict(sandbox.layers())
    if "memory" in layers:
        assert layers["memory"] == ["prlimit", f"--as={2048 * 2**20}"]
        assert "memory limit 2048 MiB" in sandbox.describe()
    monkeypatch.setenv("KIT_MEMORY_LIMIT_MB", "0")
    assert "memory" not in dict(sandbox.layers())
    assert "NO memory limit" in sandbox.describe()
