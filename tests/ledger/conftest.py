"""Fixtures for the ledger tests."""

from __future__ import annotations

import pytest

from learnae.identity import Identity
from tests.ledger.chains import ident


@pytest.fixture
def alice() -> Identity:
    return ident(1)


@pytest.fixture
def bob() -> Identity:
    return ident(2)
