"""Fixtures for the fault-injection tests (see test_faults.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import e2e_database
from tests.faults.support import EmbeddedPostgres

__all__ = ["e2e_database", "own_postgres"]


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own, which it may stop and start (never the shared one)."""
    server = EmbeddedPostgres()
    try:
        yield server
    finally:
        server.close()
