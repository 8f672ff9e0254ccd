"""Answers of notebook 01's exercises."""

import numpy as np
import torch

from rlteach import tabular
from tools.answers import cases, choice


def softmax_score(logits: torch.Tensor, action: int) -> torch.Tensor:
    logits = logits.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(torch.log_softmax(logits, -1)[action], logits)
    return grad


def answers() -> dict:
    gen = torch.Generator().manual_seed(0)
    logits = []
    for _ in range(6):
        n = int(torch.randint(2, 6, (), generator=gen))
        logits.append(
            (
                torch.randn(n, dtype=torch.float64, generator=gen) * 2,
                int(torch.randint(n, (), generator=gen)),
            )
        )
    rng = np.random.default_rng(0)
    rewards = [
        (rng.normal(size=int(rng.integers(1, 12))), float(rng.choice([0.0, 0.5, 0.9, 0.99])))
        for _ in range(6)
    ]
    return {
        "01.1": cases(softmax_score, logits),
        "01.2": cases(tabular.rewards_to_go, rewards),
        "01.3": choice(
            "01.3",
            "AB",
            {
                "A": "a constant is a function of no state at all: Σ_a π(a|s) ∇log π(a|s) · b = "
                "b ∇Σ_a π(a|s) = b ∇1 = 0, so the mean is unchanged (1.9).",
                "B": "b(s_t) does not depend on a_t: for each state the same identity, "
                "E_a[∇log π(a|s)] b(s) = 0, holds (1.9); only the variance changes.",
                "C": "b(s_t, a_t) moves with the action whose score it multiplies; "
                "E_a[∇log π(a|s) b(s, a)] = Σ_a ∇π(a|s) b(s, a) is not 0 in general: biased.",
                "D": "doubling every G_t doubles the expected gradient: the direction stays, "
                "its mean does not (it acts as a step size, but the estimate is no longer of (1.8)).",
            },
        ),
    }
