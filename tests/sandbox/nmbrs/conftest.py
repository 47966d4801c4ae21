"""Fixtures of the Nmbrs emulator's tests (the emulator itself comes from tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .spec import load_spec


@pytest.fixture(scope="module")
def spec(reference_dir: Path) -> dict[str, Any]:
    """The published Nmbrs spec, parsed."""
    return load_spec(reference_dir)
