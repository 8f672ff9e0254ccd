"""Checkers of notebook 08 (beyond one machine: the ring all-reduce and the α–β model)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rlteach.checks.core import (
    CheckResult,
    Exercise,
    Solution,
    answers,
    as_array,
    attempt,
    check_cases,
    check_prediction,
    difference,
    scaled_slip,
)
from rlteach.distributed import traffic

RING = Exercise("08.1", "a ring all-reduce", "implement")
SERVER_BYTES = Exercise(
    "08.2",
    "the server's bytes per update at W = 100",
    "predict",
    forbidden=(traffic.traffic_per_update,),
)
SERVER_WINS = Exercise(
    "08.3", "from which latency the server wins", "explain", forbidden=(traffic.link_seconds,)
)
MANY = 100  # 08.2's number of workers
Message = tuple[int, int, np.ndarray]  # (sending rank, receiving rank, the values sent)
SENT_NOTHING = (
    "your ranks sent nothing: call `send(src, dst, values)` for every message a rank sends, with a "
    "copy of the chunk it sends; the check takes the ring's traffic from these calls"
)

__all__ = ["check_ring_allreduce", "check_server_bytes", "check_server_wins_above"]


def check_ring_allreduce(student: Solution) -> CheckResult:
    """Exercise 08.1: ``ring_allreduce(arrays, send) -> results``: ``arrays`` a list of ``W``
    float64 arrays ``[P]``, one per rank (``P`` a multiple of ``W``); ``send(src, dst, values)``,
    given by the check, records one message from rank ``src`` to rank ``dst``; ``results`` the list
    of the ``W`` ranks' arrays at the end. Compared: each result with the sum of ``arrays``, and
    the recorded messages with a ring's (where each goes, what it holds, how many each rank sends,
    and whether the sums the ranks end with could have reached them through the messages)."""
    cases = answers("08")[RING.id]["cases"]

    def check(guarded_student: Solution) -> CheckResult:
        for i, case in enumerate(cases):
            (arrays,) = case["args"]
            messages, send = _recorder()
            results = guarded_student([a.copy() for a in arrays], send)
            problem = (
                (None if messages else SENT_NOTHING)
                or _results_problem(i, arrays, case["expected"], results)
                or _messages_problem(i, arrays, messages)
            )
            if problem:
                return RING.result("not yet", problem)
        workers, values = len(arrays), sum(v.size for _, _, v in messages)
        return RING.result(
            "passed",
            f"agrees with the sum on {len(cases)} cases, through a ring's messages. In the last, "
            f"W = {workers} and P = {arrays[0].size}: each rank sent {len(messages) // workers} "
            f"messages to its right neighbour, {values // workers} values in all",
        )

    return attempt(RING, student, check)


def _recorder() -> tuple[list[Message], Callable[[int, int, Any], None]]:
    """A list of messages and the ``send(src, dst, values)`` that appends one to it (a copy of
    ``values``, flattened)."""
    messages: list[Message] = []

    def send(src: int, dst: int, values: Any) -> None:
        messages.append((int(src), int(dst), as_array(values).flatten()))

    return messages, send


def _results_problem(
    case: int, arrays: list[np.ndarray], expected: np.ndarray, results: Any
) -> str | None:
    """What is wrong with the ranks' arrays: their form or number, or the first rank whose array
    is not the sum (naming a mean, and a sum held in some chunks only: no all-gather)."""
    workers = len(arrays)
    if not isinstance(results, list | tuple | np.ndarray) or any(np.ndim(r) != 1 for r in results):
        return "return the list of the W ranks' arrays, one array [P] per rank"
    if len(results) != workers:
        return f"case {case}: W = {workers} ranks, so {workers} arrays, one per rank; got {len(results)}"
    for rank, result in enumerate(results):
        got = as_array(result)
        problem = difference(case, arrays, expected, got, atol=1e-9)
        if not problem:
            continue
        if np.allclose(got, expected / workers, rtol=1e-9):
            return f"rank {rank} holds the mean; an all-reduce returns the sum\n{problem}"
        if got.shape == expected.shape:
            chunks = zip(np.split(got, workers), np.split(expected, workers), strict=True)
            summed = [c for c, (g, w) in enumerate(chunks) if np.allclose(g, w, rtol=1e-9)]
            if summed:
                return (
                    f"rank {rank} holds the full sum in chunk(s) {summed} of 0..{workers - 1} only: "
                    "after the reduce-scatter, the all-gather must pass each summed chunk around the "
                    f"ring\n{problem}"
                )
        return f"rank {rank}'s array is not the sum of the W arrays\n{problem}"
    return None


def _messages_problem(case: int, arrays: list[np.ndarray], messages: list[Message]) -> str | None:
    """What is wrong with the messages, in the order they were sent: one that does not go to the
    sender's right neighbour, is not one chunk, or holds what its sender could not have (a chunk
    summed over more ranks than had reached it); then a rank that sent another number of
    messages than the ring's; then a chunk whose sum never reached a rank through them."""
    workers, size = len(arrays), arrays[0].size
    where = f"case {case} (W = {workers}, P = {size})"
    chunks = np.stack([np.split(a, workers) for a in arrays])  # [rank, chunk, P / W]
    held = np.ones((workers, workers), dtype=int)  # held[r, c]: ranks r, r − 1, … summed in it
    for k, (src, dst, values) in enumerate(messages):
        said = f"{where}: message {k}, from rank {src} to rank {dst},"
        if not 0 <= src < workers or dst != (src + 1) % workers:
            return f"{said} does not go to the sender's right neighbour, rank (src + 1) mod W"
        if values.size != size // workers:
            whole = " (a whole vector)" if values.size == size else ""
            return f"{said} holds {values.size} values{whole}; a ring's message is one chunk of P/W"
        found = _partial_sum(chunks, src, values)
        if found is None:
            return (
                f"{said} holds values that are neither the sender's chunk nor that chunk summed "
                "over the ranks before it in the ring: send a copy of the chunk the rank passes on"
            )
        chunk, ranks = found
        if ranks > held[src, chunk]:
            return (
                f"{said} holds chunk {chunk} summed over {ranks} ranks, but the messages before "
                f"it had brought rank {src} that chunk summed over {held[src, chunk]}: a rank can "
                "pass on only what it holds"
            )
        held[dst, chunk] = max(held[dst, chunk], min(ranks + 1, workers))  # dst adds its own
    counts = np.bincount([src for src, _, _ in messages], minlength=workers)
    steps = 2 * (workers - 1)  # one message in each step of the reduce-scatter and the all-gather
    for rank, count in enumerate(counts):
        if count != steps:
            why = (
                "the reduce-scatter's W − 1; the all-gather sends as many again"
                if count == workers - 1
                else "each rank sends one chunk in every step of the two phases"
            )
            return f"{where}: rank {rank} sent {count} messages: {why}"
    short = np.argwhere(held < workers)
    if len(short):
        rank, chunk = short[0]
        return (
            f"{where}: the messages bring rank {rank} chunk {chunk} summed over only "
            f"{held[rank, chunk]} of the {workers} ranks, yet its result holds the full sum: a "
            "rank's result must come from what its neighbour sends, not from the other ranks' arrays"
        )
    return None


