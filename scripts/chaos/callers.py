"""The world around the two service processes: shops, customers, the console, the operator.

Each order lives one scenario drawn from the seed (honest card and virtual-account
payments, tampered amounts, currencies and channels, failures, no payment at all,
disputes, refunds PortOne holds; payments on a manual channel, honest or tampered,
confirmed by completions that bring the `paymentToken`; orders the shop cancels while
their payment is confirmed, and orders that expire a few seconds after they are made,
paid before, around or after): created on either process, paid at the stand-in,
completed by several concurrent browser calls, then perhaps disputed at the card
company, refunded (with and without Idempotency-Key, repeated) or cancelled in the
console, while `python -m app reconcile` runs now and then and the database goes away
at times (`outages`). Every answer is tallied, and answers no caller may get are noted
as they come.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import secrets
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from scripts.chaos import service
from scripts.chaos.outages import Outages
from tests.processes import die_with_parent

WEBHOOKS_DRAINED_WITHIN = 60.0
SETTLE_EVERY = 1.5  # seconds between PortOne settling some REQUESTED cancellations

SCENARIOS = {
    "card": 44,
    "va_deposit": 12,
    "va_waiting": 4,
    "va_closed": 4,
    "tampered_amount": 8,
    "tampered_currency": 3,
    "test_channel": 3,
    "va_tampered": 5,
    "fail": 4,
    "fail_then_card": 6,
    "no_payment": 4,
    "disputed": 10,
    "refund_held": 10,
    "manual": 14,
    "manual_tampered": 6,
    "manual_cancel": 12,
    "card_cancel": 6,
    "expiring": 12,
}
HONEST = frozenset(
    {
        "card",
        "va_deposit",
        "va_waiting",
        "va_closed",
        "fail_then_card",
        "disputed",
        "refund_held",
        "manual",
    }
)
REFUNDED_AFTER_PAYMENT = frozenset({"card", "va_deposit", "fail_then_card", "disputed", "manual"})
# Paid on a manual channel: a paymentToken the completions confirm.
MANUAL = frozenset({"manual", "manual_tampered", "manual_cancel"})
# Orders the shop cancels while their payment is paid and confirmed.
CANCELLED_AROUND_PAYMENT = frozenset({"manual_cancel", "card_cancel"})
EXPIRES_IN = (4.0, 6.0)  # seconds from the order's creation to its expiresAt
MANUAL_WHEN_EXPIRING = 0.6  # of the expiring orders, paid on a manual channel
# What the card company does to a disputed payment, a moment between each step.
DISPUTES = (
    ("UNRESOLVED",),
    ("UNRESOLVED", "RESOLVED"),
    ("RESOLVED",),  # opened and resolved before PortOne tells anyone
    ("UNRESOLVED", "RESOLVED", "UNRESOLVED"),
    ("UNRESOLVED", "UNRESOLVED", "RESOLVED"),
)
TAMPERED = frozenset(
    {"tampered_amount", "tampered_currency", "test_channel", "va_tampered", "manual_tampered"}
)


@dataclass
class Plan:
    index: int
    order_id: str
    payment_id: str
    amount: int
    scenario: str
    expires_at: datetime | None = None


@dataclass
class Tally:
    answers: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    wrong_answers: list[str] = field(default_factory=list)
    keyed_reasons: set[str] = field(default_factory=set)
    reconcile_runs: Counter[str] = field(default_factory=Counter)
    # The answers to the shop's cancels ("200", "409 ORDER_NOT_CANCELLABLE", …), by order.
    cancels: defaultdict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    refused_at: dict[str, datetime] = field(default_factory=dict)  # a cancel first refused
    answered_paid: set[str] = field(default_factory=set)  # orders a completion said PAID


class Chaos:
    """The callers of both service processes and of the stand-in's customer doors."""

    def __init__(
        self,
        args: argparse.Namespace,
        services: list[str],
        standin: str,
        token: str,
        *,
        dsn: str,
        per_pass: int,
        reconciler_log: Path,
    ) -> None:
        self.args = args
        self.services = services
        self.standin = standin
        self.internal = {"Authorization": f"Bearer {token}"}
        self.per_pass = per_pass
        self.reconciler_log = reconciler_log
        self.outages = Outages(dsn, self.control, args.seed)
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(45.0, connect=5.0),
            limits=httpx.Limits(max_connections=400, max_keepalive_connections=100),
        )
        self.plans: dict[str, Plan] = {}
        self.tally = Tally()
        self.flows_unfinished = 0

    async def close(self) -> None:
        await self.http.aclose()

    # -- calls --------------------------------------------------------------------------

    async def call(
        self, label: str, method: str, url: str, **kwargs: Any
    ) -> tuple[int, dict[str, Any]]:
        try:
            response = await self.http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            self.tally.answers[f"{label} {type(exc).__name__}"] += 1
            return 0, {}
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        code = body.get("code", "")
        self.tally.answers[f"{label} {response.status_code} {code}".rstrip()] += 1
        if response.status_code >= 500 and response.status_code != 503 and code != "REFUND_FAILED":
            self.tally.server_errors.append(f"{label} {response.status_code} {response.text[:200]}")
        return response.status_code, body

    async def drain(self, seconds: float = WEBHOOKS_DRAINED_WITHIN) -> int:
        """Wait until the stand-in has delivered (or given up on) every webhook it owes."""
        deadline = time.monotonic() + seconds
        while True:
            outstanding: int = (await self.http.get(f"{self.standin}/_control/state")).json()[
                "outstanding"
            ]
            if outstanding == 0 or time.monotonic() > deadline:
                return outstanding
            await asyncio.sleep(0.5)

    async def control(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        response = await self.http.post(f"{self.standin}/_control/{path}", json=body or {})
        return response.status_code, response.json()

    def service(self, rng: random.Random) -> str:
        return rng.choice(self.services)

    # -- one order's life ---------------------------------------------------------------

    async def order_flow(self, index: int, start_at: float) -> None:
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        rng = random.Random(f"{self.args.seed}:{index}")  # noqa: S311
        amount = rng.randrange(1_000, 300_000, 100)
        scenario = rng.choices(list(SCENARIOS), weights=list(SCENARIOS.values()))[0]
        plan = await self.create_order(rng, index, amount, scenario)
        if plan is None:
            return
        pay = {
            "paymentId": plan.payment_id,
            "orderName": f"Stress item {index}",
            "amount": amount,
            "currency": "KRW",
        }
        if scenario in MANUAL | CANCELLED_AROUND_PAYMENT | {"expiring"}:
            await self.confirmed(rng, plan, pay)
            if scenario in REFUNDED_AFTER_PAYMENT:
                await self.after_payment(rng, plan)
            return
        if scenario == "no_payment":
            await self.complete(rng, plan, max_calls=1)
            return
        if scenario in ("fail", "fail_then_card"):
            await self.control("fail", pay)
            await self.complete(rng, plan)
            if scenario == "fail":
                return
            await asyncio.sleep(rng.uniform(0.2, 2.0))
        if scenario in ("va_deposit", "va_waiting", "va_closed", "va_tampered"):
            pay["method"] = "VIRTUAL_ACCOUNT"
        if scenario in ("tampered_amount", "va_tampered"):
            pay["amount"] = rng.choice([100, amount - 100, amount + 100, amount * 10, 0])
        if scenario == "tampered_currency":
            pay["currency"] = "USD"
        if scenario == "test_channel":
            pay["channelType"] = "TEST"
        await self.control("pay", pay)
        await self.complete(rng, plan)
        if scenario == "refund_held":
            await self.held_refund(rng, plan)
            return
        if scenario in ("va_deposit", "va_tampered", "va_closed"):
            await asyncio.sleep(rng.uniform(0.3, 4.0))
            if scenario == "va_closed":
                await self.control(f"close/{plan.payment_id}")
                return
            if scenario == "va_tampered" and rng.random() < 0.5:
                return
            await self.control(f"deposit/{plan.payment_id}")
            if rng.random() < 0.3:
                await self.complete(rng, plan, max_calls=1)
        if scenario == "disputed":
            await asyncio.gather(self.disputes(rng, plan), self.after_payment(rng, plan))
        elif scenario in REFUNDED_AFTER_PAYMENT:
            await self.after_payment(rng, plan)

    async def create_order(
        self, rng: random.Random, index: int, amount: int, scenario: str
    ) -> Plan | None:
        body: dict[str, Any] = {
            "orderName": f"Stress item {index}",
            "amount": amount,
            "currency": "KRW",
            "metadata": {"stress": index},
        }
        expires_at = None
        if scenario == "expiring":
            expires_at = datetime.now(UTC) + timedelta(seconds=rng.uniform(*EXPIRES_IN))
            body["expiresAt"] = expires_at.isoformat()
        headers = dict(self.internal)
        copies = 1
        if rng.random() < 0.3:
            headers["Idempotency-Key"] = f"create-{self.args.seed}-{index}"
            copies = rng.choice([2, 3])

        async def one() -> tuple[int, dict[str, Any]]:
            for attempt in range(4):  # a careful shop tries again while the service is away
                status, answer = await self.call(
                    "create", "POST", f"{self.service(rng)}/orders", json=body, headers=headers
                )
                if status not in (0, 503):
                    break
                await asyncio.sleep(0.5 + attempt)
            return status, answer

        answers = await asyncio.gather(*(one() for _ in range(copies)))
        ids = {answer["orderId"] for status, answer in answers if status in (200, 201)}
        if len(ids) > 1:
            self.tally.wrong_answers.append(f"one Idempotency-Key created orders {sorted(ids)}")
        if not ids:
            return None
        order = next(answer for status, answer in answers if status in (200, 201))
        plan = Plan(index, order["orderId"], order["paymentId"], amount, scenario, expires_at)
        self.plans[plan.order_id] = plan
        return plan

    async def complete(
        self, rng: random.Random, plan: Plan, max_calls: int = 4, token: str | None = None
    ) -> None:
        """The browser's calls: none, one, or several at once, to both processes; with a
        manual channel's `token`, at least one (nothing else confirms the payment), each
        retried with the same token while the answer is lost or the service away."""
        calls = min(max_calls, rng.choice([0, 1, 2, 2, 3, 4] if token is None else [1, 2, 3, 4]))
        body = {"paymentId": plan.payment_id}
        if token is not None:
            body["paymentToken"] = token

        async def one() -> None:
            await asyncio.sleep(rng.uniform(0.0, 0.6))
            for attempt in range(3 if token is None else 4):
                status, answer = await self.call(
                    "complete", "POST", f"{self.service(rng)}/payments/complete", json=body
                )
                self.judge_completion(plan, status, answer)
                if status not in (0, 503):
                    return
                await asyncio.sleep(0.5 + attempt)

        await asyncio.gather(*(one() for _ in range(calls)))

    def judge_completion(self, plan: Plan, status: int, body: dict[str, Any]) -> None:
        code = body.get("code")
        what = f"{plan.scenario} order {plan.order_id}: /payments/complete answered {status}"
        if status == 200 and body.get("status") == "PAID":
            self.tally.answered_paid.add(plan.order_id)
        if status == 200 and plan.scenario in TAMPERED:
            self.tally.wrong_answers.append(f"{what} {body.get('status')} for a tampered payment")
        if status == 200 and body.get("status") not in ("PAID", "AWAITING_DEPOSIT"):
            self.tally.wrong_answers.append(f"{what} with status {body.get('status')}")
        if code == "PAYMENT_REJECTED" and plan.scenario in HONEST | {"manual_tampered"}:
            self.tally.wrong_answers.append(f"{what} PAYMENT_REJECTED, {body.get('reason')}")
        if code == "PAYMENT_NOT_CONFIRMED" and plan.scenario in HONEST:
            self.tally.wrong_answers.append(f"{what} PAYMENT_NOT_CONFIRMED, {body.get('reason')}")
        if code == "ORDER_CLOSED" and plan.scenario in HONEST:
            self.tally.wrong_answers.append(f"{what} ORDER_CLOSED for an order nobody closed")

    async def confirmed(self, rng: random.Random, plan: Plan, pay: dict[str, Any]) -> None:
        """A payment on a manual channel (honest or tampered), confirmed by the completions
        with its `paymentToken`, or an automatic one; with the shop's cancels racing it,
        or arriving before, around or after the order's expiry."""
        scenario = plan.scenario
        manual = scenario in MANUAL or (
            scenario == "expiring" and rng.random() < MANUAL_WHEN_EXPIRING
        )
        if scenario == "manual_tampered":
            pay["amount"] = rng.choice(
                [100, plan.amount - 100, plan.amount + 100, plan.amount * 10]
            )
        if plan.expires_at is not None:
            left = (plan.expires_at - datetime.now(UTC)).total_seconds()
            await asyncio.sleep(rng.uniform(0.2, max(0.2, left + 2.5)))

        async def paid() -> None:
            if scenario in CANCELLED_AROUND_PAYMENT:
                await asyncio.sleep(rng.uniform(0.0, 0.5))
            _, body = await self.control("pay", {**pay, "manual": manual})
            await self.complete(rng, plan, token=body.get("paymentToken"))

        if scenario in CANCELLED_AROUND_PAYMENT:
            await asyncio.gather(paid(), self.cancel(rng, plan))
        else:
            await paid()

    async def cancel(self, rng: random.Random, plan: Plan) -> None:
        """The shop closes the order, once or twice, on either process, at a random moment
        around the payment and its confirmations."""
        for n in range(rng.choice([1, 1, 2])):
            await asyncio.sleep(rng.uniform(0.0, 0.6 if n == 0 else 1.0))
            for attempt in range(3):
                url = f"{self.service(rng)}/orders/{plan.order_id}/cancel"
                status, body = await self.call("cancel", "POST", url, headers=self.internal)
                answer = f"{status} {body.get('code', '')}".rstrip()
                self.tally.cancels[plan.order_id].append(answer)
                if answer == "409 ORDER_NOT_CANCELLABLE":
                    self.tally.refused_at.setdefault(plan.order_id, datetime.now(UTC))
                settled = answer in ("200", "409 ORDER_NOT_CANCELLABLE")
                if status == 200 and body.get("status") != "CANCELLED":
                    settled = False
                if not settled and status not in (0, 503):
                    self.tally.wrong_answers.append(
                        f"cancel of {plan.order_id} answered {answer} {body.get('status', '')}"
                    )
                if status not in (0, 503):
                    break
                await asyncio.sleep(0.5 + attempt)

    async def wait_paid(self, rng: random.Random, plan: Plan) -> dict[str, Any] | None:
        for _ in range(10):
            status, order = await self.call(
                "get", "GET", f"{self.service(rng)}/orders/{plan.order_id}", headers=self.internal
            )
            if status == 200 and order.get("status") in ("PAID", "PARTIALLY_REFUNDED"):
                return order
            await asyncio.sleep(0.5)
        return None

    async def after_payment(self, rng: random.Random, plan: Plan) -> None:
        roll = rng.random()
        if roll < 0.55:
            return
        order = await self.wait_paid(rng, plan)
        left = plan.amount - (order or {}).get("refundedAmount", 0)
        tag = f"{self.args.seed}-{plan.index}"
        if roll < 0.62:  # a console cancellation, partial or full, then maybe a refund
            amount = rng.choice([None, max(1, left // 3)])
            await self.control(f"cancel/{plan.payment_id}", {"amount": amount})
            if amount is not None and rng.random() < 0.5:
                await asyncio.sleep(rng.uniform(0.0, 1.5))
                await self.refund(rng, plan, None, key=f"after-console-{tag}", copies=2)
            return
        kinds = ["full-key", "partial-key", "partials", "full-twice", "two-keys", "two-alike"]
        kind = rng.choice(kinds)
        if kind == "full-key":
            await self.refund(rng, plan, None, key=f"full-{tag}", copies=rng.choice([2, 3]))
        elif kind == "partial-key":
            part = rng.randint(1, max(1, left - 1))
            await self.refund(rng, plan, part, key=f"part-{tag}", copies=rng.choice([1, 2, 3]))
        elif kind == "partials":
            part = max(1, left // 4)
            await asyncio.gather(*(self.refund(rng, plan, part, key=None) for _ in range(3)))
        elif kind == "full-twice":
            await self.refund(rng, plan, None, key=None, repeat=2)
        elif kind == "two-keys":
            part = max(1, left // 2)
            await asyncio.gather(
                self.refund(rng, plan, part, key=f"a-{tag}", copies=2),
                self.refund(rng, plan, part, key=f"b-{tag}", copies=2),
            )
        else:  # two refunds alike in amount and reason, their answers lost and retried at once
            part = max(1, left // 3)
            alike = f"A:{tag}"
            await asyncio.gather(
                self.refund(rng, plan, part, key=f"x-{tag}", copies=2, reason=alike),
                self.refund(rng, plan, part, key=f"y-{tag}", copies=2, reason=alike),
            )

    async def disputes(self, rng: random.Random, plan: Plan) -> None:
        """The card company opens and resolves disputes a moment apart: each step changes
        the payment, none its status, so their snapshots differ by `updatedAt` alone."""
        for step, status in enumerate(rng.choice(DISPUTES)):
            await asyncio.sleep(rng.uniform(0.05, 0.8))  # apart by more than PortOne's ms
            body = {"status": status, "reason": f"chargeback {plan.index}.{step}"}
            await self.control(f"dispute/{plan.payment_id}", body)

    async def held_refund(self, rng: random.Random, plan: Plan) -> None:
        """A refund PortOne answers REQUESTED, and refuses at the very end, or never:
        together they outlast a reconciler pass."""
        order = await self.wait_paid(rng, plan)
        if order is None:
            return
        await self.control(f"hold/{plan.payment_id}", {"forever": plan.index % 2 == 0})
        amount = rng.choice([None, max(1, plan.amount // 2)])
        await self.refund(rng, plan, amount, key=f"held-{self.args.seed}-{plan.index}")

    async def refund(
        self,
        rng: random.Random,
        plan: Plan,
        amount: int | None,
        *,
        key: str | None,
        copies: int = 1,
        repeat: int = 1,
        reason: str | None = None,
    ) -> None:
        """One refund intent: `copies` at once (same key), retried like a careful client.
        A `reason` shared with another intent makes the two alike to PortOne."""
        if reason is None and key is not None:
            reason = f"K:{key}"
            self.tally.keyed_reasons.add(reason)
        elif reason is None:
            reason = f"N:{plan.index}:{secrets.token_hex(3)}"
        body: dict[str, Any] = {"reason": reason}
        if amount is not None:
            body["amount"] = amount
        headers = dict(self.internal) | ({"Idempotency-Key": key} if key else {})
        url = f"/orders/{plan.order_id}/refund"

        async def one() -> None:
            for attempt in range(4 if key else 1):
                await asyncio.sleep(rng.uniform(0.0, 0.3))
                status, answer = await self.call(
                    "refund", "POST", self.service(rng) + url, json=body, headers=headers
                )
                retry = status in (0, 503) or answer.get("code") == "REFUND_IN_PROGRESS"
                if not retry:
                    return
                await asyncio.sleep(1.0 + attempt)

        for _ in range(repeat):
            await asyncio.gather(*(one() for _ in range(copies)))

    # -- background: `python -m app reconcile` ------------------------------------------

    async def reconcile_cli(self, env: dict[str, str]) -> dict[str, Any] | None:
        with self.reconciler_log.open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                *service.command(self.per_pass),
                "reconcile",
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                preexec_fn=die_with_parent,
            )
        try:
            out, _ = await asyncio.wait_for(process.communicate(), timeout=120)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise
        self.tally.reconcile_runs[f"exit {process.returncode}"] += 1
        with self.reconciler_log.open("ab") as log:
            log.write(out)  # its log lines, then its summary
        lines = out.decode().strip().splitlines()
        with contextlib.suppress(ValueError, IndexError):
            summary: dict[str, Any] = json.loads(lines[-1])
            if summary.get("skipped"):
                self.tally.reconcile_runs["skipped"] += 1
            return summary
        return None

    async def reconcile_loop(self, env: dict[str, str], until: float) -> None:
        period = max(4.0, self.args.seconds / 6)
        while time.monotonic() + period < until:
            await asyncio.sleep(period)
            await self.reconcile_cli(env)

    async def settle_loop(self, until: float) -> None:
        """PortOne settles some of the cancellations it holds, now and then."""
        while time.monotonic() + SETTLE_EVERY < until:
            await asyncio.sleep(SETTLE_EVERY)
            await self.control("settle", {"share": 0.5})

    # -- the run ------------------------------------------------------------------------

    def _start_offset(self, index: int, window: float) -> float:
        return random.Random(f"{self.args.seed}:{index}:start").uniform(0, window)  # noqa: S311

    async def drive(self, env: dict[str, str]) -> None:
        started = time.monotonic()
        window = self.args.seconds * 0.6
        flows = [
            asyncio.create_task(self.order_flow(i, started + self._start_offset(i, window)))
            for i in range(self.args.orders)
        ]
        until = started + self.args.seconds
        background = [
            asyncio.create_task(self.reconcile_loop(env, until)),
            asyncio.create_task(self.settle_loop(until)),
            asyncio.create_task(self.outages.loop(until)),
        ]
        deadline = until + 20
        try:
            done, pending = await asyncio.wait(flows, timeout=max(1.0, deadline - time.monotonic()))
            self.flows_unfinished = len(pending)
            for task in done:
                if (error := task.exception()) is not None:
                    raise error
            for task in background:
                await task
        finally:  # on errors and Ctrl-C too: nothing of ours keeps running
            for task in [*flows, *background]:
                task.cancel()
            await asyncio.gather(*flows, *background, return_exceptions=True)
