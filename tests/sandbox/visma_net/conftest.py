"""Fixtures of the Visma.net emulator's tests (the emulator itself, `sandbox`, comes from tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .spec import Spec


@pytest.fixture(scope="module")
def spec(reference_dir: Path) -> Spec:
    """The published Visma.net ERP specs, read strictly."""
    return Spec(reference_dir)
