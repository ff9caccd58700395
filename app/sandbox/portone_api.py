"""The emulated PortOne V2 REST API, with PortOne's error bodies: served by the service
under `/sandbox/portone` in sandbox mode, and on its own (`emulated_portone`) where a
test or the stress run needs a PortOne with state."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from app.sandbox.emulator import EmulatorError
from app.sandbox.payments import EmulatedPayment
from app.sandbox.state import Answer, Sandbox, sandbox_of
from app.times import utc_now

PREFIX = "/sandbox/portone"  # where the service serves it


class Recorded(APIRoute):
    """A route of the emulated API that notes each call it answers, by payment."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def recorded(request: Request) -> Response:
            status, refusal = 500, None
            key = request.headers.get("idempotency-key") if request.method == "POST" else None
            try:
                response = await (_once(request, key, handle) if key else handle(request))
                status, refusal = response.status_code, _refusal(response)
                return response
            except EmulatorError as exc:
                status, refusal = exc.status, exc.type
                raise
            finally:
                payment_id = request.path_params.get("payment_id")
                if payment_id is not None:
                    path = request.url.path.removeprefix(PREFIX)
                    sandbox_of(request).called(payment_id, request.method, path, status, refusal)

        return recorded


async def _once(
    request: Request, key: str, handle: Callable[[Request], Coroutine[Any, Any, Response]]
) -> Response:
    """A write with PortOne's Idempotency-Key: done once; the same key again replays the
    first answer (for three hours), and meets 409 IDEMPOTENCY_OUTSTANDING_REQUEST while the
    first request still runs."""
    sandbox = sandbox_of(request)
    path = request.url.path
    earlier = sandbox.answer(key)
    if earlier is not None and earlier.path == path:
        if earlier.status is None:
            raise EmulatorError(
                409, "IDEMPOTENCY_OUTSTANDING_REQUEST", "같은 멱등 키의 요청이 처리 중입니다."
            )
        return Response(earlier.body, earlier.status, media_type="application/json")
    sandbox.answers[key] = Answer(path, utc_now())
    try:
        response = await handle(request)
    except EmulatorError as exc:
        response = portone_error(exc)
    except BaseException:
        del sandbox.answers[key]
        raise
    sandbox.answers[key] = Answer(path, utc_now(), response.status_code, bytes(response.body))
    return response


def _refusal(response: Response) -> str | None:
    """The `type` of PortOne's error body, when the answer is one (a replayed one too)."""
    if response.status_code < 400:
        return None
    try:
        body = json.loads(bytes(response.body))
    except ValueError:
        return None
    refusal = body.get("type") if isinstance(body, dict) else None
    return refusal if isinstance(refusal, str) else None


# PortOne's API, not this service's: described by PortOne's own OpenAPI, not ours.
router = APIRouter(include_in_schema=False, route_class=Recorded)


