"""The figures of a bench run: rows over rounds, ratios, the targets, the printed table."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Any

from bench.harness.settings import CONCURRENCY, LATENCIES, ROOT
from bench.harness.workloads import WORKLOADS

Row = dict[str, Any]
Check = tuple[str, bool, str]


SPREAD = ("rps", "p50_ms", "p99_ms", "cpu_ms_per_request", "peak_rss_mib")


def summarise(runs: list[dict[str, Any]]) -> list[Row]:
    """One row per (workload, latency, target): the median over its rounds of each figure in
    SPREAD, with the range in `range`; counts summed."""
    keys: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for run in runs:
        keys.setdefault((run["workload"], run["latency_ms"], run["target"]), []).append(run)
    rows = []
    for (workload, latency, target), group in keys.items():
        requests = sum(r["requests"] for r in group)
        seconds = sum(r["seconds"] for r in group)
        reads = sum(r["portone_reads"] for r in group)
        rows.append(
            {
                "workload": workload,
                "latency_ms": latency,
                "target": target,
                "rounds": len(group),
                "requests": requests,
                "errors": sum(r["errors"] for r in group),
                **{key: statistics.median(r[key] for r in group) for key in SPREAD},
                "range": {
                    key: (min(r[key] for r in group), max(r[key] for r in group)) for key in SPREAD
                },
                "db_connections_per_1k": sum(r["db_connections_opened"] for r in group)
                * 1000
                / max(requests, 1),
                "portone_reads_per_s": reads / seconds,
                "portone_reads_per_request": reads / max(requests, 1),
            }
        )
    return rows


def paired(runs: list[dict[str, Any]], workload: str, latency: int) -> dict[str, list[float]]:
    """The service over the yardstick in each round that measured both, figure by figure:
    a ratio within one round leaves out what the machine did between rounds."""
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for run in runs:
        if (run["workload"], run["latency_ms"]) == (workload, latency):
            by_round.setdefault(run["round"], {})[run["target"]] = run
    pairs = [r for _, r in sorted(by_round.items()) if {"service", "minimal"} <= r.keys()]
    return {
        key: [r["service"][key] / r["minimal"][key] for r in pairs]
        for key in ("rps", "p99_ms", "cpu_ms_per_request")
    }


def _by_key(rows: list[Row]) -> dict[tuple[str, int, str], Row]:
    return {(r["workload"], r["latency_ms"], r["target"]): r for r in rows}


def ratios(
    rows: list[Row], runs: list[dict[str, Any]], rss_rounds: list[dict[str, int]]
) -> dict[str, Any]:
    """The service against the minimal verifier (the yardstick): the median of the ratios
    of the rounds (each round's in `rounds`); the ceiling, the sample."""
    by = _by_key(rows)
    constant = by.get(("constant", 0, "constant"))
    ceiling = constant["rps"] if constant else None
    out: dict[str, Any] = {"ceiling_rps": ceiling, "service_vs_minimal": {}, "vs_ceiling": {}}
    for (workload, latency, target), row in by.items():
        if target != "service":
            continue
        key = f"{workload}@{latency}ms"
        minimal = by.get((workload, latency, "minimal"))
        rounds = paired(runs, workload, latency)
        if minimal and rounds["rps"]:
            out["service_vs_minimal"][key] = {
                "rps": statistics.median(rounds["rps"]),
                "p99": statistics.median(rounds["p99_ms"]),
                "cpu": statistics.median(rounds["cpu_ms_per_request"]),
                "rounds": rounds,
            }
        if ceiling:
            out["vs_ceiling"][key] = row["rps"] / ceiling
    for latency in LATENCIES:
        service, sample = (
            by.get(("first", latency, "service")),
            by.get(("first", latency, "sample")),
        )
        if service and sample:
            out[f"service_vs_sample_first@{latency}ms"] = service["rps"] / sample["rps"]
        hot = {
            target: {
                "rps": row["rps"],
                "portone_reads_per_s": row["portone_reads_per_s"],
                "portone_reads_per_request": row["portone_reads_per_request"],
            }
            for (workload, at, target), row in by.items()
            if (workload, at) == ("hot", latency)
        }
        if hot:
            out[f"hot@{latency}ms"] = hot
    for target in ("service", "minimal"):
        first, repeat = by.get(("first", 0, target)), by.get(("repeat", 0, target))
        if first and repeat:
            out[f"repeat_vs_first_{target}"] = repeat["rps"] / first["rps"]
    if len(rss_rounds) >= 2:
        # From the end of the first round, once every workload has run and warmed up.
        first_rss, last_rss = rss_rounds[0]["service"], rss_rounds[-1]["service"]
        out["service_rss_growth_between_rounds"] = last_rss / first_rss - 1
    return out


def goal_checks(rows: list[Row], r: dict[str, Any]) -> list[Check]:
    """The targets, as (target, met, measured); the hot payment has none (it reports
    the reads it cost)."""
    vs = r["service_vs_minimal"]
    checks = []
    first = vs.get("first@0ms")
    if first:
        rps, p99 = first["rps"], first["p99"]
        what = "first-time completions, latency 0:"
        n = len(first["rounds"]["rps"])
        median = f"median of {n} round{'s' * (n > 1)}"
        checks.append((f"{what} >= 0.8x the minimal verifier", rps >= 0.8, f"{rps:.2f}x, {median}"))
        checks.append(
            (f"{what} p99 <= 1.3x the minimal verifier's", p99 <= 1.3, f"{p99:.2f}x, {median}")
        )
    if "repeat_vs_first_service" in r:
        value = r["repeat_vs_first_service"]
        checks.append(("repeated >= 2x first-time completions", value >= 2, f"{value:.2f}x"))
    for latency in LATENCIES:
        webhook = vs.get(f"webhook@{latency}ms")
        if webhook:
            value = webhook["rps"]
            what = f"signed webhooks, latency {latency} ms: >= 0.8x the minimal verifier"
            checks.append((what, value >= 0.8, f"{value:.2f}x"))
    peak = max((row["peak_rss_mib"] for row in rows if row["target"] == "service"), default=0)
    checks.append(("service peak RSS <= 150 MiB", peak <= 150, f"{peak:.0f} MiB"))
    if "service_rss_growth_between_rounds" in r:
        growth = r["service_rss_growth_between_rounds"]
        checks.append(("service RSS growth between rounds < 5%", growth < 0.05, f"{growth:+.1%}"))
    return checks


def print_table(rows: list[Row], r: dict[str, Any]) -> None:
    ceiling = r["ceiling_rps"]
    print("\nmedians over the rounds that measured each:")
    header = (
        f"{'workload':26} {'PortOne':>7} {'target':8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'CPU ms/req':>10} {'peak RSS':>9} {'conn/1k':>7} {'reads/req':>9} {'errors':>6} "
        f"{'vs minimal':>10} {'vs ceiling':>10}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    order = {name: position for position, name in enumerate(WORKLOADS)}
    for row in sorted(rows, key=lambda x: (x["latency_ms"], order[x["workload"]], x["target"])):
        key = f"{row['workload']}@{row['latency_ms']}ms"
        vs_minimal = ""
        if row["target"] == "service" and key in r["service_vs_minimal"]:
            vs_minimal = f"{r['service_vs_minimal'][key]['rps']:.2f}x"
        print(
            f"{WORKLOADS[row['workload']]:26} {row['latency_ms']:>4} ms {row['target']:8} "
            f"{row['rps']:7.0f} {row['p50_ms']:7.1f} {row['p99_ms']:7.1f} "
            f"{row['cpu_ms_per_request']:10.2f} {row['peak_rss_mib']:6.0f} MiB "
            f"{row['db_connections_per_1k']:7.0f} {row['portone_reads_per_request']:9.2f} "
            f"{row['errors']:6} {vs_minimal:>10} "
            + (f"{row['rps'] / ceiling:9.2f}x" if ceiling else "")
        )


FIGURES = (
    ("completions/s", "rps", "{:.0f}"),
    ("p50 ms", "p50_ms", "{:.1f}"),
    ("p99 ms", "p99_ms", "{:.1f}"),
    ("CPU ms/req", "cpu_ms_per_request", "{:.2f}"),
    ("peak RSS MiB", "peak_rss_mib", "{:.0f}"),
)


def print_first(rows: list[Row], r: dict[str, Any]) -> None:
    """First-time completions at latency 0, the figure the targets are set on: each target's
    median and range over the rounds, and the ratios round by round."""
    by = _by_key(rows)
    ratio = r["service_vs_minimal"].get("first@0ms")
    if ratio is None:
        return
    n = len(ratio["rounds"]["rps"])
    print(f"\nfirst-time completions, PortOne latency 0, {n} interleaved rounds: median (range)")
    print(f"{'':14}" + "".join(f"{title:>22}" for title, _, _ in FIGURES))
    for target in ("minimal", "service"):
        row = by[("first", 0, target)]
        cells = []
        for _, key, form in FIGURES:
            low, high = row["range"][key]
            cells.append(f"{form.format(row[key])} ({form.format(low)}-{form.format(high)})")
        print(f"{target:14}" + "".join(f"{cell:>22}" for cell in cells))
    for title, key, figure in (
        ("completions/s", "rps", "rps"),
        ("p99", "p99_ms", "p99"),
        ("CPU ms/req", "cpu_ms_per_request", "cpu"),
    ):
        rounds = ", ".join(f"{value:.2f}" for value in ratio["rounds"][key])
        print(f"service / minimal, {title}: {ratio[figure]:.2f}x median (rounds {rounds})")


def print_figures(r: dict[str, Any], checks: list[Check]) -> None:
    if r["ceiling_rps"]:
        print(f"\nceiling (constant JSON): {r['ceiling_rps']:.0f} req/s")
    for name in ("service", "minimal"):
        if f"repeat_vs_first_{name}" in r:
            print(f"repeated vs first-time ({name}): {r[f'repeat_vs_first_{name}']:.2f}x")
    for latency in LATENCIES:
        if f"service_vs_sample_first@{latency}ms" in r:
            value = r[f"service_vs_sample_first@{latency}ms"]
            print(f"first-time, latency {latency} ms, vs PortOne's Flask sample: {value:.2f}x")
    for latency in LATENCIES:
        for target, hot in r.get(f"hot@{latency}ms", {}).items():
            print(
                f"hot payment, latency {latency} ms, C={CONCURRENCY}, {target}: "
                f"{hot['rps']:.0f} req/s, {hot['portone_reads_per_s']:.0f} PortOne reads/s "
                f"({hot['portone_reads_per_request']:.2f} a request)"
            )
    print("\ntargets (the service against the minimal verifier, its yardstick):")
    for what, met, value in checks:
        print(f"  [{'met ' if met else 'MISS'}] {what}  ({value})")


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=False)
        return done.stdout.decode().strip()

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "app_files_changed_since_commit": len(
            git("status", "--porcelain", "--", "app").splitlines()
        ),
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }
