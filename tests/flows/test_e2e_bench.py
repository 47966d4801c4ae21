"""The end-to-end bench runs (small: 3 administrations, 2 at once) and ends with the line the README reads.

No timing is asserted here (speed lives in bench/). What is: the bench's own checks pass (both contenders
booked every transaction once, the pipeline's rows all `sent`, its creates in flight within `--workers`), and
it reports the requests per administration the target allows. It runs in a process of its own, as a user
runs it: it starts its own Prefect test server and emulators.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "e2e.py"


@pytest.mark.slow
def test_e2e_bench_runs_small_and_reports_its_last_line(tmp_path: Path) -> None:
    environment = {**os.environ, "TMPDIR": str(tmp_path)}
    arguments = ["--admins", "3", "--workers", "2", "--create-latency", "0.02", "--read-latency", "0.01"]
    done = subprocess.run(
        [sys.executable, str(BENCH), *arguments],
        capture_output=True,
        text=True,
        timeout=480,
        env=environment,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert re.fullmatch(r"ratio=\d+\.\d{2} overhead_ms=-?\d+\.\d", lines[-1])
    creates = [int(m[1]) for m in re.finditer(r"most creates at once: pipeline (\d+), bare \d+", done.stdout)]
    assert creates and max(creates) <= 2
    per_period = r"^\s+(create|look-up)\s+[\d.]+ per administration\s+([\d.]+) per period"
    assert dict(re.findall(per_period, done.stdout, re.M)) == {"create": "1.00", "look-up": "1.00"}
