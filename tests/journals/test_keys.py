"""Posting keys are deterministic and findable again in a transaction's description."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmbrs_visma.journals.keys import administration_id, extract_key, key_marker, posting_key

# Fixed once: a changed key would make every earlier posting invisible to the look-up-before-post.
KNOWN = ("1001", "3f0c0000-0000-4000-8000-000000000001", "202603", "1000001/1/L")


def test_key_is_stable_across_processes() -> None:
    # The documented scheme, computed independently: sha256 over length-prefixed parts, first 20 hex digits.
    text = "".join(f"{len(p)}:{p};" for p in ("nv1", *KNOWN))
    expected = hashlib.sha256(text.encode()).hexdigest()[:20]
    assert posting_key(1001, KNOWN[1], "202603", "1000001/1/L") == expected == "13d8d9a0c05ccefa2bfc"


def test_marker_round_trip() -> None:
    key = posting_key(1001, "run", "202603", "1/1/L")
    assert key_marker(key) == f"[nv:{key}]"
    assert extract_key(f"Payroll 2026/03 run 1 {key_marker(key)}") == key
    assert extract_key("Manual journal") is None
    assert extract_key(None) is None
    assert extract_key(f"{key_marker(key)} {key_marker(posting_key(1002, 'run', '202603', '1/1/L'))}") is None
    with pytest.raises(ValueError, match="not a posting key"):
        key_marker("XYZ")


def test_administration_id() -> None:
    assert administration_id("1000002", "2", "L") == "1000002/2/L"
    for bad in (("", "1", "L"), ("1", "a/b", "L"), ("1", "1", "")):
        with pytest.raises(ValueError, match="without '/'"):
            administration_id(*bad)


def test_period_must_be_yyyypp() -> None:
    with pytest.raises(ValueError, match="YYYYPP"):
        posting_key(1, "run", "2026-03", "1/1/L")


parts = st.tuples(
    st.integers(min_value=1, max_value=10**6),
    st.text(min_size=1, max_size=12),
    st.from_regex(r"20[0-9]{2}(0[1-9]|1[0-3])", fullmatch=True),
    st.text(min_size=1, max_size=12),
)


@settings(max_examples=200, deadline=None)
@given(parts, parts)
def test_key_differs_between_any_two_postings(a: tuple, b: tuple) -> None:
    assert posting_key(*a) == posting_key(*a)
    if a != b:
        assert posting_key(*a) != posting_key(*b)


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=3), st.text(max_size=3))
def test_parts_cannot_run_into_each_other(x: str, y: str) -> None:
    # ("ab", "c") and ("a", "bc") must not collide: the parts are length-prefixed.
    if x + y and (x, y) != (x + y[:1], y[1:]):
        assert posting_key(1, x, "202603", y) != posting_key(1, x + y[:1], "202603", y[1:])
