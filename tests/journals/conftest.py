"""Fixtures of the journal-core tests (builders live in builders.py)."""

from __future__ import annotations

import pytest

from nmbrs_visma.journals.models import AdministrationMapping, AdministrationReference, PayrollRun

from .builders import demo_reference, make_mapping, make_run


@pytest.fixture
def reference() -> AdministrationReference:
    return demo_reference()


@pytest.fixture
def run() -> PayrollRun:
    return make_run()


@pytest.fixture
def mapping() -> AdministrationMapping:
    return make_mapping()
