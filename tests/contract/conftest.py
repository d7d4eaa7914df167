"""Fixtures for the storage contract tests (``db_url`` comes from tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.support.pki import PKI, build_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """One throwaway federation PKI (and a foreign CA) for the whole session."""
    return build_pki(tmp_path_factory.mktemp("pki"))
