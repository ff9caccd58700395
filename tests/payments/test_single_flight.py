"""SingleFlight on its own, with a clock the test moves: what is shared, reused, and never
reused."""

from __future__ import annotations

import asyncio

from app.payments.single_flight import SingleFlight


class Reads:
    """PortOne's answers, each held until the test lets it land."""

    def __init__(self) -> None:
        self.started: list[asyncio.Future[str]] = []

    async def read(self) -> str:
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.started.append(answer)
        return await answer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def running() -> None:
    """Until the tasks started so far have run as far as they can."""
    for _ in range(5):
        await asyncio.sleep(0)


def shared_reads(clock: Clock) -> SingleFlight[str]:
    return SingleFlight(lambda status: status == "PENDING", reuse_seconds=1.0, clock=clock)


async def test_calls_at_once_share_one_read_and_a_waiting_answer_is_reused_for_a_second() -> None:
    clock, reads = Clock(), Reads()
    shared = shared_reads(clock)

    callers = [asyncio.create_task(shared.shared("pay-1", reads.read)) for _ in range(5)]
    await running()
    reads.started[0].set_result("PENDING")

    assert await asyncio.gather(*callers) == ["PENDING"] * 5
    clock.now = 0.9
    assert await shared.shared("pay-1", reads.read) == "PENDING"
    assert len(reads.started) == 1
    clock.now = 1.0
    later = asyncio.create_task(shared.shared("pay-1", reads.read))
    await running()
    reads.started[1].set_result("PAID")
    assert await later == "PAID"
    assert len(reads.started) == 2


async def test_a_settled_answer_is_never_reused() -> None:
    clock, reads = Clock(), Reads()
    shared = shared_reads(clock)
    first = asyncio.create_task(shared.shared("pay-1", reads.read))
    await running()
    reads.started[0].set_result("PAID")
    assert await first == "PAID"

    again = asyncio.create_task(shared.shared("pay-1", reads.read))
    await running()

    assert len(reads.started) == 2  # read again: the order answers a settled payment
    reads.started[1].set_result("PAID")
    assert await again == "PAID"


async def test_an_older_waiting_read_landing_after_a_settled_one_is_not_reused() -> None:
    clock, reads = Clock(), Reads()
    shared = shared_reads(clock)
    public = asyncio.create_task(shared.shared("pay-1", reads.read))
    await running()
    clock.now = 0.1
    webhook = asyncio.create_task(shared.fresh("pay-1", reads.read))
    await running()
    reads.started[1].set_result("PAID")  # the webhook's read, begun later, lands first
    assert await webhook == "PAID"
    reads.started[0].set_result("PENDING")  # then the public read begun before the payment
    assert await public == "PENDING"

    clock.now = 0.2
    after = asyncio.create_task(shared.shared("pay-1", reads.read))
    await running()

    assert len(reads.started) == 3  # not the stale PENDING: a read of its own
    reads.started[2].set_result("PAID")
    assert await after == "PAID"
