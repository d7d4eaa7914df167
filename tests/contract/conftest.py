"""Fixtures for the storage contract tests (``db_url`` comes from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from store.store import Store

from tests.support.pki import PKI, build_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """One throwaway federation PKI (and a foreign CA) for the whole session."""
    return build_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def opened() -> Iterator[list[Store]]:
    """Stores a test opens, closed when it ends."""
    stores: list[Store] = []
    yield stores
    for s in stores:
        s.close()
