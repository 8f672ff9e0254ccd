"""Checkers of notebooks 01 (the policy gradient theorem) and 02 (REINFORCE)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rlteach import advantages, losses, tabular
from rlteach.checks.core import (
    CheckResult,
    Exercise,
    Solution,
    check_cases,
    check_choice,
    scaled_slip,
    value_and_grad,
)

AUTOGRAD = (torch.autograd.grad, torch.Tensor.backward)
SOFTMAX_SCORE = Exercise("01.1", "the softmax score ∇ log π(a)", "implement", forbidden=AUTOGRAD)
REWARDS_TO_GO = Exercise(
    "01.2",
    "rewards-to-go",
    "implement",
    forbidden=(tabular.rewards_to_go, advantages.returns_to_go),
)
UNBIASED_BASELINES = Exercise("01.3", "which baselines keep the gradient unbiased", "explain")
REINFORCE_LOSS = Exercise(
    "02.1", "the REINFORCE loss", "implement", forbidden=(losses.policy_gradient_objective,)
)
DISCOUNTED_RETURNS = Exercise(
    "02.2",
    "returns that stop at episode ends",
    "implement",
    forbidden=(tabular.rewards_to_go, advantages.returns_to_go),
)
CONSTANT_REWARD_RETURN = Exercise("02.3", "the return of a constant reward", "explain")


__all__ = [
    "check_softmax_score",
    "check_rewards_to_go",
    "check_unbiased_baselines",
    "check_reinforce_loss",
    "check_discounted_returns",
    "check_constant_reward_return",
]


def check_softmax_score(student: Solution) -> CheckResult:
    """Exercise 01.1: ``softmax_score(logits[A], action) -> ∇_logits log π(action)``, ``[A]``,
    without autograd."""
    return check_cases(SOFTMAX_SCORE, student)


def check_rewards_to_go(student: Solution) -> CheckResult:
    """Exercise 01.2: ``rewards_to_go(rewards[T], gamma) -> G[T]``, ``G_t = Σ_{k≥t} γ^{k−t} r_k``;
    a list or a tensor of the same values is accepted."""
    return check_cases(REWARDS_TO_GO, student)


def check_unbiased_baselines(student: Solution) -> CheckResult:
    """Exercise 01.3: the letters of the changes that leave the expected gradient (1.8) unchanged."""
    return check_choice(
        UNBIASED_BASELINES,
        student,
        hint="For each change, ask whether Σ_a π(a|s) ∇log π(a|s) · (what it subtracts or "
        "multiplies) is zero in every state: the step that gives (1.9).",
    )


def check_reinforce_loss(student: Solution) -> CheckResult:
    """Exercise 02.1: ``reinforce_loss(logp[M], returns[M])``, the scalar to minimise; its value
    and ``∂/∂logp`` are compared."""
    return check_cases(
        REINFORCE_LOSS,
        student,
        transform=value_and_grad,
        diagnose=_sum_or_sign,
        layout="(entry 0 is the loss's value, the others its gradient ∂/∂logp)",
    )


def _sum_or_sign(args: list[Any], expected: np.ndarray, got: np.ndarray) -> str | None:
    """Name the two usual slips of 02.1: the sum over the batch instead of the mean, and the
    objective to maximise instead of the loss to minimise."""
    size = len(args[0])
    return scaled_slip(
        got,
        expected,
        (
            (size, "you return the sum over the batch; (2.2) takes the mean (divide by M)"),
            (-1.0, "you return the objective to maximise; an optimizer minimises: negate it"),
            (-size, "you return the objective summed over the batch: negate it and take the mean"),
        ),
    )


def check_discounted_returns(student: Solution) -> CheckResult:
    """Exercise 02.2: ``discounted_returns(rewards[T], dones[T], gamma) -> G[T]`` with
    ``G_t = r_t + γ (1 − done_t) G_{t+1}`` and ``G = r`` at the last step."""
    return check_cases(DISCOUNTED_RETURNS, student)


def check_constant_reward_return(student: Solution) -> CheckResult:
    """Exercise 02.3: ``G_0(r, gamma, T)`` for a reward ``r`` at each of ``T`` steps, any γ in (0, 1]."""
    return check_cases(CONSTANT_REWARD_RETURN, student, atol=1e-9)
