"""Checkers of notebook 08 (beyond one machine: the ring all-reduce and the α–β model)."""

from __future__ import annotations

from collections.abc import Sequence
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
)
from rlteach.distributed import traffic

RING = Exercise("08.1", "a ring all-reduce", "implement", forbidden=(traffic.traffic_per_update,))
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
STEPS = "A rank sends one chunk of P/W values in each of the W − 1 steps of each phase."
PAIR = "return a pair `(results, sent)`: the W ranks' arrays and the values one rank sends"


__all__ = ["check_ring_allreduce", "check_server_bytes", "check_server_wins_above"]


def check_ring_allreduce(student: Solution) -> CheckResult:
    """Exercise 08.1: ``ring_allreduce(arrays) -> (results, sent)``: ``arrays`` a list of ``W``
    float64 arrays ``[P]`` (``P`` a multiple of ``W``), ``results`` the ``W`` ranks' arrays after
    the ring's reduce-scatter and all-gather (each ``Σ_r arrays[r]``), ``sent`` the values one
    rank sends, ``2 (W − 1) P / W`` (notebook 08, (8.2) counts them in bytes, sent + received)."""
    cases = answers("08")[RING.id]["cases"]

    def check(guarded_student: Solution) -> CheckResult:
        for i, case in enumerate(cases):
            (arrays,) = case["args"]
            value = guarded_student([a.copy() for a in arrays])
            if not (isinstance(value, tuple | list) and len(value) == 2):
                return RING.result("not yet", PAIR)
            results, sent = value
            problem = _results_problem(i, arrays, case["expected"][0], list(results))
            problem = problem or _sent_problem(i, arrays, case["expected"][1], float(sent))
            if problem:
                return RING.result("not yet", problem)
        return RING.result("passed", f"agrees with the reference on {len(cases)} cases")

    return attempt(RING, student, check)


def _results_problem(
    case: int, arrays: list[np.ndarray], expected: list[np.ndarray], results: list[Any]
) -> str | None:
    """What is wrong with the ranks' arrays: their number, or the first rank whose array is not
    the sum (naming a mean, and a sum held in some chunks only: no all-gather)."""
    workers = len(arrays)
    if len(results) != workers:
        return f"case {case}: W = {workers} ranks, so {workers} arrays, one per rank; got {len(results)}"
    for rank, (want, result) in enumerate(zip(expected, results, strict=True)):
        got = as_array(result)
        problem = difference(case, arrays, want, got, atol=1e-9)
        if not problem:
            continue
        if np.allclose(got, want / workers, rtol=1e-9):
            return f"rank {rank} holds the mean; an all-reduce returns the sum\n{problem}"
        if got.shape == want.shape:
            chunks = zip(np.split(got, workers), np.split(want, workers), strict=True)
            summed = [c for c, (g, w) in enumerate(chunks) if np.allclose(g, w, rtol=1e-9)]
            if summed:
                return (
                    f"rank {rank} holds the full sum in chunk(s) {summed} of 0..{workers - 1} only: "
                    "after the reduce-scatter, the all-gather must pass each summed chunk around the "
                    f"ring\n{problem}"
                )
        return f"rank {rank}'s array is not the sum of the W arrays\n{problem}"
    return None


def _sent_problem(case: int, arrays: list[np.ndarray], expected: float, sent: float) -> str | None:
    """What is wrong with the count of values one rank sends, naming the usual slips."""
    if sent == expected:
        return None
    workers, size = len(arrays), arrays[0].size
    whole = "That counts whole vectors; each step sends one chunk of P/W values."
    slips = (
        (expected / 2, "That is the reduce-scatter alone; the all-gather sends as many again."),
        (2 * expected, "That counts sent + received; count what one rank sends."),
        (2 * (workers - 1) * size, whole),
        ((workers - 1) * size, whole),
    )
    why = next((mistake for slip, mistake in slips if sent == slip), STEPS)
    return (
        f"case {case} (W = {workers}, P = {size}): one rank sends {expected:g} values, you "
        f"counted {sent:g}. {why}"
    )


def check_server_bytes(
    student: Solution, params: int, measured: Sequence[dict[str, Any]]
) -> CheckResult:
    """Exercise 08.2: ``server_megabytes() -> MB`` the parameter server's sockets carry per update
    (sent + received) with ``W = 100`` workers and ``params`` values, by (8.1); ``measured`` are
    section 1's parameter-server runs (``traffic.measure_traffic`` with a ``workers`` key), whose
    server bytes, on the straight line through them, are shown at ``W = 100``."""
    workers = [run["workers"] for run in measured]
    slope, intercept = np.polyfit(workers, [run["server"] for run in measured], 1)
    per_worker = traffic.traffic_per_update("parameter server", 1, params)["busiest"]
    law = traffic.traffic_per_update("parameter server", MANY, params)["busiest"] / 1e6
    ring = traffic.traffic_per_update("all-reduce", MANY, params)["busiest"] / 1e6

    def explain(predicted: float, expected: float, extended: float) -> str:
        return (
            f"(8.1): 2 · {MANY} · 4P = {expected:.4g} MB per update at the server, against "
            f"4 · ({MANY - 1}/{MANY}) · 4P = {ring:.4g} MB for a ring rank (8.2), {expected / ring:.3g} "
            f"times less. 'Measured' is section 1's server bytes at W = "
            f"{', '.join(map(str, workers))}, on the straight line through them, extended to "
            f"W = {MANY}: they grew by {slope / 1e6:.4g} MB per added worker, "
            f"{100 * (slope / per_worker - 1):+.2f} % from (8.1)'s 2 · 4P = {per_worker / 1e6:.4g} MB "
            "(the kernel's counters count the payload: the gradients and θ, and gloo's own "
            "messages besides)."
        )

    return check_prediction(SERVER_BYTES, student, law, (slope * MANY + intercept) / 1e6, explain)


def check_server_wins_above(student: Solution) -> CheckResult:
    """Exercise 08.3: ``server_wins_above(W, P, beta) -> α*`` in seconds, the latency above which a
    synchronous server's update (8.6) is faster than a ring's (8.4) on a full-duplex link, for
    ``W ≥ 3``; compared at stored points (the formula is the exercise)."""
    return check_cases(SERVER_WINS, student, atol=1e-12, diagnose=_crossover_slip)


def _crossover_slip(args: list[Any], expected: np.ndarray, got: np.ndarray) -> str | None:
    """Name the usual slips of 08.3, each as its ratio to the answer: the server's own latencies
    left out, values counted as bytes, microseconds."""
    workers = args[0]
    for ratio, mistake in (
        (
            (workers - 2) / (workers - 1),
            "you left out the server's own 2α (8.6): it pays two latencies too",
        ),
        (1 / 4, "P values of float32 are 4P bytes"),
        (1e6, "return seconds, not microseconds"),
    ):
        if np.allclose(got, ratio * expected, rtol=1e-9, atol=0):
            return mistake
    return None
