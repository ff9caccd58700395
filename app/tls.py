"""One TLS context for every HTTPS client a process opens (PortOne, the shop's order-event
receiver): loading the CA bundle takes tens of milliseconds, paid once per process
instead of once per client."""

from __future__ import annotations

import ssl
from functools import cache

import httpx


@cache
def context() -> ssl.SSLContext:
    return httpx.create_ssl_context()
