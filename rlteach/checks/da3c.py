"""Checkers of notebook 06 (DA3C): the staleness of asynchronous pushes from version numbers, the
mean staleness of W workers, and what a parameter server does instead of Hogwild."""

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
)
from rlteach.checks.patterns import PREDICTION_RTOL
from rlteach.distributed.server import Server

STALENESS = Exercise(
    "06.1", "staleness from version numbers", "implement", forbidden=(Server.on_push,)
)
MEAN_STALENESS = Exercise("06.2", "the mean staleness of W asynchronous workers", "predict")
HOGWILD = Exercise("06.3", "Hogwild or a parameter server", "explain")

__all__ = ["check_push_staleness", "check_staleness_prediction", "check_hogwild"]


def check_push_staleness(student: Solution) -> CheckResult:
    """Exercise 06.1: ``push_staleness(log) -> [N]`` ints, one per push of ``log``, a list of
    ``(worker, "pull" | "push")`` in the order an asynchronous server handled them. A push's
    staleness is the server's version when it arrives minus the version its worker last pulled:
    the pushes, anyone's, applied in between. The answers come from the server itself."""
    return check_cases(STALENESS, student, diagnose=_staleness_mistake)


def _staleness_mistake(args: list[Any], expected: np.ndarray, got: np.ndarray) -> str | None:
    """Name the usual slips of 06.1: a value per event, the version after the push was applied,
    and the server's version without the pulled one subtracted."""
    if got.shape != expected.shape:
        if got.shape == (len(args[0]),):
            return "you return a value per event; return one per push"
        return None
    if np.array_equal(got, expected + 1):
        return (
            "every value is 1 too large: you counted the push's own update — take the server's "
            "version before this push is applied"
        )
    if np.array_equal(got, np.arange(len(expected))):
        return (
            "you return the server's version at each push; subtract the version its worker pulled"
        )
    return None


def check_staleness_prediction(student: Solution, workers: int, measured: float) -> CheckResult:
    """Exercise 06.2: ``predicted_staleness() -> k``, graded against the model the text describes
    at ``W = workers``; ``measured`` (the mean staleness of the runs with W workers) is shown after
    a pass, not graded."""
    law = float(workers - 1)
    slips = {
        "W, counting the worker's own push; its staleness counts only the pushes before it": law
        + 1,
        "sync mode's staleness; async pushes wait for no round": 0.0,
    }

    def explain(law: float, measured: float) -> str:
        ceiling = (
            f"The model gives {law:g} for every push. It is also a ceiling for the mean over all "
            "pushes, whatever the workers' speeds: a push lands in at most one pull-to-push window "
            "of each of the W − 1 other workers, and counts once in each. "
        )
        if measured >= (1 - PREDICTION_RTOL) * law:
            return (
                ceiling + "The runs came within 2 % of it: few pushes fell between those windows."
            )
        return ceiling + (
            "The runs measured less: a push is missing from another worker's count when it "
            "lands between that worker's push and its next pull (while it waits for the "
            "server's answer, reports and pulls), before that worker's first pull, or after it "
            "has finished; with more processes than free cores (the workers, the server and "
            "this notebook) those gaps grow."
        )

    return check_prediction(MEAN_STALENESS, student, law, measured, explain, slips, PREDICTION_RTOL)


def check_hogwild(student: Solution) -> CheckResult:
    """Exercise 06.3: the letters of the true statements on Hogwild's lock-free updates (A3C) and
    the parameter server that replaces them in ``rlteach``'s DA3C."""
    return check_choice(
        HOGWILD,
        student,
        hint="Re-read section 6 and section 3's table: what does a pull return, what does a push "
        "wait for, and what do Hogwild's threads never wait for?",
    )
