"""Refresh the README's screenshots of the Prefect UI: runs the browser tests (tests/ui/test_browser.py) with
their screenshots written here instead of a temporary folder.

    python docs/screenshots/take.py            # needs Debian's chromium and the dev extras, like the tests

The tests start their own Prefect server, emulators and worker on free ports and stop them; nothing else is
touched. Exit status: the tests'.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
KEPT = ("custom-run-form", "mapping-block-form", "failed-run", "artifacts", "artifact-refused-administration")


def main() -> int:
    env = {**os.environ, "NMBRS_VISMA_SCREENSHOTS": str(HERE), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/ui/test_browser.py", "-q", "-p", "no:cacheprovider"],
        cwd=REPO,
        env=env,
        check=False,
    )
    for stray in HERE.glob("*.png"):  # e.g. a failure's debugging shot: only the README's are kept
        if stray.stem not in KEPT:
            stray.unlink()
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
