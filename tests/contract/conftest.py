"""Fixtures for the storage contract tests (``db_url`` comes from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from store.store import Store

if TYPE_CHECKING:
    from tests.contract.test_store import Authors

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


@pytest.fixture
def authors(pki: PKI, tmp_path: Path, opened: list[Store]) -> "Authors":
    """Provinces that sign real changes into stores (tests/contract/test_store.py)."""
    from tests.contract.test_store import Authors

    return Authors(pki, tmp_path, opened)
