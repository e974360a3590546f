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


def test_limits_follow_the_environment(monkeypatch):
    monkeypatch.setenv("KIT_MEMORY_LIMIT_MB", "2048")
    monkeypatch.setenv("KIT_FILE_LIMIT_MB", "10")
    monkeypatch.setenv("KIT_PROCESS_LIMIT", "300")
    layers = dict(sandbox.layers())
    if "memory" in layers:
        assert layers["memory"] == [
            "prlimit",
            f"--as={2048 * 2**20}",
            f"--fsize={10 * 2**20}",
            "--nproc=300",
        ]
        assert "memory limit 2048 MiB" in sandbox.describe()
    monkeypatch.setenv("KIT_MEMORY_LIMIT_MB", "0")
    assert "memory" not in dict(sandbox.layers())
    assert "NO memory limit" in sandbox.describe()


def test_hidden_paths_cover_what_a_kernel_must_not_see(tmp_path):
    root = tmp_path / "course"
    for name in ("solutions", "tests", "build", ".git"):
        (root / name).mkdir(parents=True)
    grading = tmp_path / "elsewhere" / "grading"
    grading.mkdir(parents=True)
    hidden = sandbox.hidden_paths(root, grading)
    for name in ("solutions", "tests", "build", ".git"):
        assert str(root / name) in hidden
    assert str(grading) in hidden
    assert any(p.endswith("autograder/judge") for p in hidden)
    assert any(p.endswith("autograder/reference") for p in hidden)
    exposed = sandbox.exposed_paths()
    assert any(p.endswith("autograder") for p in exposed)
