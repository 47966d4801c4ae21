"""Posting keys and fingerprints are deterministic, follow what the journal is, and are found again in a
transaction's description."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmbrs_visma.journals.keys import (
    Marker,
    administration_id,
    fingerprint,
    key_marker,
    posting_key,
    read_marker,
    reversal_fingerprint,
    reversal_key,
)

# Fixed once: a changed key would make every earlier posting invisible to the look-up-before-post.
KNOWN = (1001, 2026, 3, 1, "202601", "1000001/1/L")


def test_key_is_stable_across_processes() -> None:
    # The documented scheme, computed independently: sha256 over length-prefixed parts, first 20 hex digits.
    parts = ("nv2", "1001", "2026", "3", "1", "202601", "1000001/1/L")
    text = "".join(f"{len(p)}:{p};" for p in parts)
    expected = hashlib.sha256(text.encode()).hexdigest()[:20]
    assert posting_key(*KNOWN) == expected == "b8e96fd11fdb558bf497"


def test_the_key_is_the_journal_not_where_it_goes() -> None:
    key = posting_key(*KNOWN)
    assert posting_key(1001, 2026, 3, 2, "202601", "1000001/1/L") != key  # another run of the same period
    assert posting_key(1001, 2026, 4, 1, "202601", "1000001/1/L") != key  # the April run's correction
    assert posting_key(1001, 2026, 3, 1, "202602", "1000001/1/L") != key  # another payroll period of the run
    assert posting_key(1001, 2026, 3, 1, "202601", "1000001/2/L") != key  # another administration


def test_fingerprint_follows_content_only() -> None:
    lines = ['"4000"D100.00', '"1700"C100.00']
    content = fingerprint(1001, "202603", lines)
    assert len(content) == 16 and content == fingerprint(1001, "202603", list(lines))
    assert fingerprint(1001, "202603", ['"4000"D100.01', '"1700"C100.01']) != content  # a cent
    assert fingerprint(1001, "202603", ['"4000"C100.00', '"1700"D100.00']) != content  # sides
    assert fingerprint(1002, "202603", lines) != content  # another company
    assert fingerprint(1001, "202602", lines) != content  # another payroll period
    assert reversal_fingerprint(content) not in {content, reversal_fingerprint(reversal_fingerprint(content))}


def test_marker_round_trip() -> None:
    key, content = posting_key(*KNOWN), fingerprint(1001, "202601", ["x"])
    marker = key_marker(key, content)
    assert marker == f"[nv:{key}:{content}]"
    assert read_marker(f"Payroll 2026/03 run 1 {marker}") == Marker(key, content)
    assert read_marker(f"{marker} again {marker}") == Marker(key, content)
    assert read_marker("Manual journal") is None
    assert read_marker(None) is None
    assert read_marker(f"[nv:{key}]") is None  # a marker without a fingerprint is not this version's
    other = key_marker(reversal_key(key, content), content)
    assert read_marker(f"{marker} {other}") is None
    with pytest.raises(ValueError, match="not a posting key"):
        key_marker("XYZ", content)


def test_administration_id() -> None:
    assert administration_id("1000002", "2", "L") == "1000002/2/L"
    for bad in (("", "1", "L"), ("1", "a/b", "L"), ("1", "1", "")):
        with pytest.raises(ValueError, match="without '/'"):
            administration_id(*bad)


def test_period_must_be_yyyypp() -> None:
    with pytest.raises(ValueError, match="YYYYPP"):
        posting_key(1, 2026, 3, 1, "2026-03", "1/1/L")


parts = st.tuples(
    st.integers(min_value=1, max_value=10**6),
    st.integers(min_value=2000, max_value=2100),
    st.integers(min_value=1, max_value=53),
    st.integers(min_value=1, max_value=20),
    st.from_regex(r"20[0-9]{2}(0[1-9]|1[0-3])", fullmatch=True),
    st.text(min_size=1, max_size=12),
)


@settings(max_examples=200, deadline=None)
@given(parts, parts)
def test_key_differs_between_any_two_postings(a: tuple, b: tuple) -> None:
    assert posting_key(*a) == posting_key(*a)
    if a != b:
        assert posting_key(*a) != posting_key(*b)
