"""Checkers for the notebooks' exercises.

Each ``check_*`` function calls the student's function and the library's reference on the same random
inputs and returns a :class:`CheckResult` that prints as a clear pass, or says what differs: the input,
the expected and the received value, and the largest difference. An exercise still holding its
``raise NotImplementedError`` placeholder is reported as not attempted, not as an error.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from rlteach import tabular

Solution = Callable[..., Any]  # an exercise's function: the student's, or the library's reference


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one exercise check; truthy when it passed."""

    exercise: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        mark = "PASSED" if self.passed else "NOT YET"
        return f"[{mark}] {self.exercise}: {self.message}"

    def _repr_html_(self) -> str:
        color = "#1a7f37" if self.passed else "#b35900"
        mark = "✔ passed" if self.passed else "✘ not yet"
        return (
            f"<div style='border-left:4px solid {color};padding:4px 8px'>"
            f"<b style='color:{color}'>{mark}</b> — <b>{html.escape(self.exercise)}</b>: "
            f"<pre style='display:inline;white-space:pre-wrap'>{html.escape(self.message)}</pre></div>"
        )


def _as_array(value: torch.Tensor | ArrayLike) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value, dtype=float)


def compare(
    exercise: str,
    student: Solution,
    reference: Solution,
    cases: Iterable[tuple[Any, ...]],
    atol: float = 1e-6,
) -> CheckResult:
    """Call ``student(*args)`` and ``reference(*args)`` for each ``args`` in ``cases``; compare them
    elementwise with tolerance ``atol`` (absolute, plus the same relative)."""
    cases = list(cases)
    for i, args in enumerate(cases):
        try:
            got = student(*args)
        except NotImplementedError:
            return CheckResult(
                exercise, False, "not attempted yet: replace `raise NotImplementedError`"
            )
        except Exception as exc:  # the student's bug, reported rather than raised
            return CheckResult(exercise, False, f"case {i}: raised {type(exc).__name__}: {exc}")
        want, got = _as_array(reference(*args)), _as_array(got)
        if got.shape != want.shape:
            return CheckResult(
                exercise, False, f"case {i}: expected shape {want.shape}, got shape {got.shape}"
            )
        if not np.allclose(got, want, atol=atol, rtol=atol):
            worst = (
                np.unravel_index(np.argmax(np.abs(got - want)), want.shape) if want.shape else ()
            )
            return CheckResult(
                exercise,
                False,
                f"case {i}: inputs {_describe(args)}\n  expected {np.array2string(want, precision=5)}"
                f"\n  got      {np.array2string(got, precision=5)}"
                f"\n  largest difference {np.abs(got - want).max():.3g} at index {worst}",
            )
    return CheckResult(exercise, True, f"agrees with the reference on {len(cases)} random cases")


def _describe(args: tuple[Any, ...]) -> str:
    parts = []
    for a in args:
        if isinstance(a, (torch.Tensor, np.ndarray)):
            parts.append(np.array2string(_as_array(a), precision=3))
        else:
            parts.append(repr(a))
    return "(" + ", ".join(parts) + ")"


# ----------------------------------------------------------------------------- notebook 01


def _reference_softmax_score(logits: torch.Tensor, action: int) -> torch.Tensor:
    logits = logits.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(torch.log_softmax(logits, -1)[action], logits)
    return grad


def check_softmax_score(student: Solution, trials: int = 6, seed: int = 0) -> CheckResult:
    """Exercise 01.1: ``softmax_score(logits[A], action) -> ∇_logits log π(action)``, ``[A]``.

    The reference differentiates ``log_softmax`` with autograd.
    """
    gen = torch.Generator().manual_seed(seed)
    cases = []
    for _ in range(trials):
        n = int(torch.randint(2, 6, (), generator=gen))
        logits = torch.randn(n, dtype=torch.float64, generator=gen) * 2
        cases.append((logits, int(torch.randint(n, (), generator=gen))))
    return compare("softmax score ∇ log π(a)", student, _reference_softmax_score, cases)


def check_rewards_to_go(student: Solution, trials: int = 6, seed: int = 0) -> CheckResult:
    """Exercise 01.2: ``rewards_to_go(rewards[T], gamma) -> G[T]`` with ``G_t = Σ_{k≥t} γ^{k−t} r_k``.

    Inputs are float64 numpy arrays; a list or a tensor of the same values is accepted as output.
    """
    rng = np.random.default_rng(seed)
    cases = [
        (rng.normal(size=int(rng.integers(1, 12))), float(rng.choice([0.0, 0.5, 0.9, 0.99])))
        for _ in range(trials)
    ]
    return compare("rewards-to-go", student, tabular.rewards_to_go, cases)


# ----------------------------------------------------------------------------- notebooks 02–04


def _value_and_grad(fn: Solution, wrt: int) -> Callable[..., torch.Tensor]:
    """Wrap ``fn(*tensors)`` to return its value followed by its gradient w.r.t. argument ``wrt``
    (zeros where it does not depend on it), so a check compares both."""

    def wrapped(*args: Any) -> torch.Tensor:
        inputs = [
            a.detach().clone().requires_grad_(i == wrt) if isinstance(a, torch.Tensor) else a
            for i, a in enumerate(args)
        ]
        value = fn(*inputs)
        if not isinstance(value, torch.Tensor) or not value.requires_grad:
            raise TypeError("the result must be a torch scalar that depends on the log-probs")
        (grad,) = torch.autograd.grad(value, inputs[wrt])
        return torch.cat([value.detach().reshape(1), grad.flatten()])

    return wrapped


