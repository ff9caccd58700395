"""The parts of the stress command (scripts/stress.py), one concept a module.

standin   PortOne's API over the sandbox emulator, with faults (the one module that
          knows the emulator)
webhooks  PortOne's webhooks from the stand-in: late, out of order, duplicated
receiver  the shop's end of the order events
service   `python -m app` as the run starts it: a reconciler pass takes a few payments
outages   the database's connections cut while PortOne announces payments no order has
callers   the orders' lives: shops, customers, the card company, the console, passes
checks    what must hold afterwards, against PortOne's final state (the money's in money,
          closed orders' and manual confirmations' in closing)
run       the processes, the chaos, the final passes and the report
"""
