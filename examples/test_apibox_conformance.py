"""The reference api.box client keeps the contract under every provider behaviour Hypothesis tries."""

from __future__ import annotations

from contracts.conformance import check_client
from contracts.examples.apibox_client import ApiboxError, separate_vocals


def test_reference_client_conforms() -> None:
    """Errors, wire faults, repeated, late, failed and missing callbacks: no check fails."""
    check_client(separate_vocals, expected_errors=(ApiboxError,), max_examples=40)
