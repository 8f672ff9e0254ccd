"""Checkers of notebook 07 (DPPO: the synchronous round and when more workers pay)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
from rlteach.distributed.driver import simulator_law
from rlteach.distributed.server import Server

ROUND_MEAN = Exercise(
    "07.1", "the round's size-weighted mean gradient (7.1)", "implement", forbidden=(Server.apply,)
)
SIMULATOR_SPEEDUP = Exercise(
    "07.2", "the speed-up (7.2) predicts", "predict", forbidden=(simulator_law,)
)
ROUND_IS_PPO_STEP = Exercise("07.3", "when a round is exactly PPO's step", "explain")


__all__ = ["check_round_mean_gradient", "check_simulator_speedup", "check_round_is_ppo_step"]


def check_round_mean_gradient(student: Solution) -> CheckResult:
    """Exercise 07.1: ``round_mean_gradient(grads[W, P], sizes[W]) -> ḡ[P]``, where row ``w`` of
    ``grads`` is the gradient of worker ``w``'s share's *mean* loss over ``sizes[w]`` samples:
    ``ḡ = Σ_w n_w g_w / Σ_w n_w`` (7.1), the gradient of the mean loss over the union."""
    return check_cases(ROUND_MEAN, student, atol=1e-9, diagnose=_unweighted)


def _unweighted(args: list[Any], expected: np.ndarray, got: np.ndarray) -> str | None:
    """Name the usual slips of 07.1: a mean that ignores the share sizes, or a weighted sum that
    is not divided by the round's ``N = Σ n_w`` samples."""
    grads, sizes = np.asarray(args[0], dtype=float), np.asarray(args[1], dtype=float)
    workers, weighted = len(sizes), sizes @ grads
    for slip, mistake in (
        (
            grads.mean(0),
            "you take the plain mean of the W gradients: it weighs every share alike, so a sample "
            "of a small share counts for more than one of a large share; weigh g_w by n_w",
        ),
        (weighted, "you return Σ n_w g_w: divide by the round's N = Σ n_w samples"),
        (weighted / workers, "you divide Σ n_w g_w by W; the mean is over the N = Σ n_w samples"),
        (
            grads.sum(0),
            "you return Σ g_w, the sum of the share means; (7.1) weighs each by n_w / N",
        ),
    ):
        if np.allclose(got, slip, rtol=1e-9, atol=1e-12):
            return mistake
    return None


def check_simulator_speedup(
    student: Solution, table: Mapping[str, Any], law: Sequence[float], cores: int
) -> CheckResult:
    """Exercise 07.2: ``predicted_speedup() -> t(1)/t(W)`` at the largest ``W`` of ``table`` (one
    setting of :func:`~rlteach.distributed.driver.worker_scaling`; ``W = 1`` first), with ``t(W)``
    from (7.2), ``law`` (:func:`~rlteach.distributed.driver.simulator_law` of the same table); the
    measured speed-up, the ratio of the medians over the seeds, is shown with why it differs.
    ``cores``: this machine's, named in that explanation."""
    seconds, steps = np.asarray(table["seconds"]), np.asarray(table["env_steps"])
    workers = table["workers"][-1]
    one, many = np.nanmedian(seconds[:, 0]), np.nanmedian(seconds[:, -1])
    steps_one, steps_many = np.nanmedian(steps[:, 0]), np.nanmedian(steps[:, -1])

    def explain(predicted: float, expected: float, measured: float) -> str:
        head = (
            f"(7.2) gives t({workers}) = {law[-1]:.3g} s from t(1) = {one:.3g} s; the runs took "
            f"{many:.3g} s."
        )
        if np.isnan(measured):
            return f"No seed reached the target with W = {workers}: nothing to compare. {head}"
        steps_note = (
            f" They also needed {steps_many:.3g} env steps to the target against {steps_one:.3g} "
            "with one worker; (7.2) takes N as the same for every W (the right panel shows the "
            "spread between seeds)."
        )
        if measured < 0.9 * expected:
            rounds = (
                f" {workers} workers share {cores} cores: each round waits for {workers} share "
                "gradients that take turns on them (the last line of §7 prints one's cost), "
                "40 rounds per batch."
                if workers > cores
                else " More processes start, and each round waits for the slowest of them."
            )
            more_steps = steps_note if steps_many > 1.05 * steps_one else ""
            return (
                f"{head} The measurement falls short of the law: the part (7.2) holds fixed grew "
                f"with W.{rounds}{more_steps}"
            )
        if measured > 1.1 * expected:
            fewer_steps = steps_note if steps_many < 0.95 * steps_one else ""
            return (
                f"{head} The measurement beats the law.{fewer_steps} Read it against the "
                "[min, max] of the seconds in the table: the medians are over two or three seeds."
            )
        return f"{head} Within 10 % of the law: the simulator's time divided as (7.2) says."

    return check_prediction(SIMULATOR_SPEEDUP, student, one / law[-1], one / many, explain)


def check_round_is_ppo_step(student: Solution) -> CheckResult:
    """Exercise 07.3: the letters of the changes that would make a synchronous round differ from
    one step of single-process PPO on the union of the round's shares (§4)."""
    return check_choice(ROUND_IS_PPO_STEP, student)
