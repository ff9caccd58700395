"""What every error answer must look like: an RFC 9457 problem with our `code`."""

from __future__ import annotations

from typing import Any

import httpx

PROBLEM_JSON = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The problem body, after checking its status, media type and required members."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0].strip() == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


def assert_validation_failed(response: httpx.Response, *fields: str) -> dict[str, Any]:
    """A 422 VALIDATION_FAILED problem whose `errors` name each of `fields` (dotted paths)."""
    body = assert_problem(response, 422, "VALIDATION_FAILED")
    errors = body["errors"]
    assert isinstance(errors, list)
    assert errors
    named = [str(error["field"]) for error in errors]
    for field in fields:
        assert any(name == field or name.endswith("." + field) for name in named), named
    return body
