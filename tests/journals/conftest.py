"""Fixtures of the journal-core tests (builders live in builders.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from nmbrs_visma.journals.models import AdministrationMapping, AdministrationReference, PayrollRun
from nmbrs_visma.journals.payload import JournalTransactionUpdateDto, payload_json

from .builders import demo_reference, make_mapping, make_run
from .contract import contract_errors


@pytest.fixture
def reference() -> AdministrationReference:
    return demo_reference()


@pytest.fixture
def run() -> PayrollRun:
    return make_run()


@pytest.fixture
def mapping() -> AdministrationMapping:
    return make_mapping()


@pytest.fixture
def check_payload(request: pytest.FixtureRequest) -> Callable[[bytes], JournalTransactionUpdateDto]:
    """Asserts a built payload is exact and conforms; returns it as the model.

    Always: it parses into the pydantic DTOs (no unknown field) and re-renders byte for byte. Against the
    published spec as well whenever ../shared/reference is present (always in CI, see `reference_dir`).
    """
    try:
        reference_dir = request.getfixturevalue("reference_dir")
    except pytest.skip.Exception:
        reference_dir = None

    def check(payload: bytes) -> JournalTransactionUpdateDto:
        model = JournalTransactionUpdateDto.model_validate_json(payload)
        assert payload_json(model) == payload
        if reference_dir is not None:
            assert contract_errors(reference_dir, payload) == []
        return model

    return check
