"""The cost of one pull + push through the parameter server, against a plain numpy copy.

Run from the repository root::

    python -m benchmarks.ps_roundtrip            # P = 10k, 100k, 1M; SGD and Adam: about a minute
    python -m benchmarks.ps_roundtrip --quick    # smoke run: a few dozen round trips per size

For each size P (float32 parameters) and each server optimizer, a :class:`rlteach.distributed.Cluster`
with one worker is started; the worker does ``warmup`` untimed round trips, then ``trips`` timed
ones, each ``θ, v = ctx.pull(); ctx.push(g, v)`` with a fixed gradient ``g``, timed inside the
worker with ``time.perf_counter`` (process start-up is not counted). The server is
``ServerConfig(mode="async", optimizer="sgd", lr=1e-9)``, so applying a push costs two passes over
θ; Adam (about ten passes) is measured for reference. In this process, the median time of
``numpy.copyto(dst, src)`` between two preallocated P-vectors is the yardstick. The issue's target:
round trip ≤ 5 × copy + 100 µs. Medians go to a markdown table; every measurement to JSON.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from benchmarks.common import benchmark_parser, machine, parse_checked, write_json
from rlteach.distributed import ServerConfig, run_cluster

SIZES = (10_000, 100_000, 1_000_000)
OPTIMIZERS = ("sgd", "adam")
LR = 1e-9  # a push barely moves θ: the run measures the transport, not the learning
TRIPS = {10_000: 3_000, 100_000: 1_000, 1_000_000: 300}
WARMUP = 50
QUICK_TRIPS = 40
COPY_REPEATS = 500
TARGET_FACTOR, TARGET_OFFSET_US = 5.0, 100.0  # round trip <= 5 × copy + 100 µs


def roundtrip_worker(ctx, trips: int, warmup: int) -> dict:
    """Worker: ``warmup + trips`` pull+push round trips; the seconds of the last ``trips`` pulls,
    pushes and whole round trips."""
    grad = np.ones(ctx.pull()[0].size, dtype=np.float32)
    pulls, pushes, totals = [], [], []
    for _ in range(warmup + trips):
        start = time.perf_counter()
        _, version = ctx.pull()
        pulled = time.perf_counter()
        ctx.push(grad, version)
        end = time.perf_counter()
        pulls.append(pulled - start)
        pushes.append(end - pulled)
        totals.append(end - start)
    return {"pull": pulls[warmup:], "push": pushes[warmup:], "roundtrip": totals[warmup:]}


def roundtrip_seconds(size: int, optimizer: str, trips: int, warmup: int = WARMUP) -> dict:
    """Seconds of each timed pull, push and round trip of one worker on a fresh server holding
    ``size`` float32 parameters."""
    result = run_cluster(
        roundtrip_worker,
        workers=1,
        params=np.zeros(size, dtype=np.float32),
        server=ServerConfig(mode="async", optimizer=optimizer, lr=LR),
        args=(trips, warmup),
    )
    return result.results[0]


def copy_seconds(size: int, repeats: int = COPY_REPEATS) -> list[float]:
    """Seconds of each of ``repeats`` ``numpy.copyto`` calls between two preallocated
    ``[size]`` float32 vectors (the first ten, warming the pages up, are not kept)."""
    src = np.random.default_rng(0).random(size, dtype=np.float32)
    dst = np.empty_like(src)
    times = []
    for _ in range(repeats + 10):
        start = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - start)
    return times[10:]


def measure(size: int, optimizer: str, trips: int, copy_us: float) -> dict:
    """One row: medians in µs of the round trip and its pull and push halves, the ratio to the
    copy and whether the round trip meets the target."""
    seconds = roundtrip_seconds(size, optimizer, trips)
    roundtrip_us = 1e6 * statistics.median(seconds["roundtrip"])
    return {
        "params": size,
        "optimizer": optimizer,
        "trips": trips,
        "copy_us": copy_us,
        "roundtrip_us": roundtrip_us,
        "roundtrip_p90_us": 1e6 * float(np.quantile(seconds["roundtrip"], 0.9)),
        "pull_us": 1e6 * statistics.median(seconds["pull"]),
        "push_us": 1e6 * statistics.median(seconds["push"]),
        "ratio": roundtrip_us / copy_us,
        "target_us": TARGET_FACTOR * copy_us + TARGET_OFFSET_US,
        "meets_target": roundtrip_us <= TARGET_FACTOR * copy_us + TARGET_OFFSET_US,
    }


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| P | server optimizer | copy µs | round trip µs (p90) | pull µs | push µs | "
        "round trip ÷ copy | ≤ 5 × copy + 100 µs |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['params']:,} | {r['optimizer']} | {r['copy_us']:,.1f} | "
            f"{r['roundtrip_us']:,.0f} ({r['roundtrip_p90_us']:,.0f}) | {r['pull_us']:,.0f} | "
            f"{r['push_us']:,.0f} | {r['ratio']:,.1f} | "
            f"{'yes' if r['meets_target'] else 'no'} (target {r['target_us']:,.0f}) |"
        )
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = benchmark_parser(
        __doc__, "ps_roundtrip", quick_help=f"smoke run: {QUICK_TRIPS} round trips per size"
    )
    parser.add_argument("--optimizers", nargs="+", choices=OPTIMIZERS, default=list(OPTIMIZERS))
    return parse_checked(parser, argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    rows = []
    for size in SIZES:
        copy_us = 1e6 * statistics.median(copy_seconds(size))
        for optimizer in args.optimizers:
            trips = QUICK_TRIPS if args.quick else TRIPS[size]
            row = measure(size, optimizer, trips, copy_us)
            rows.append(row)
            print(
                f"P={size:,} {optimizer}: copy {row['copy_us']:.1f} µs, round trip "
                f"{row['roundtrip_us']:.0f} µs (pull {row['pull_us']:.0f}, push "
                f"{row['push_us']:.0f})",
                flush=True,
            )
    table = markdown_table(rows)
    print("\n" + table)
    settings = {"lr": LR, "warmup": WARMUP, "copy_repeats": COPY_REPEATS, "quick": args.quick}
    path = write_json(
        args.out, {"machine": machine(), "settings": settings, "rows": rows, "table": table}
    )
    print(f"\nraw numbers: {path}")


if __name__ == "__main__":
    main()
