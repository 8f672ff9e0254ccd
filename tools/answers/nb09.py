"""Answers of notebook 09's exercises."""

import math

import torch

from rlteach import advantages
from tools.answers import cases, choice
from tools.answers.nb03 import random_batch


def vtrace_targets(*args: object) -> torch.Tensor:
    return advantages.vtrace(*args)[0]


def random_logps(gen: torch.Generator, T: int, N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Behaviour and target log-probabilities whose ratios π/μ range from about 0.2 to 5."""
    behaviour = torch.log(torch.rand(T, N, dtype=torch.float64, generator=gen) * 0.9 + 0.05)
    return behaviour, behaviour + 0.8 * torch.randn(T, N, dtype=torch.float64, generator=gen)


def rollout_like(gen: torch.Generator, T: int, N: int) -> tuple[torch.Tensor, ...]:
    """A random batch whose values are consistent as a rollout's: inside an episode
    ``next_values[t]`` is ``values[t + 1]``, the same V(x_{t+1}); after a cut and at the batch end
    it is the value of the real next state, a number of its own."""
    rewards, values, next_values, terminated, truncated = random_batch(gen, T, N)
    inside = ~(terminated | truncated)[:-1]
    next_values[:-1] = torch.where(inside, values[1:], next_values[:-1])
    return rewards, values, next_values, terminated, truncated


def answers() -> dict:
    gen = torch.Generator().manual_seed(9)
    inputs = []
    for rho_bar, c_bar in ((1.0, 1.0), (2.0, 1.0), (1.0, 0.5), (math.inf, math.inf), (1.5, 1.5)):
        T = int(torch.randint(1, 14, (), generator=gen))
        inputs.append((*random_logps(gen, T, 3), *rollout_like(gen, T, 3), 0.95, rho_bar, c_bar))
    return {
        "09.1": cases(vtrace_targets, inputs),
        "09.3": choice(
            "09.3",
            "ACE",
            {
                "A": "true: Adam's bias corrections 1 − β₁ᵗ and 1 − β₂ᵗ must count the updates "
                "applied to the shared moments by every worker; a worker that counted only its "
                "own updates would apply the corrections of a count about W times too small to "
                "moments that every worker updates, and its steps would be the wrong size "
                "(SharedOptimizer.step takes t from the shared counter, under the lock).",
                "B": "false: without a lock two workers can read the same number, each add its "
                "change and write back, and one change is lost; Hogwild's bet is that this is rare "
                "and harmless enough, not that it cannot happen.",
                "C": "true: a worker copies θ while another may be writing it, so the copy can hold "
                "some numbers from before and some from after that update (read() takes no lock "
                "unless lock=True).",
                "D": "false: IMPALA's actors only act and send experience (section 1's table); the "
                "learner computes every gradient, with its own current policy and V-trace's weights.",
                "E": "true: with ρ̄ = 1 and μ ≠ π the evaluation converges to the values of π_ρ̄ "
                "(9.4), a policy between μ and π; section 2's table shows it beside V^π.",
            },
        ),
    }
