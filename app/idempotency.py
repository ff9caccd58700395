"""Recognising a repeated request: the same Idempotency-Key must carry the same body."""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel


def fingerprint(body: BaseModel) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
