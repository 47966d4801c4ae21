"""The transform bench runs (small) and ends with the line CI and the README read; no timing asserted here."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path


def test_transform_bench_runs_and_reports_its_last_line(capsys) -> None:
    path = Path(__file__).resolve().parents[2] / "bench" / "transform.py"
    spec = importlib.util.spec_from_file_location("bench_transform", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--lines", "3000", "--companies", "10", "--repeat", "1"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"ratio=\d+\.\d{2} peak_mb=\d+", last)
