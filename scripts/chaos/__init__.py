"""The parts of the stress command (scripts/stress.py), one concept a module.

standin   PortOne's API over the sandbox emulator, with faults (the one module that
          knows the emulator)
webhooks  PortOne's webhooks from the stand-in: late, out of order, duplicated
receiver  the shop's end of the order events
callers   the orders' lives: shops, customers, the console, reconciler passes
checks    what must hold afterwards, against PortOne's final state
run       the processes, the chaos, the final pass and the report
"""
