"""Checkers of notebooks 03 (actor-critic and GAE) and 04 (PPO)."""

from __future__ import annotations

from typing import Any

import numpy as np

from rlteach import advantages, losses
from rlteach.checks.core import (
    CheckResult,
    Exercise,
    Solution,
    check_cases,
    check_choice,
    check_number,
    scaled_slip,
    value_and_grad,
)

TD_RESIDUALS = Exercise(
    "03.1", "TD residuals", "implement", forbidden=(advantages.td_residuals, advantages.gae)
)
GAE = Exercise("03.2", "GAE(λ)", "implement", forbidden=(advantages.gae,))
GAE_LIMITS = Exercise("03.3", "GAE at λ = 0 and λ = 1", "explain")
PPO_CLIP = Exercise(
    "04.1", "the PPO clipped objective", "implement", forbidden=(losses.ppo_clip_objective,)
)
APPROX_KL = Exercise("04.2", "the approximate KL", "implement", forbidden=(losses.approx_kl,))
CLIP_SLOPE = Exercise("04.3", "the gradient of a sample on the other side of the clip", "explain")


__all__ = [
    "check_td_residuals",
    "check_gae",
    "check_gae_limits",
    "check_ppo_clip_objective",
    "check_approx_kl",
    "check_clip_slope",
]


def check_td_residuals(student: Solution) -> CheckResult:
    """Exercise 03.1: ``td_residuals(rewards, values, next_values, terminated, gamma)``, all
    ``[T, N]``: ``δ = r + γ (1 − terminated) V(s') − V(s)`` (seed §3.1 step 3)."""
    return check_cases(TD_RESIDUALS, student)


def check_gae(student: Solution) -> CheckResult:
    """Exercise 03.2: ``gae(rewards, values, next_values, terminated, truncated, gamma, lam)``,
    ``[T, N]`` inputs, returning the advantages ``[T, N]`` (just ``adv``)."""
    return check_cases(GAE, student)


def check_gae_limits(student: Solution) -> CheckResult:
    """Exercise 03.3: the letter of what GAE(λ) becomes at λ = 0 and at λ = 1."""
    return check_choice(
        GAE_LIMITS,
        student,
        hint="Write (3.2) as Σ_k (γλ)^k δ_{t+k} and set λ = 0, then λ = 1; for λ = 1, add up the "
        "δ's and watch the V terms cancel.",
    )


def check_ppo_clip_objective(student: Solution) -> CheckResult:
    """Exercise 04.1: ``ppo_clip_objective(logp_new[M], logp_old[M], adv[M], clip_eps)``, the mean
    of ``min(r A, clip(r, 1−ε, 1+ε) A)`` to maximise; its value and ``∂/∂logp_new`` are compared."""
    return check_cases(
        PPO_CLIP,
        student,
        transform=value_and_grad,
        diagnose=_clip_slip,
        layout="(entry 0 is the objective's value, the others its gradient ∂/∂logp_new)",
    )


def _clip_slip(args: list[Any], expected: np.ndarray, got: np.ndarray) -> str | None:
    """Name the usual slips of 04.1 from the value and gradient: the loss (negated objective),
    the sum instead of the mean."""
    return scaled_slip(
        got,
        expected,
        (
            (-1.0, "you return the loss to minimise; (4.3) is the objective to maximise"),
            (len(args[0]), "you return the sum over the minibatch; (4.3) takes the mean"),
        ),
    )


def check_approx_kl(student: Solution) -> CheckResult:
    """Exercise 04.2: ``approx_kl(logp_new[M], logp_old[M])``, ``mean((r − 1) − log r)``."""
    return check_cases(APPROX_KL, student)


def check_clip_slope(student: Solution) -> CheckResult:
    """Exercise 04.3: ``∂/∂r`` of one sample's term of (4.3) at the advantage and ratio the text
    gives."""
    return check_number(
        CLIP_SLOPE,
        student,
        hint="Evaluate both branches of the min at this r: which one is smaller, and what is its "
        "derivative in r? The clip bounds r only on the side where A pushes it.",
    )
