"""Checkers of notebooks 03 (actor-critic and GAE) and 04 (PPO)."""

from __future__ import annotations

from rlteach import advantages, losses
from rlteach.checks.core import (
    CheckResult,
    Exercise,
    Solution,
    check_cases,
    check_choice,
    check_number,
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
CLIP_EDGE = Exercise("04.3", "where the clip stops the gradient", "explain")


__all__ = [
    "check_td_residuals",
    "check_gae",
    "check_gae_limits",
    "check_ppo_clip_objective",
    "check_approx_kl",
    "check_clip_edge",
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
    return check_choice(GAE_LIMITS, student)


def check_ppo_clip_objective(student: Solution) -> CheckResult:
    """Exercise 04.1: ``ppo_clip_objective(logp_new[M], logp_old[M], adv[M], clip_eps)``, the mean
    of ``min(r A, clip(r, 1−ε, 1+ε) A)`` to maximise; its value and ``∂/∂logp_new`` are compared."""
    return check_cases(PPO_CLIP, student, transform=value_and_grad)


def check_approx_kl(student: Solution) -> CheckResult:
    """Exercise 04.2: ``approx_kl(logp_new[M], logp_old[M])``, ``mean((r − 1) − log r)``."""
    return check_cases(APPROX_KL, student)


def check_clip_edge(student: Solution) -> CheckResult:
    """Exercise 04.3: the ratio above which a sample with ``A > 0`` gives no gradient (ε = 0.2)."""
    return check_number(
        CLIP_EDGE,
        student,
        hint="For A > 0, find where min(r·A, clip(r, 1−ε, 1+ε)·A) takes the clipped branch, "
        "whose derivative in r is 0 (notebook 04, section on the clipped objective).",
    )
