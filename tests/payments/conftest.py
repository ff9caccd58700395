"""Fixtures of the payment tests."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers import create_order


@pytest.fixture
async def order(client: httpx.AsyncClient) -> dict[str, Any]:
    """A PENDING order of 10,000 KRW."""
    return await create_order(client, amount=10_000)
