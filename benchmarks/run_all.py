"""Run every benchmark and print its figures (`make benchmarks`)."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent

for script in [
    "grading_timing.py",
    "notebook_timing.py",
    "mha_speed.py",
    "transformer_speed.py",
    "diagnosis.py",
    "taps_overhead.py",
]:
    print(f"== {script}", flush=True)
    subprocess.run([sys.executable, str(HERE / script)], check=True)
