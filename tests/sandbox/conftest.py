"""Sandbox mode: the service talks to its own in-process PortOne emulator."""

from __future__ import annotations

import pytest

from app.config import Settings
from tests.helpers import make_settings


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(
        database_url,
        portone_mode="sandbox",
        portone_api_base_url=None,
        portone_accept_test_payments=None,
    )
