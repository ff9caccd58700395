"""The chaos command: two service processes, one database, and a PortOne that fails at random.

    python3 scripts/stress.py [--orders N] [--seconds S] [--seed K]

Creates a fresh database and migrates it; starts a PortOne stand-in (scripts/chaos/standin.py,
keeping its state in `app.sandbox.emulator.Emulator`) that answers 500s, 429s, hangs past
the client's timeout, slow answers, stale reads, and cancellations that go through while
their answer is lost (all drawn from the seed); starts two `python -m app serve` processes
in live mode on that database, with a short reconciler interval and order events
delivered to a receiver run here. Then it drives N orders over S seconds: orders created
on either process, customers paying at the stand-in (honest, tampered, virtual accounts
and deposits, failures), concurrent /payments/complete calls on both processes, signed
webhooks sent duplicated and out of order to both, refunds (full, partial, with and
without Idempotency-Key, repeated), console cancellations, and `python -m app reconcile`
passes. Some customers pay on a manual channel (honest or tampered): completions bring
the `paymentToken` to both processes at once, retried with it after failures, while
PortOne's confirm call fails, hangs, or goes through with its answer lost. The shop
cancels some orders at random moments around their payment, on either process; some
orders expire a few seconds after they are made, paid before, around or after.
Meanwhile the card company opens and resolves disputes (snapshots that differ by
`updatedAt` alone), PortOne holds some refunds REQUESTED past what one reconciler pass
takes (the services' passes are bounded to a few payments a list), and now and then every
database connection is cut while PortOne announces payments no order has. Last, it turns
every fault off, runs as many reconciler passes as the longest list needs, waits for the
webhooks and order events, checks every guarantee of docs/contract.md against PortOne's
final state (a closed order keeps no money, a cancel answered 200 leaves none and one
answered 409 means the order took some, a completion answered PAID holds, nothing
tampered is charged, no token twice, no money first seen after the expiry is kept), and
prints the counts. Exit code 0 only when every check holds.

Everything listens on 127.0.0.1; every process started here is stopped on the way out,
on errors and Ctrl-C too. A run with the defaults takes about a minute. The parts are in
scripts/chaos/.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _venv

_venv.enter()
sys.path.insert(0, str(_venv.ROOT))

from scripts.chaos.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(description=__doc__.splitlines()[0]))
