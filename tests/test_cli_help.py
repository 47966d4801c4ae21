"""`nmbrs-visma --help` answers without importing Prefect (it is the command a new user types first)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from nmbrs_visma.cli import app
try:
    app(["--help"])
except SystemExit:
    pass
print("PREFECT-LOADED" if any(m == "prefect" or m.startswith("prefect.") for m in sys.modules) else "NO-PREFECT")
"""


def test_help_imports_no_prefect_module() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True)
    assert "nmbrs-visma" in done.stdout and "post" in done.stdout
    assert done.stdout.strip().endswith("NO-PREFECT"), done.stdout[-500:]


def test_prefect_still_finds_the_block_types_through_its_collections() -> None:
    probe = "import prefect.plugins as p, sys; p.load_prefect_collections(); print('nmbrs_visma.blocks' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip().endswith("True"), done.stdout + done.stderr