def _random_batch(gen: torch.Generator, T: int, N: int) -> tuple[torch.Tensor, ...]:
    """Random ``[T, N]`` rewards, values, next values and episode ends (about 1 in 6 steps)."""
    rewards, values, next_values = (
        torch.randn(T, N, dtype=torch.float64, generator=gen) for _ in range(3)
    )
    ends = torch.rand(T, N, generator=gen)
    return rewards, values, next_values, ends < 0.1, (ends >= 0.1) & (ends < 0.17)


def check_reinforce_loss(student: Solution, trials: int = 6, seed: int = 0) -> CheckResult:
    """Exercise 02.1: ``reinforce_loss(logp[M], returns[M]) -> scalar to minimise``,
    ``−mean(log π(a|s) · G)``, with the returns treated as constants. Checks the value and the
    gradient with respect to ``logp``."""
    from rlteach import losses

    def reference(logp: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
        return -losses.policy_gradient_objective(logp, returns)

    gen = torch.Generator().manual_seed(seed)
    cases = [
        (
            torch.randn(m, dtype=torch.float64, generator=gen) - 1,
            torch.randn(m, dtype=torch.float64, generator=gen) * 10,
        )
        for m in torch.randint(2, 30, (trials,), generator=gen).tolist()
    ]
    return compare(
        "REINFORCE loss (value, then ∂/∂logp)",
        _value_and_grad(student, 0),
        _value_and_grad(reference, 0),
        cases,
    )


def check_discounted_returns(student: Solution, trials: int = 6, seed: int = 0) -> CheckResult:
    """Exercise 02.2: ``discounted_returns(rewards[T], dones[T], gamma) -> G[T]``: the reward-to-go
    within each episode, ``G_t = r_t + γ (1 − done_t) G_{t+1}``, with ``G = r`` at the last step."""
    from rlteach import advantages

    def reference(rewards: np.ndarray, dones: np.ndarray, gamma: float) -> torch.Tensor:
        r = torch.as_tensor(rewards, dtype=torch.float64)[:, None]
        d = torch.as_tensor(dones, dtype=torch.bool)[:, None]
        return advantages.returns_to_go(r, d, torch.zeros_like(d), gamma)[:, 0]

    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(trials):
        T = int(rng.integers(1, 15))
        cases.append(
            (rng.normal(size=T), rng.random(T) < 0.25, float(rng.choice([0.5, 0.9, 0.99])))
        )
    return compare("discounted returns with episode ends", student, reference, cases)


def check_td_residuals(student: Solution, trials: int = 6, seed: int = 0) -> CheckResult:
    """Exercise 03.1: ``td_residuals(rewards, values, next_values, terminated, gamma)``, all
    ``[T, N]``: ``δ = r + γ (1 − terminated) V(s') − V(s)`` (seed §3.1 step 3)."""
    from rlteach import advantages

    gen = torch.Generator().manual_seed(seed)
    cases = []
    for _ in range(trials):
        r, v, nv, term, _ = _random_batch(gen, int(torch.randint(1, 12, (), generator=gen)), 3)
        cases.append((r, v, nv, term, 0.97))
    return compare("TD residuals", student, advantages.td_residuals, cases)


def check_gae(student: Solution, trials: int = 6, seed: int = 0) -> CheckResult:
    """Exercise 03.2: ``gae(rewards, values, next_values, terminated, truncated, gamma, lam)``,
    ``[T, N]`` inputs, returning the advantages ``[T, N]`` (just ``adv``, not ``(adv, ret)``)."""
    from rlteach import advantages

    def reference(*args: Any) -> torch.Tensor:
        return advantages.gae(*args)[0]

    gen = torch.Generator().manual_seed(seed)
    cases = []
    for i in range(trials):
        batch = _random_batch(gen, int(torch.randint(1, 16, (), generator=gen)), 4)
        cases.append((*batch, 0.99, (0.0, 0.5, 0.95, 1.0, 0.9, 0.8)[i % 6]))
    return compare("GAE(λ)", student, reference, cases)


def check_ppo_clip_objective(student: Solution, trials: int = 6, seed: int = 0) -> CheckResult:
    """Exercise 04.1: ``ppo_clip_objective(logp_new[M], logp_old[M], adv[M], clip_eps)``, the mean
    of ``min(r A, clip(r, 1−ε, 1+ε) A)`` to maximise. Checks the value and ``∂/∂logp_new``."""
    from rlteach import losses

    gen = torch.Generator().manual_seed(seed)
    cases = []
    for _ in range(trials):
        m = int(torch.randint(4, 40, (), generator=gen))
        old = torch.randn(m, dtype=torch.float64, generator=gen) - 1
        new = old + 0.4 * torch.randn(m, dtype=torch.float64, generator=gen)
        cases.append((new, old, torch.randn(m, dtype=torch.float64, generator=gen), 0.2))
    return compare(
        "PPO clipped objective (value, then ∂/∂logp_new)",
        _value_and_grad(student, 0),
        _value_and_grad(losses.ppo_clip_objective, 0),
        cases,
    )


def check_approx_kl(student: Solution, trials: int = 6, seed: int = 0) -> CheckResult:
    """Exercise 04.2: ``approx_kl(logp_new[M], logp_old[M])``: the estimate
    ``mean((r − 1) − log r)`` of ``KL(π_old ‖ π_θ)`` from samples of ``π_old``."""
    from rlteach import losses

    gen = torch.Generator().manual_seed(seed)
    cases = []
    for _ in range(trials):
        old = torch.randn(20, dtype=torch.float64, generator=gen) - 1
        cases.append((old + 0.3 * torch.randn(20, dtype=torch.float64, generator=gen), old))
    return compare("approximate KL", student, losses.approx_kl, cases)