def _partial_sum(chunks: np.ndarray, src: int, values: np.ndarray) -> tuple[int, int] | None:
    """``(c, k)`` when ``values`` is chunk ``c`` summed over the ``k`` ranks ``src, src − 1, …``
    (``chunks [rank, chunk, P / W]``, the ranks' vectors cut into chunks); else None."""
    workers = len(chunks)
    for chunk in range(workers):
        total = np.zeros_like(values)
        for ranks in range(1, workers + 1):
            total = total + chunks[(src - ranks + 1) % workers, chunk]
            if np.allclose(values, total, rtol=1e-9, atol=1e-12):
                return chunk, ranks
    return None


def check_server_bytes(
    student: Solution, params: int, measured: Sequence[dict[str, Any]]
) -> CheckResult:
    """Exercise 08.2: ``server_megabytes() -> MB`` the parameter server's sockets carry per update
    (sent + received) with ``W = 100`` workers and ``params`` values, graded against (8.1);
    ``measured`` are section 1's parameter-server runs (``traffic.measure_traffic`` with a
    ``workers`` key): after a pass, their server bytes, extrapolated to ``W = 100`` along the
    straight line through them, are shown."""
    workers = [run["workers"] for run in measured]
    slope, intercept = np.polyfit(workers, [run["server"] for run in measured], 1)
    per_worker = traffic.traffic_per_update("parameter server", 1, params)["busiest"]
    law = traffic.traffic_per_update("parameter server", MANY, params)["busiest"] / 1e6
    ring = traffic.traffic_per_update("all-reduce", MANY, params)["busiest"] / 1e6
    slips = {
        f"a ring rank's bytes at W = {MANY} (8.2); the exercise asks for the server's": ring,
        "one direction only; the server receives the gradients and sends θ back": law / 2,
        "values, not bytes: a float32 value is 4 bytes": law / 4,
        "bytes, not MB (10⁶ bytes)": law * 1e6,
        "MiB (2²⁰ bytes), not MB (10⁶ bytes)": law * 1e6 / 2**20,
    }

    def explain(law: float, extrapolated: float) -> str:
        return (
            f"That {extrapolated:.4g} MB is extrapolated, not measured: section 1 measured the "
            f"server at W = {', '.join(map(str, workers))}, and the straight line through its "
            f"bytes, extended to W = {MANY}, gives it. Along that line the server's bytes grew by "
            f"{slope / 1e6:.4g} MB per added worker, {100 * (slope / per_worker - 1):+.2f} % from "
            f"(8.1)'s 2 · 4P = {per_worker / 1e6:.4g} MB (the kernel's counters count the payload: "
            f"the gradients and θ, and gloo's own messages besides). (8.1) gives 2 · {MANY} · 4P "
            f"= {law:.4g} MB at W = {MANY}, against {ring:.4g} MB for a ring rank (8.2), "
            f"{law / ring:.3g} times less."
        )

    return check_prediction(
        SERVER_BYTES,
        student,
        law,
        (slope * MANY + intercept) / 1e6,
        explain,
        slips,
        shown_as="extrapolated from section 1",
    )


def check_server_wins_above(student: Solution) -> CheckResult:
    """Exercise 08.3: ``server_wins_above(W, P, beta) -> α*`` in seconds, the latency above which a
    synchronous server's update (8.6) is faster than a ring's (8.4) on a full-duplex link, for
    ``W ≥ 3``; compared at stored points."""
    return check_cases(SERVER_WINS, student, atol=1e-12, diagnose=_crossover_slip)


def _crossover_slip(args: list[Any], expected: np.ndarray, got: np.ndarray) -> str | None:
    """Name the usual slips of 08.3, each as its ratio to the answer: the server's own latencies
    left out, values counted as bytes, microseconds."""
    workers = args[0]
    return scaled_slip(
        got,
        expected,
        (
            (
                (workers - 2) / (workers - 1),
                "you left out the server's own 2α (8.6): it pays two latencies too",
            ),
            (1 / 4, "P values of float32 are 4P bytes"),
            (1e6, "return seconds, not microseconds"),
        ),
        rtol=1e-9,
    )
