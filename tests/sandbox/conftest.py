"""Sandbox mode: the service talks to its own in-process PortOne emulator."""

from __future__ import annotations

import pytest

from app.config import Settings
from tests.helpers import make_sandbox_settings


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_sandbox_settings(database_url, portone_accept_test_payments=None)
