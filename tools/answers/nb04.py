"""Answers of notebook 04's exercises."""

import torch

from rlteach import losses
from rlteach.checks.core import value_and_grad
from tools.answers import cases, number


def answers() -> dict:
    gen = torch.Generator().manual_seed(0)
    clips = []
    for _ in range(6):
        m = int(torch.randint(4, 40, (), generator=gen))
        old = torch.randn(m, dtype=torch.float64, generator=gen) - 1
        new = old + 0.4 * torch.randn(m, dtype=torch.float64, generator=gen)
        clips.append((new, old, torch.randn(m, dtype=torch.float64, generator=gen), 0.2))
    kls = []
    for _ in range(6):
        old = torch.randn(20, dtype=torch.float64, generator=gen) - 1
        kls.append((old + 0.3 * torch.randn(20, dtype=torch.float64, generator=gen), old))
    return {
        "04.1": cases(value_and_grad(losses.ppo_clip_objective), clips),
        "04.2": cases(lambda new, old: torch.tensor(losses.approx_kl(new, old)), kls),
        "04.3": number("04.3", 2.0, decimals=2),
    }
