"""Checkers of notebook 07 (DPPO: the synchronous round and when more workers pay)."""

from __future__ import annotations

import math
from collections.abc import Mapping
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
from rlteach.distributed.driver import simulator_law
from rlteach.distributed.server import Server

ROUND_MEAN = Exercise(
    "07.1", "the round's size-weighted mean gradient (7.1)", "implement", forbidden=(Server.apply,)
)
SPEEDUP_CEILING = Exercise(
    "07.2",
    "the speed-up ceiling of the sleeping simulator (7.2)",
    "predict",
    forbidden=(simulator_law,),
)
ROUND_IS_PPO_STEP = Exercise("07.3", "when a round is exactly PPO's step", "explain")
CLOSE = 0.1  # a measured speed-up within this fraction of (7.2)'s at the same W follows the law

__all__ = ["check_round_mean_gradient", "check_speedup_ceiling", "check_round_is_ppo_step"]


def check_round_mean_gradient(student: Solution) -> CheckResult:
    """Exercise 07.1: ``round_mean_gradient(grads[W, P], sizes[W]) -> ḡ[P]``, where row ``w`` of
    ``grads`` is the gradient of worker ``w``'s share's *mean* loss over ``sizes[w]`` samples and
    ``ḡ`` is the server's mean gradient of (7.1); compared with stored rounds."""
    return check_cases(ROUND_MEAN, student, atol=1e-9, diagnose=_unweighted)


def _unweighted(args: list[Any], expected: np.ndarray, got: np.ndarray) -> str | None:
    """Name the usual slips of 07.1, the scaled ones relative to the answer: a mean that ignores
    the share sizes, the sum of the share means, and ``ḡ`` times ``N`` or ``N / W``."""
    grads, sizes = np.asarray(args[0], dtype=float), np.asarray(args[1], dtype=float)
    samples, workers = sizes.sum(), len(sizes)
    return matching_slip(
        got,
        (
            (
                grads.mean(0),
                "you take the plain mean of the W gradients: it weighs every share alike, so a sample "
                "of a small share counts for more than one of a large share",
            ),
            (grads.sum(0), "you add the W share means; (7.1) is a mean over the round's samples"),
            (
                samples * expected,
                "your result is N = Σ n_w times ḡ: (7.1) divides by the round's N samples",
            ),
            (
                samples / workers * expected,
                "your result is N / W times ḡ: (7.1)'s mean is over the round's N samples, not over "
                "its W shares",
            ),
        ),
        rtol=1e-9,
        atol=1e-12,
    )


def check_speedup_ceiling(
    student: Solution, table: Mapping[str, Any], step_seconds: float, delay: float, cores: int
) -> CheckResult:
    """Exercise 07.2: ``speedup_ceiling() -> S``, the speed-up ``t(1)/t(W)`` that (7.2) approaches
    as ``W`` grows without bound for the sleeping simulator, graded against (7.2) with ``t(1)``
    and ``N`` the medians over seeds of the 1-worker column of ``table`` (the sleep setting of
    :func:`~rlteach.distributed.driver.worker_scaling`) and ``c = step_seconds``. After a pass the
    measured speed-up at the table's largest ``W`` is shown with why it stays below; ``delay``
    (the nominal delay of a step) names a slip, ``cores`` (this machine's) a cause."""
    seconds, steps = np.asarray(table["seconds"]), np.asarray(table["env_steps"])
    workers = table["workers"][-1]
    one, env_steps = np.nanmedian(seconds[:, 0]), np.nanmedian(steps[:, 0])
    if not one > env_steps * step_seconds:  # NaN: no 1-worker run reached the target
        return SPEEDUP_CEILING.result(
            "not yet",
            f"§7's table gives no finite ceiling: t(1) = {one:.3g} s is not above N c = "
            f"{env_steps:.4g} × {step_seconds:.4g} s; run §7's cell and the cell measuring c again",
        )

    def speedup(c: float, w: float) -> float:
        """t(1)/t(w) by (7.2), the sleeping simulator's steps taking ``c`` seconds each."""
        return float(one / simulator_law(one, env_steps, c, [w], cores, "sleep")[0])

    fixed = one - env_steps * step_seconds  # what (7.2) holds fixed: t(W) → t(1) − N c
    slips = {
        f"(7.2)'s speed-up at W = {workers}, the largest W §7 ran; the exercise asks for its "
        "limit as W grows": speedup(step_seconds, workers),
        "(t(1) − N c) / t(1), the share of t(1) that does not divide among the workers; the "
        "ceiling is its inverse": fixed / one,
        "t(1) / (N c), one over the simulator's share of t(1); the ceiling is one over the "
        "share that does not divide": one / (one - fixed),
        "(7.2) with c the nominal `delay`; its c is what a sleep of `delay` takes on this machine": (
            speedup(delay, math.inf)
        ),
    }

    def explain(ceiling: float, measured: float) -> str:
        at_w = speedup(step_seconds, workers)
        head = (
            f"(7.2) holds t(1) − N c = {one:.3g} − {env_steps:.4g} × {1e3 * step_seconds:.3g} ms "
            f"= {fixed:.3g} s fixed, so t(W) falls towards {fixed:.3g} s and the speed-up rises "
            f"towards {ceiling:.3g}. Two things keep runs below that: W is finite, so the "
            f"simulator's N c / W remains ((7.2) gives {at_w:.3g} at W = {workers}); and the part "
            "(7.2) holds fixed does not stay fixed: every round, each worker computes its share's "
            f"gradient, and with more workers than the {cores} cores these take turns on them, so "
            "the rounds' cost grows with W (§7's last line prints one share gradient's cost)."
        )
        if np.isnan(measured):
            return f"{head} No seed reached the target with W = {workers}: nothing to compare."
        said = f" The runs measured {measured:.3g} at W = {workers}"
        if measured < (1 - CLOSE) * at_w:
            why = (
                f"{workers} workers share {cores} cores"
                if workers > cores
                else "more processes start, and each round waits for the slowest of them"
            )
            return f"{head}{said}, below (7.2)'s {at_w:.3g}: the fixed part grew ({why})."
        if measured > (1 + CLOSE) * at_w:
            return (
                f"{head}{said}, above (7.2)'s {at_w:.3g}: compare the env steps to the target "
                "with the 1-worker run's ((7.2) takes N as the same for every W) and read the "
                "seconds' [min, max]: the medians are over two or three seeds."
            )
        return f"{head}{said}, within {CLOSE:.0%} of (7.2)'s {at_w:.3g}."

    return check_prediction(
        SPEEDUP_CEILING,
        student,
        speedup(step_seconds, math.inf),
        one / np.nanmedian(seconds[:, -1]),
        explain,
        slips,
        shown_as=f"measured at W = {workers}",
    )


def check_round_is_ppo_step(student: Solution) -> CheckResult:
    """Exercise 07.3: the letters of the changes that would make a synchronous round differ from
    one step of single-process PPO on the union of the round's shares (§4)."""
    return check_choice(
        ROUND_IS_PPO_STEP,
        student,
        hint="Re-read §4 and the paragraph after its cell: for each change, write the step the "
        "server takes on θ and ask whether PPO, given the union of the round's shares as one "
        "minibatch, would take the same.",
    )
