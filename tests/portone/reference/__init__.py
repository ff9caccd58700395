"""PortOne's own schemas for its V2 API, kept in the repository (see extract.py)."""

from pathlib import Path

SCHEMAS = Path(__file__).resolve().parent / "portone-v2.schemas.json"
