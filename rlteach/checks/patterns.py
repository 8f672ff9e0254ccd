"""Checkers of notebook 05 (four ways to distribute training): a synchronous round that drops
``D`` stragglers, Amdahl's speed-up from a measured serial fraction, and when averaging parameters
is averaging gradients."""

from __future__ import annotations

from typing import Any

import numpy as np

from rlteach.checks.core import (
    CheckResult,
    Exercise,
    Solution,
    check_cases,
    check_choice,
    check_prediction,
    matching_slip,
)
from rlteach.distributed import patterns
from rlteach.distributed.server import Server

SYNC_ROUND = Exercise(
    "05.1",
    "a synchronous round that drops D stragglers",
    "implement",
    forbidden=(Server.on_push, Server.apply),
)
SPEEDUP = Exercise(
    "05.2",
    "Amdahl's speed-up from the measured serial fraction",
    "predict",
    forbidden=(patterns.amdahl_speedup, patterns.Scaling.predicted_speedup),
)
AVERAGING = Exercise("05.3", "when averaging parameters is averaging gradients", "explain")
PREDICTION_RTOL = 0.02  # a prediction passes within this fraction of the law's value

__all__ = ["check_sync_round", "check_speedup_prediction", "check_parameter_averaging"]


def check_sync_round(student: Solution) -> CheckResult:
    """Exercise 05.1: ``sync_round(theta[P], slots[W, P], arrival, D, lr) -> θ'[P]``. ``arrival``
    lists the W workers in the order their pushes reached the server; the round is the first
    ``W − D`` of them, ``R``, and ``θ' = θ − lr · (1/(W − D)) Σ_{w∈R} slots[w]`` (one SGD step).
    The stored answers come from the server itself, in float32: hence the tolerance."""
    return check_cases(SYNC_ROUND, student, atol=1e-5, diagnose=_round_mistake)


def _round_mistake(args: list[Any], expected: np.ndarray, got: np.ndarray) -> str | None:
    """Name the usual slips of 05.1: the wrong sign, the sum divided by W, every push averaged,
    and the first ``W − D`` slots by worker number instead of by arrival."""
    theta, slots, _, drop, lr = args
    workers, step = len(slots), theta - expected  # step: lr · the round's mean gradient
    if got.shape != expected.shape:
        return None
    return matching_slip(
        got,
        (
            (theta + step, "you moved θ up the gradient: an SGD step subtracts lr · ḡ"),
            (
                theta - step * (workers - drop) / workers,
                "you divided the round's sum by W; the round has W − D pushes",
            ),
            (
                theta - lr * slots.mean(axis=0),
                "you averaged all W pushes; the round closes after the first W − D arrivals and the "
                "D later pushes are dropped",
            ),
            (
                theta - lr * slots[: workers - drop].mean(axis=0),
                "you took the slots of workers 0 … W − D − 1; take the first W − D workers of "
                "`arrival`, the order in which the pushes reached the server",
            ),
        ),
        rtol=1e-5,
        atol=1e-5,
    )


def check_speedup_prediction(
    student: Solution,
    serial_fraction: float,
    workers: int,
    measured: float,
    fitted_fraction: float,
) -> CheckResult:
    """Exercise 05.2: ``predicted_speedup() -> S``, graded against Amdahl's law (5.2) with the
    serial fraction measured directly (``serial_fraction``) at ``W = workers``. ``measured`` (the
    speed-up the runs measured at W) and ``fitted_fraction`` (the s fitted to them) are shown after
    a pass, not graded."""
    law = float(patterns.amdahl_speedup(serial_fraction, workers))
    fitted = float(patterns.amdahl_speedup(fitted_fraction, workers))
    slips = {
        "(5.2) with the fitted s; the exercise asks for the s measured directly": fitted,
        "Gustafson's (5.3), the law of growing work; this row is fixed work": float(
            patterns.gustafson_speedup(serial_fraction, workers)
        ),
        "the ceiling 1/s, which (5.2) approaches only as W grows without bound": 1
        / serial_fraction,
    }

    def explain(law: float, measured: float) -> str:
        said = f"(5.2) with the measured s = {serial_fraction:.3g} at W = {workers} gives {law:.3g}"
        if measured < (1 - PREDICTION_RTOL) * law:
            return said + (
                "; the runs fall short of it: the learner's update is not the only time that "
                "does not shrink with W. Each env step still needs the CPU for the policy's "
                "forward pass and the env's arithmetic while the W workers share the machine's "
                "cores, and every round ends at a barrier that waits for its slowest worker. The "
                f"fit puts that time into s: with the fitted s = {fitted_fraction:.3g}, (5.2) "
                f"gives {fitted:.3g}."
            )
        if measured > (1 + PREDICTION_RTOL) * law:
            return said + (
                "; the runs did better than it, which would mean the parallel part shrank more "
                "than W times. Nothing here does that: it is the spread between repeats (the "
                "table's ranges), such as a 1-worker run that other programs slowed."
            )
        return said + (
            "; the runs agree with it within 2 %: here the learner's update is the only part "
            "that did not shrink with W."
        )

    return check_prediction(SPEEDUP, student, law, measured, explain, slips, PREDICTION_RTOL)


def check_parameter_averaging(student: Solution) -> CheckResult:
    """Exercise 05.3: the letters of the settings in which averaging the workers' parameters
    after a sync round gives the same θ as averaging their gradients."""
    return check_choice(
        AVERAGING,
        student,
        hint="Write θ after one round both ways, as formulas in θ, α and the g_w, and compare them "
        "term by term; then ask what changes when a step is not linear in its gradient.",
    )