def emulated_portone(sandbox: Sandbox) -> FastAPI:
    """The emulated API on its own, at the root, as PortOne serves its own."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.sandbox = sandbox
    app.include_router(router)
    app.add_exception_handler(EmulatorError, _portone_error)
    return app


async def _portone_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EmulatorError)
    return portone_error(exc)


def portone_error(exc: EmulatorError) -> JSONResponse:
    return JSONResponse({"type": exc.type, "message": exc.message}, status_code=exc.status)


def _authorize(request: Request) -> None:
    expected = f"PortOne {sandbox_of(request).api_secret}".encode()
    presented = request.headers.get("authorization", "").encode()
    if not hmac.compare_digest(presented, expected):
        raise EmulatorError(401, "UNAUTHORIZED", "인증 정보가 올바르지 않습니다.")


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        raise EmulatorError(400, "INVALID_REQUEST", "요청 본문이 JSON이 아닙니다.") from None
    if not isinstance(body, dict):
        raise EmulatorError(400, "INVALID_REQUEST", "요청 본문이 객체가 아닙니다.")
    return body


def _store_of(store_id: object, payment: EmulatedPayment) -> None:
    """A write names the payment's store, or none (PortOne then takes the secret's)."""
    if store_id is not None and store_id != payment.store_id:
        raise EmulatorError(404, "PAYMENT_NOT_FOUND", "결제 건이 존재하지 않습니다.")


def _optional_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise EmulatorError(400, "INVALID_REQUEST", f"{key} must be an integer")
    return value


@router.get("/payments/{payment_id}")
async def get_payment(payment_id: str, request: Request) -> JSONResponse:
    _authorize(request)
    store_id = request.query_params.get("storeId")
    return JSONResponse(sandbox_of(request).emulator.get(payment_id, store_id).body())


@router.post("/payments/{payment_id}/cancel")
async def cancel_payment(payment_id: str, request: Request) -> JSONResponse:
    _authorize(request)
    body = await _json_body(request)
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason:
        raise EmulatorError(400, "INVALID_REQUEST", "reason is required")
    sandbox = sandbox_of(request)
    _store_of(body.get("storeId"), sandbox.emulator.get(payment_id))
    payment, cancellation, webhooks = sandbox.emulator.cancel(
        payment_id,
        amount=_optional_int(body, "amount"),
        reason=reason,
        current_cancellable_amount=_optional_int(body, "currentCancellableAmount"),
    )
    await sandbox.changed(payment, webhooks)
    return JSONResponse({"cancellation": cancellation.body()})


@router.post("/payments/{payment_id}/pre-register")
async def pre_register(payment_id: str, request: Request) -> JSONResponse:
    _authorize(request)
    body = await _json_body(request)
    amount = _optional_int(body, "totalAmount")
    currency = body.get("currency")
    if amount is None or not isinstance(currency, str):
        raise EmulatorError(400, "INVALID_REQUEST", "totalAmount and currency are required")
    sandbox = sandbox_of(request)
    sandbox.emulator.pre_register(payment_id, amount, currency)
    await sandbox.kept(payment_id)
    return JSONResponse({})


@router.post("/payments/{payment_id}/confirm")
async def confirm_payment(payment_id: str, request: Request) -> JSONResponse:
    """Manual confirmation: charged only if every term sent matches what was authorized."""
    _authorize(request)
    body = await _json_body(request)
    token, currency, is_test = body.get("paymentToken"), body.get("currency"), body.get("isTest")
    if not isinstance(token, str) or not token:
        raise EmulatorError(400, "INVALID_REQUEST", "paymentToken is required")
    if currency is not None and not isinstance(currency, str):
        raise EmulatorError(400, "INVALID_REQUEST", "currency must be a string")
    if is_test is not None and not isinstance(is_test, bool):
        raise EmulatorError(400, "INVALID_REQUEST", "isTest must be a boolean")
    sandbox = sandbox_of(request)
    _store_of(body.get("storeId"), sandbox.emulator.get(payment_id))
    payment, webhooks = sandbox.emulator.confirm(
        payment_id,
        payment_token=token,
        total_amount=_optional_int(body, "totalAmount"),
        currency=currency,
        is_test=is_test,
    )
    await sandbox.changed(payment, webhooks)
    summary = payment.body()
    return JSONResponse({"pgTxId": summary["transactionId"], "paidAt": summary.get("paidAt")})


@router.post("/payments/{payment_id}/virtual-account/close")
async def close_virtual_account(payment_id: str, request: Request) -> JSONResponse:
    _authorize(request)
    sandbox = sandbox_of(request)
    _store_of(request.query_params.get("storeId"), sandbox.emulator.get(payment_id))
    payment, webhooks = sandbox.emulator.close_virtual_account(payment_id)
    await sandbox.changed(payment, webhooks)
    return JSONResponse({"closedAt": payment.body()["statusChangedAt"]})


@router.get("/payments")
async def list_payments(request: Request) -> JSONResponse:
    """PortOne's `GET /payments`: options as JSON in the `requestBody` query parameter."""
    _authorize(request)
    page = sandbox_of(request).emulator.list_page(request.query_params.get("requestBody"))
    return JSONResponse(page)
