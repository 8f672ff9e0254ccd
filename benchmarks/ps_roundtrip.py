"""The cost of one pull + push through the parameter server, against a plain numpy copy.

Run from the repository root::

    python -m benchmarks.ps_roundtrip            # P = 10k, 100k, 1M; SGD and Adam: about two minutes
    python -m benchmarks.ps_roundtrip --quick    # smoke run: a few dozen round trips per size

For each size P (float32 parameters) and each server optimizer, a :class:`rlteach.distributed.Cluster`
with one worker is started; the worker does ``warmup`` untimed round trips, then ``trips`` timed
ones, each ``θ, v = ctx.pull(); ctx.push(g, v)`` with a fixed gradient ``g``, timed inside the
worker with ``time.perf_counter`` (process start-up is not counted). The server is
``ServerConfig(mode="async", optimizer="sgd", lr=1e-9)``, so applying a push costs two passes over
θ; Adam (about ten passes) is measured for reference.

Two yardsticks, measured in the same run, make the target follow the machine:

* **copy**: in this process, the median time of ``numpy.copyto(dst, src)`` between two
  preallocated P-vectors (a round trip moves θ at least twice: the pull and the push);
* **wake-up**: the median time for one process to wake another and be woken back (a ping-pong)
  with each primitive the runtime could use: a pipe (``Connection.send_bytes``/``recv_bytes``), a
  pair of semaphores (what the runtime uses, :class:`rlteach.distributed.shared.Mailboxes`), and a
  flag in shared memory that the waiter spins on before it blocks on a semaphore. The fastest of
  them is the least any round trip can cost on this machine.

Target: round trip ≤ 1.5 × fastest wake-up + 5 × copy. Medians go to a markdown table; every
measurement to JSON.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from benchmarks.common import benchmark_parser, machine, parse_checked, write_json
from rlteach.distributed import ServerConfig, run_cluster
from rlteach.distributed.runtime import process_context

SIZES = (10_000, 100_000, 1_000_000)
OPTIMIZERS = ("sgd", "adam")
LR = 1e-9  # a push barely moves θ: the run measures the transport, not the learning
TRIPS = {10_000: 3_000, 100_000: 1_000, 1_000_000: 300}
WARMUP = 50
QUICK_TRIPS = 40
COPY_REPEATS = 500
PINGS, QUICK_PINGS = 3_000, 200
COPY_FACTOR, WAKE_FACTOR = 5.0, 1.5  # round trip <= 1.5 × fastest wake-up + 5 × copy
SPIN_PINGS = 20_000  # polls of the flag before the spinning waiter blocks


# ----------------------------------------------------------------------------- wake-up yardsticks
# Each ``*_echo`` runs in a child process and answers ``pings`` pings; each ``*_pingpong`` times them
# from the parent. Only the median of the last ``pings − 100`` round trips is kept.


def pipe_echo(conn, pings: int) -> None:
    for _ in range(pings):
        conn.send_bytes(conn.recv_bytes())


def pipe_pingpong(ctx, pings: int) -> list[float]:
    """Seconds of each ping-pong through a pipe: one byte each way."""
    here, there = ctx.Pipe()
    times = []
    with running(ctx, pipe_echo, there, pings):
        for _ in range(pings):
            start = time.perf_counter()
            here.send_bytes(b"x")
            here.recv_bytes()
            times.append(time.perf_counter() - start)
    return times


def semaphore_echo(ping, pong, pings: int) -> None:
    for _ in range(pings):
        ping.acquire(timeout=10)
        pong.release()


def semaphore_pingpong(ctx, pings: int) -> list[float]:
    """Seconds of each ping-pong through two semaphores (release one, block on the other)."""
    ping, pong = ctx.Semaphore(0), ctx.Semaphore(0)
    times = []
    with running(ctx, semaphore_echo, ping, pong, pings):
        for _ in range(pings):
            start = time.perf_counter()
            ping.release()
            pong.acquire(timeout=10)
            times.append(time.perf_counter() - start)
    return times


def spin_then_block(flags: np.ndarray, index: int, value: int, semaphore) -> None:
    """Wait until ``flags[index] == value``: poll it ``SPIN_PINGS`` times, then block on
    ``semaphore`` (which the writer releases after each write, so a blocked waiter wakes)."""
    for _ in range(SPIN_PINGS):
        if flags[index] == value:
            semaphore.acquire(False)  # take the writer's release: the next wait starts even
            return
    semaphore.acquire(timeout=10)


def spin_echo(buffer, ping, pong, pings: int) -> None:
    flags = np.frombuffer(buffer, dtype=np.int64)
    for i in range(1, pings + 1):
        spin_then_block(flags, 0, i, ping)
        flags[1] = i
        pong.release()


def spin_pingpong(ctx, pings: int) -> list[float]:
    """Seconds of each ping-pong through two int64 flags in shared memory, each waiter spinning
    on its flag before blocking on a semaphore."""
    buffer = ctx.RawArray("q", 2)
    flags = np.frombuffer(buffer, dtype=np.int64)
    ping, pong = ctx.Semaphore(0), ctx.Semaphore(0)
    times = []
    with running(ctx, spin_echo, buffer, ping, pong, pings):
        for i in range(1, pings + 1):
            start = time.perf_counter()
            flags[0] = i
            ping.release()
            spin_then_block(flags, 1, i, pong)
            times.append(time.perf_counter() - start)
    return times


WAKE_UPS = {
    "pipe": pipe_pingpong,
    "semaphore": semaphore_pingpong,
    "spin-then-block": spin_pingpong,
}


class running:
    """``with running(ctx, target, *args):`` — a child process running ``target(*args)``, joined
    (or killed after 10 s) on leaving the block."""

    def __init__(self, ctx, target, *args):
        self.process = ctx.Process(target=target, args=args, daemon=True)

    def __enter__(self):
        self.process.start()
        return self.process

    def __exit__(self, *exc):
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def wake_up_us(pings: int) -> dict[str, float]:
    """Median µs of a ping-pong with each primitive of ``WAKE_UPS``."""
    ctx = process_context()
    return {
        name: 1e6 * statistics.median(pingpong(ctx, pings)[100:])
        for name, pingpong in WAKE_UPS.items()
    }


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


def measure(size: int, optimizer: str, trips: int, copy_us: float, wake_us: float) -> dict:
    """One row: medians in µs of the round trip and its pull and push halves, the ratios to the
    copy and to the target ``WAKE_FACTOR × wake_us + COPY_FACTOR × copy_us``, and whether the
    round trip meets it."""
    seconds = roundtrip_seconds(size, optimizer, trips)
    roundtrip_us = 1e6 * statistics.median(seconds["roundtrip"])
    target_us = WAKE_FACTOR * wake_us + COPY_FACTOR * copy_us
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
        "target_us": target_us,
        "ratio_to_target": roundtrip_us / target_us,
        "meets_target": roundtrip_us <= target_us,
    }


def markdown_table(rows: list[dict], wake_ups: dict[str, float]) -> str:
    fastest = min(wake_ups, key=wake_ups.get)
    lines = [
        "Ping-pong between two processes (median µs): "
        + ", ".join(f"{name} {us:.1f}" for name, us in wake_ups.items())
        + f"; the fastest, {fastest}, sets the target.",
        "",
        "| P | server optimizer | copy µs | round trip µs (p90) | pull µs | push µs | "
        f"target µs (1.5 × {fastest} + 5 × copy) | round trip ÷ target |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['params']:,} | {r['optimizer']} | {r['copy_us']:,.1f} | "
            f"{r['roundtrip_us']:,.0f} ({r['roundtrip_p90_us']:,.0f}) | {r['pull_us']:,.0f} | "
            f"{r['push_us']:,.0f} | {r['target_us']:,.0f} | {r['ratio_to_target']:.2f} "
            f"({'met' if r['meets_target'] else 'missed'}) |"
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
    wake_ups = wake_up_us(QUICK_PINGS if args.quick else PINGS)
    print(", ".join(f"{name} ping-pong {us:.1f} µs" for name, us in wake_ups.items()), flush=True)
    fastest_us = min(wake_ups.values())
    rows = []
    for size in SIZES:
        copy_us = 1e6 * statistics.median(copy_seconds(size))
        for optimizer in args.optimizers:
            trips = QUICK_TRIPS if args.quick else TRIPS[size]
            row = measure(size, optimizer, trips, copy_us, fastest_us)
            rows.append(row)
            print(
                f"P={size:,} {optimizer}: copy {row['copy_us']:.1f} µs, round trip "
                f"{row['roundtrip_us']:.0f} µs (pull {row['pull_us']:.0f}, push "
                f"{row['push_us']:.0f})",
                flush=True,
            )
    table = markdown_table(rows, wake_ups)
    print("\n" + table)
    settings = {"lr": LR, "warmup": WARMUP, "copy_repeats": COPY_REPEATS, "quick": args.quick}
    path = write_json(
        args.out,
        {
            "machine": machine(),
            "settings": settings,
            "wake_up_us": wake_ups,
            "rows": rows,
            "table": table,
        },
    )
    print(f"\nraw numbers: {path}")


if __name__ == "__main__":
    main()
