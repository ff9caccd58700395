"""The parts of the benchmark (bench/run.py), one concept a module.

settings    what every part agrees on: paths, cores, C, the store
servers     the stand-in, the service and the other verifiers, started and ready
database    orders for each run, and the check that every paid order was paid once
load        the load generator (wrk, else bench/loadgen.py) and its request files
resources   CPU and memory of a server, from /proc
workloads   one measured run of a workload on a target, and the interleaved rounds
report      rows, ratios, the targets, the table and bench/results.json
profiling   py-spy on the service during one more run
"""
