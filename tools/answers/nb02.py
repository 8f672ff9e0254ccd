"""Answers of notebook 02's exercises."""

import numpy as np
import torch

from rlteach import advantages
from rlteach.checks.core import value_and_grad
from tools.answers import cases


def reinforce_loss(logp: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    return -(logp * returns).mean()


def discounted_returns(rewards: np.ndarray, dones: np.ndarray, gamma: float) -> torch.Tensor:
    r = torch.as_tensor(rewards, dtype=torch.float64)[:, None]
    d = torch.as_tensor(dones, dtype=torch.bool)[:, None]
    return advantages.returns_to_go(r, d, torch.zeros_like(d), gamma)[:, 0]


def constant_reward_return(r: float, gamma: float, T: int) -> float:
    return r * T if gamma == 1.0 else r * (1 - gamma**T) / (1 - gamma)


def answers() -> dict:
    gen = torch.Generator().manual_seed(0)
    losses = [
        (
            torch.randn(m, dtype=torch.float64, generator=gen) - 1,
            torch.randn(m, dtype=torch.float64, generator=gen) * 10,
        )
        for m in torch.randint(2, 30, (6,), generator=gen).tolist()
    ]
    rng = np.random.default_rng(0)
    episodes = []
    for _ in range(6):
        T = int(rng.integers(1, 15))
        episodes.append(
            (rng.normal(size=T), rng.random(T) < 0.25, float(rng.choice([0.5, 0.9, 0.99])))
        )
    constants = [
        (float(rng.normal() * 3), float(gamma), int(rng.integers(1, 200)))
        for gamma in (0.5, 0.9, 0.99, 0.999, 1.0, 0.97)
    ]
    return {
        "02.1": cases(value_and_grad(reinforce_loss), losses),
        "02.2": cases(discounted_returns, episodes),
        "02.3": cases(constant_reward_return, constants),
    }
