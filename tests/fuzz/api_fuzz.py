"""Schemathesis over the service's own OpenAPI: the passes the suite and the CLI share.

Every operation is fuzzed in these passes:

- `positive`: data the schema allows; internal operations (those that declare 401) get
  the bearer token;
- `negative`: data the schema forbids; it must be rejected with a 4xx;
- `known`: positive data pinned to orders and payment ids that exist, so the fuzzer
  reaches past ORDER_NOT_FOUND (order ids in paths, `paymentId` in bodies);
- `unauthenticated`: internal operations without the token: always 401 UNAUTHORIZED.

Each response must not be a 5xx, must have a declared status code, and must conform to
the declared schema and content type; data the schema allows must be accepted (no 400 or
422, but where `schemathesis.toml` says why a generator cannot make it), and is never
refused as VALIDATION_FAILED, even there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.errors
import requests
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import (
    APIOperation,
    BaseSchema,
    CheckContext,
    CheckFunction,
    GenerationMode,
    Response,
)
from schemathesis import Case as AnyCase
from schemathesis import Config as SchemathesisConfig
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.generation import overrides
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

CONFIG = SchemathesisConfig.from_path(Path(__file__).resolve().parents[2] / "schemathesis.toml")
"""The repository's schemathesis settings, as `schemathesis run` reads them from its root."""


CLOCK_FIELDS = frozenset({"body.expiresAt"})
"""Fields measured against the clock of the request (in the future, at most 7 days ahead):
the document says so in words, which no generator reads."""


def valid_data_is_never_a_validation_failure(
    ctx: CheckContext, response: Response, case: Case
) -> bool | None:
    """Where the contract refuses schema-valid data for the state it meets (422
    REFUND_EXCEEDS_BALANCE, or a time the clock has passed), the refusal is that, never
    the document's own rules."""
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if positive and response.status_code == 422:
        body = response.json()
        fields = {str(error["field"]) for error in body.get("errors", [])}
        clock_only = bool(fields) and fields <= CLOCK_FIELDS
        assert body.get("code") != "VALIDATION_FAILED" or clock_only, (
            f"schema-valid data refused: {response.text}"
        )
    return None


CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    valid_data_is_never_a_validation_failure,
]

Operation = APIOperation[Any, Any, Any, Any]
Case = AnyCase[Operation]

PASSES = ("positive", "negative", "known", "unauthenticated")


@dataclass
class Known:
    """Ids that exist in the service, for the `known` pass."""

    order_ids: list[str] = field(default_factory=list)
    payment_ids: list[str] = field(default_factory=list)


def prepared(schema: BaseSchema) -> BaseSchema:
    """The schema as these passes use it: the bearer token is theirs to send (the
    `unauthenticated` pass sends none), not a parameter to generate."""
    schema.config.generation.update(with_security_parameters=False)
    return schema


def operations(schema: BaseSchema) -> list[Operation]:
    found = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        found.append(result.ok())
    return found


def is_internal(operation: Operation) -> bool:
    return "401" in operation.definition.raw.get("responses", {})


def _order_id_parameters(operation: Operation) -> list[str]:
    return [p.name for p in operation.path_parameters if "order" in p.name.lower()]


def _takes_payment_id(operation: Operation) -> bool:
    return any("paymentId" in body.resolved_schema.get("properties", {}) for body in operation.body)


def applies(operation: Operation, pass_name: str) -> bool:
    """Whether a pass means anything for an operation."""
    has_input = bool(list(operation.iter_parameters())) or bool(len(operation.body))
    if pass_name == "negative":
        return has_input
    if pass_name == "known":
        return bool(_order_id_parameters(operation)) or _takes_payment_id(operation)
    if pass_name == "unauthenticated":
        return is_internal(operation)
    return pass_name == "positive"


def _with_fixed_parameters(operation: Operation) -> Callable[[Case], Case]:
    """The values `schemathesis.toml` fixes for the operation, set as `schemathesis run`
    sets them."""
    fixed = overrides.for_operation(operation.schema.config, operation=operation)

    def apply(case: Case) -> Case:
        for container in ("query", "headers", "cookies", "path_parameters"):
            if values := getattr(fixed, container):
                setattr(case, container, {**(getattr(case, container) or {}), **values})
        return case

    return apply


def strategy(operation: Operation, pass_name: str, known: Known) -> st.SearchStrategy[Case]:
    if pass_name == "negative":
        return operation.as_strategy(GenerationMode.NEGATIVE)
    base = operation.as_strategy(GenerationMode.POSITIVE).map(_with_fixed_parameters(operation))
    if pass_name != "known":
        return base
    order_ids = _order_id_parameters(operation)

    def pin(drawn: tuple[Case, str, str]) -> Case:
        case, order_id, payment_id = drawn
        for name in order_ids:
            case.path_parameters = {**(case.path_parameters or {}), name: order_id}
        if isinstance(case.body, dict) and "paymentId" in case.body:
            case.body = {**case.body, "paymentId": payment_id}
        return case

    return st.tuples(
        base, st.sampled_from(known.order_ids), st.sampled_from(known.payment_ids)
    ).map(pin)


def _check_unauthenticated(case: Case, response: Response) -> None:
    assert response.status_code == 401, (
        f"{case.operation.label} without a token answered {response.status_code}:"
        f" {response.text[:300]}"
    )
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/problem+json"), content_type
    assert response.json()["code"] == "UNAUTHORIZED"


def fuzz(
    operation: Operation,
    pass_name: str,
    *,
    session: requests.Session,
    token: str,
    known: Known,
    max_examples: int,
    seed: int | None = None,
    base_url: str | None = None,
) -> int:
    """Run one pass over one operation; raises on the first (shrunk) failure.

    Without `seed` the run is derandomized: the same examples every time, as CI needs.
    Returns how many requests were sent.
    """
    sent = 0
    headers: dict[str, str] = {}
    if is_internal(operation) and pass_name != "unauthenticated":
        headers["Authorization"] = f"Bearer {token}"

    @hypothesis.settings(
        max_examples=max_examples,
        derandomize=seed is None,
        database=None,
        deadline=None,
        print_blob=True,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=strategy(operation, pass_name, known))
    def run(case: Case) -> None:
        nonlocal sent
        response = case.call(session=session, headers=headers, base_url=base_url)
        sent += 1
        if pass_name == "unauthenticated":
            _check_unauthenticated(case, response)
            return
        case.validate_response(response, checks=CHECKS, headers=headers)

    test: Callable[[], None] = run
    if seed is not None:
        test = hypothesis.seed(seed)(run)
    try:
        test()
    except hypothesis.errors.Unsatisfiable:
        if pass_name != "negative":
            raise
        # Nothing this operation takes can be made invalid (e.g. one unconstrained string).
    return sent


def plan(schema: BaseSchema) -> Sequence[tuple[str, str]]:
    """(operation label, pass) pairs worth running."""
    return [
        (operation.label, pass_name)
        for operation in operations(schema)
        for pass_name in PASSES
        if applies(operation, pass_name)
    ]


def find(schema: BaseSchema, label: str) -> Operation:
    for operation in operations(schema):
        if operation.label == label:
            return operation
    raise LookupError(f"the served OpenAPI has no operation {label}")


def seed_orders(post: Callable[..., Any], token: str, count: int = 3) -> list[dict[str, Any]]:
    """Create `count` orders through the API (`post` is a requests-like `post`)."""
    orders = []
    for number in range(count):
        response = post(
            "/orders",
            json={"orderName": f"fuzz order {number}", "amount": 10_000},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 201, response.text
        orders.append(response.json())
    return orders
