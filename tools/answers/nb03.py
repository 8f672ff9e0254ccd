"""Answers of notebook 03's exercises."""

import torch

from rlteach import advantages
from tools.answers import cases, choice


def random_batch(gen: torch.Generator, T: int, N: int) -> tuple[torch.Tensor, ...]:
    """Random ``[T, N]`` rewards, values, next values, terminations (1 in 10 steps) and truncations
    (about 1 in 14)."""
    rewards, values, next_values = (
        torch.randn(T, N, dtype=torch.float64, generator=gen) for _ in range(3)
    )
    ends = torch.rand(T, N, generator=gen)
    return rewards, values, next_values, ends < 0.1, (ends >= 0.1) & (ends < 0.17)


def gae_advantages(*args: object) -> torch.Tensor:
    return advantages.gae(*args)[0]


def answers() -> dict:
    gen = torch.Generator().manual_seed(0)
    residuals = []
    for _ in range(6):
        r, v, nv, term, _ = random_batch(gen, int(torch.randint(1, 12, (), generator=gen)), 3)
        residuals.append((r, v, nv, term, 0.97))
    gaes = [
        (*random_batch(gen, int(torch.randint(1, 16, (), generator=gen)), 4), 0.99, lam)
        for lam in (0.0, 0.5, 0.95, 1.0, 0.9, 0.8)
    ]
    return {
        "03.1": cases(advantages.td_residuals, residuals),
        "03.2": cases(gae_advantages, gaes),
        "03.3": choice(
            "03.3",
            "A",
            {
                "A": "with λ = 0 only the k = 0 term of Σ (γλ)^k δ_{t+k} is left, δ_t; with λ = 1 the "
                "sum telescopes to the discounted rewards up to the episode's end (or the bootstrap "
                "V(s') where the batch cuts it) minus V(s_t).",
                "B": "this swaps the two ends: (γλ)^k with λ = 0 keeps only k = 0, the one-step residual.",
                "C": "at λ = 1 the weights (γλ)^k = γ^k do not vanish after the first step: the sum "
                "runs on to the episode's end.",
                "D": "at λ = 0 the k = 0 term keeps weight (γλ)^0 = 1, so GAE is δ_t, not 0.",
            },
        ),
    }
