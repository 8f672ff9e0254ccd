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


def answers() -> dict:
    gen = torch.Generator().manual_seed(9)
    inputs = []
    for rho_bar, c_bar in ((1.0, 1.0), (2.0, 1.0), (1.0, 0.5), (math.inf, math.inf), (1.5, 1.5)):
        T = int(torch.randint(1, 14, (), generator=gen))
        inputs.append((*random_logps(gen, T, 3), *random_batch(gen, T, 3), 0.95, rho_bar, c_bar))
    return {
        "09.1": cases(vtrace_targets, inputs),
        "09.3": choice(
            "09.3",
            "ACE",
            {
                "A": "true: Adam's bias correction 1 − βᵗ must count the updates applied to the "
                "shared moments by every worker; a worker that counted only its own would divide "
                "by a smaller 1 − βᵗ early on and take larger steps (SharedOptimizer.step takes t "
                "from the shared counter, under the lock).",
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
